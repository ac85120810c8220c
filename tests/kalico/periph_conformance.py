#!/usr/bin/env python3
"""Kalico peripheral conformance driver: hardware PWM, ADC thermistor,
DS18B20 and an I2C sensor on the MCU's stand-in sysfs tree and simulated
I2C bus.

Run with the Python of a venv that has `kalico` installed.  The MCU must
already be running with `--sim --sysfs-root <TREE> -I <tty>`; its
simulated board answers text requests on `<tty>.sim`.  This script fills
the tree (a `pwmchip0/pwm0` channel, `in_voltage0_raw`, a 1-wire device),
writes a printer.cfg with the selected parts (`--parts`), starts
`kalico <cfg> -a <api.sock> -l <klippy.log>`, and checks, through the API
socket, the tree and the board's socket, that

  pwm:        `SET_PIN PIN=hwpwm VALUE=0.25` on an `output_pin` with
              `hardware_pwm: True` and `cycle_time: 0.001` writes period
              1000000, duty_cycle 250000 and enable 1 (and VALUE=0 enable 0),
  thermistor: a "Generic 3950" `temperature_sensor` on analog0 reads
              about 25 C from the raw value written for 25 C,
  ds18b20:    a DS18B20 `temperature_sensor` on the MCU reports the
              `w1_slave` value (31.5 C),
  htu21d:     an HTU21D `temperature_sensor` on i2c.1 reports the
              simulated temperature (27.5 C),

with the printer `ready` throughout and no shutdown in klippy.log.
Exit status and failure report: conformance.harness_main's.  Only the
standard library (and the sibling conformance.py and gpio_conformance.py)
is used.
"""
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conformance  # noqa: E402
import gpio_conformance  # noqa: E402
from conformance import Failure  # noqa: E402

ALL_PARTS = ("pwm", "thermistor", "ds18b20", "htu21d")

DS18B20_SERIAL = "28-0123456789ab"
DS18B20_MILLIC = 31500
HTU21D_TEMP = 27.5
HTU21D_HUMIDITY = 40.0

# Generic 3950: beta 3950, 100 kOhm at 25 C; Kalico's default pullup.
THERM_PULLUP = 4700.0
THERM_R25 = 100000.0
ADC_MAX = 4095  # the MCU's ADC_MAX constant
THERM_TARGET_C = 25.0

CFG_PARTS = {
    "pwm": """
[output_pin hwpwm]
pin: pwmchip0/pwm0
pwm: True
hardware_pwm: True
cycle_time: 0.001
""",
    "thermistor": """
[temperature_sensor thermistor]
sensor_type: Generic 3950
sensor_pin: analog0
pullup_resistor: {pullup}
min_temp: -50
max_temp: 300
""",
    "ds18b20": """
[temperature_sensor ds]
sensor_type: DS18B20
serial_no: {serial}
sensor_mcu: mcu
min_temp: -50
max_temp: 120
""",
    "htu21d": """
[temperature_sensor room]
sensor_type: HTU21D
i2c_bus: i2c.1
i2c_mcu: mcu
min_temp: -50
max_temp: 120
""",
}

log = conformance.make_log("periph")


def first_line(path):
    """sysfs writes are pwrites of "NUMBER\\n" at offset 0: in a regular
    file only the first line is the last value written."""
    with open(path) as f:
        return f.readline().strip()


def therm_raw_for(temp_c):
    """The raw ADC value a Generic 3950 behind THERM_PULLUP gives at
    temp_c (Kalico scales a sample by 1/ADC_MAX)."""
    beta = 3950.0
    t0 = 25.0 + 273.15
    t = temp_c + 273.15
    r = THERM_R25 * math.exp(beta * (1.0 / t - 1.0 / t0))
    return int(round(ADC_MAX * r / (r + THERM_PULLUP)))


class PeriphHarness(gpio_conformance.SimHarness):
    def __init__(self, args):
        gpio_conformance.SimHarness.__init__(self, args)
        self.parts = [p for p in args.parts.split(",") if p]
        for p in self.parts:
            if p not in ALL_PARTS:
                raise SystemExit("unknown part %r (known: %s)"
                                 % (p, ", ".join(ALL_PARTS)))
        self.root = os.path.abspath(args.sysfs_root)
        self.pwm_dir = os.path.join(self.root, "class/pwm/pwmchip0/pwm0")
        self.adc_file = os.path.join(
            self.root, "bus/iio/devices/iio:device0/in_voltage0_raw")
        self.w1_file = os.path.join(
            self.root, "bus/w1/devices", DS18B20_SERIAL, "w1_slave")

    # -- setup ---------------------------------------------------------
    def fill_tree(self):
        os.makedirs(self.pwm_dir, exist_ok=True)
        for name in ("period", "duty_cycle", "enable"):
            with open(os.path.join(self.pwm_dir, name), "w") as f:
                f.write("0\n")
        os.makedirs(os.path.dirname(self.adc_file), exist_ok=True)
        raw = therm_raw_for(THERM_TARGET_C)
        with open(self.adc_file, "w") as f:
            f.write("%d\n" % raw)
        log("in_voltage0_raw = %d (Generic 3950 at %.1f C, pullup %.0f)"
            % (raw, THERM_TARGET_C, THERM_PULLUP))
        os.makedirs(os.path.dirname(self.w1_file), exist_ok=True)
        with open(self.w1_file, "w") as f:
            f.write("f8 01 4b 46 7f ff 08 10 6e : crc=6e YES\n"
                    "f8 01 4b 46 7f ff 08 10 6e t=%d\n" % DS18B20_MILLIC)

    def start_kalico(self):
        cfg = conformance.CFG_HEAD.format(tty=self.args.tty)
        for p in self.parts:
            cfg += CFG_PARTS[p].format(pullup=THERM_PULLUP,
                                       serial=DS18B20_SERIAL)
        self.launch(cfg)

    # -- helpers -------------------------------------------------------
    def wait_files(self, want, timeout, what):
        """Wait until each file of the PWM channel has its wanted first
        line."""
        deadline = time.monotonic() + timeout
        while True:
            got = {k: first_line(os.path.join(self.pwm_dir, k))
                   for k in want}
            if got == want:
                return got
            if time.monotonic() > deadline:
                raise Failure("%s: sysfs PWM files %r, expected %r within "
                              "%.0fs" % (what, got, want, timeout))
            time.sleep(0.05)

    def wait_temperature(self, obj, lo, hi, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            st = self.query(obj)
            t = st.get("temperature")
            if t is not None and lo <= t <= hi:
                return t
            if time.monotonic() > deadline:
                raise Failure("%s: %s reports %r, expected %.2f..%.2f "
                              "within %.0fs" % (what, obj, st, lo, hi,
                                                timeout))
            time.sleep(0.25)

    # -- scenario ------------------------------------------------------
    def test_pwm(self):
        what = "output_pin hwpwm (pwmchip0/pwm0, hardware_pwm, 1 ms)"
        self.gcode("SET_PIN PIN=hwpwm VALUE=0.25")
        self.wait_files({"period": "1000000", "duty_cycle": "250000",
                         "enable": "1"}, 5.0, what + " VALUE=0.25")
        self.gcode("SET_PIN PIN=hwpwm VALUE=0.75")
        self.wait_files({"period": "1000000", "duty_cycle": "750000",
                         "enable": "1"}, 5.0, what + " VALUE=0.75")
        self.gcode("SET_PIN PIN=hwpwm VALUE=0")
        self.wait_files({"enable": "0"}, 5.0, what + " VALUE=0")
        self.passed("%s: period 1000000 ns, duty 250000/750000 ns, enable "
                    "1, then enable 0" % what)

    def test_thermistor(self):
        what = "temperature_sensor thermistor (Generic 3950 on analog0)"
        t = self.wait_temperature("temperature_sensor thermistor",
                                  THERM_TARGET_C - 1.0, THERM_TARGET_C + 1.0,
                                  15.0, what)
        self.passed("%s reads %.2f C" % (what, t))

    def test_ds18b20(self):
        what = "temperature_sensor ds (DS18B20 %s)" % DS18B20_SERIAL
        want = DS18B20_MILLIC / 1000.0
        t = self.wait_temperature("temperature_sensor ds", want - 0.01,
                                  want + 0.01, 20.0, what)
        self.passed("%s reads %.2f C" % (what, t))

    def test_htu21d(self):
        what = "temperature_sensor room (HTU21D on i2c.1)"
        t = self.wait_temperature("temperature_sensor room",
                                  HTU21D_TEMP - 0.1, HTU21D_TEMP + 0.1,
                                  20.0, what)
        st = self.query("htu21d room")
        log("%s: htu21d status %r" % (what, st))
        self.passed("%s reads %.2f C" % (what, t))

    def run(self):
        log("sim board clock: %d" % self.sim.wait_up())
        self.fill_tree()
        r = self.sim.request("htu21d %g %g" % (HTU21D_TEMP, HTU21D_HUMIDITY))
        if r != "ok":
            raise Failure("sim: htu21d -> %r" % r)
        self.start_ready()
        self.run_checks([(name, getattr(self, "test_" + name))
                         for name in self.parts])
        time.sleep(1.0)
        self.check_healthy("end")


def add_args(ap):
    ap.add_argument("--sysfs-root", required=True,
                    help="the MCU's --sysfs-root folder, filled here")
    ap.add_argument("--parts", default=",".join(ALL_PARTS),
                    help="comma-separated parts: " + ", ".join(ALL_PARTS))


def main():
    return gpio_conformance.sim_main(PeriphHarness, __doc__, log, add_args)


if __name__ == "__main__":
    sys.exit(main())

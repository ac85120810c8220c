//! Black-box fuzzing of the built `klipper_mcu` over its pseudo-terminal,
//! with and without `--sim`, in both host dialects. Rounds of:
//! random bytes; random payloads in valid frames with random sequence
//! numbers; valid blocks with bytes mutated; well-formed random commands
//! of the dictionary with edge-case arguments; closing and reopening the
//! terminal; floods the host does not read. After every round the MCU
//! must answer `get_clock` (the harness resynchronises as klippy would:
//! sync bytes, then the sequence number the MCU's nak gives), its RSS
//! (VmRSS) must stay within a small margin of where it started, and, once
//! shut down (`emergency_stop` stops every timer), it must use no CPU over
//! an idle second. A `config_reset` hit by chance re-executes it: the
//! harness follows it to its new terminal.
//!
//! Without `--sim` it gets empty `--dev-root`/`--sysfs-root` folders, so
//! random commands never touch this machine's devices.
//!
//! `KLIPPER_MCU_BLACKBOX_SECS=N`: seconds of rounds per configuration
//! (default 20, CI); `KLIPPER_MCU_BLACKBOX_SEED=N` repeats a run.

mod common;
#[path = "fuzzing/known_bugs.rs"]
mod known_bugs;

use std::time::{Duration, Instant};

use common::{Mcu, TempDir};
use klipper_protocol::block::{frame_vec, MESSAGE_DEST, MESSAGE_PAYLOAD_MAX, MESSAGE_SYNC};
use klipper_protocol::dictionary::Dictionary;
use klipper_protocol::format::ParamType;
use klipper_protocol::vlq;
use libtest_mimic::{Arguments, Failed, Trial};

use known_bugs::{steer_off_queue, sw_bus_delay_param, KNOWN_SW_BUS_DELAY};

/// RSS may move by this much (allocation at configuration, page noise).
const RSS_MARGIN_KB: u64 = 2048;
/// Clock ticks (1/100 s) of CPU allowed over an idle second.
const IDLE_TICKS_MAX: u64 = 1;

/// xorshift64*: deterministic from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Edge cases more often than not.
    fn int(&mut self, now: u32) -> u32 {
        match self.below(12) {
            0 => 0,
            1 => 1,
            2 => u32::MAX - self.below(3) as u32,
            3 => i32::MIN as u32,
            4 => (-(self.below(200) as i32)) as u32,
            5 => self.next() as u32,
            6 => now.wrapping_add(self.below(200_000) as u32),
            7 => self.below(50_000) as u32,
            _ => self.below(64) as u32,
        }
    }
}

#[derive(Default)]
struct Counts {
    rounds: u64,
    /// Blocks of random payloads, mutated blocks and random commands.
    blocks: u64,
    /// Blocks of the unread floods (valid `get_clock`/`identify`).
    flood_blocks: u64,
    random_bytes: u64,
    reconnects: u64,
    reexecs: u64,
    rss_kb: (u64, u64),
}

struct Session {
    m: Mcu,
    dict: Dictionary,
    /// (name, id, types), by id.
    cmds: Vec<(String, u16, Vec<ParamType>)>,
    rng: Rng,
    n: Counts,
    /// The MCU's clock at the last `get_clock`, for schedules near now.
    last_clock: u32,
}

fn proc_status(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = s.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    get(11) + get(12)
}

impl Session {
    fn start(args: &[&str], seed: u64) -> Session {
        let m = Mcu::start_with(args);
        let dict = m.dict().clone();
        let mut cmds: Vec<_> = dict
            .commands
            .values()
            .map(|c| (c.format.name.clone(), c.id, c.format.types()))
            .collect();
        cmds.sort_by_key(|c| c.1);
        Session {
            m,
            dict,
            cmds,
            rng: Rng(seed | 1),
            n: Counts::default(),
            last_clock: 0,
        }
    }

    /// Does this payload hold a command of a known-bug class (or a
    /// `config_reset`, most of the time)?
    fn known_bug(&self, p: &[u8]) -> bool {
        let mut pos = 0;
        while pos < p.len() {
            let Ok(id) = vlq::decode_msgid(p, &mut pos) else {
                return false;
            };
            let Some((name, _, types)) = self.cmds.iter().find(|c| c.1 == id) else {
                return false;
            };
            if steer_off_queue(name) {
                return true;
            }
            // A re-execution starts the RSS and idle measurements afresh:
            // let few through, so that one process image sees long runs.
            if name == "config_reset" && !self.rng.0.is_multiple_of(16) {
                return true;
            }
            let sw = name == "spi_set_sw_bus" || name == "i2c_set_sw_bus";
            if KNOWN_SW_BUS_DELAY && sw {
                return true;
            }
            for t in types {
                if t.is_buffer() {
                    let Some(&n) = p.get(pos) else { return false };
                    pos += 1 + n as usize;
                } else if vlq::decode(p, &mut pos).is_err() {
                    return false;
                }
            }
        }
        false
    }

    /// A random well-formed command of the dictionary.
    fn random_command(&mut self, out: &mut Vec<u8>) {
        let i = self.rng.below(self.cmds.len() as u64) as usize;
        let (name, id, types) = self.cmds[i].clone();
        let mut p = Vec::new();
        let mut tmp = [0u8; 2];
        let n = vlq::encode_msgid(id, &mut tmp);
        p.extend_from_slice(&tmp[..n]);
        for (k, t) in types.iter().enumerate() {
            if t.is_buffer() {
                let len = self.rng.below(24) as usize;
                p.push(len as u8);
                let b = self.rng.bytes(len);
                p.extend(b);
            } else {
                let mut v = self.rng.int(self.last_clock);
                if sw_bus_delay_param(&name, k) {
                    v %= 1000;
                }
                vlq::push(v, &mut p);
            }
        }
        if steer_off_queue(&name) {
            return;
        }
        if name == "config_reset" && self.rng.below(16) != 0 {
            return;
        }
        if out.len() + p.len() <= MESSAGE_PAYLOAD_MAX {
            out.extend(p);
        }
    }

    /// Write all of `data`, reading meanwhile; stops quietly if the MCU's
    /// side went away (a re-execution: `alive` follows it).
    fn write(&mut self, mut data: &[u8]) {
        let deadline = Instant::now() + common::TIMEOUT;
        while !data.is_empty() && !self.m.hung_up && Instant::now() < deadline {
            match self.m.write_some(data) {
                Ok(0) => {
                    self.m.pump(Duration::from_millis(5));
                }
                Ok(n) => data = &data[n..],
                Err(_) => {
                    self.m.hung_up = true;
                }
            }
        }
    }

    fn frame(&mut self, payload: &[u8]) -> Vec<u8> {
        self.n.blocks += 1;
        self.m.codec.frame(payload)
    }

    fn round(&mut self) -> Result<(), String> {
        let kind = self.rng.below(7);
        match kind {
            // Random bytes.
            0 => {
                let n = 1 + self.rng.below(2048) as usize;
                let b = self.rng.bytes(n);
                self.n.random_bytes += n as u64;
                self.write(&b);
            }
            // Random payloads, valid frames, random sequence numbers.
            1 => {
                for _ in 0..1 + self.rng.below(200) {
                    let len = self.rng.below(MESSAGE_PAYLOAD_MAX as u64 + 1) as usize;
                    let p = self.rng.bytes(len);
                    if self.known_bug(&p) {
                        continue;
                    }
                    let seq = MESSAGE_DEST | (self.rng.below(16) as u8);
                    self.n.blocks += 1;
                    self.write(&frame_vec(seq, &p));
                }
            }
            // Valid blocks with bytes mutated (frame or payload; with the
            // checksum made good again half the time).
            2 => {
                for _ in 0..1 + self.rng.below(200) {
                    let mut p = Vec::new();
                    for _ in 0..1 + self.rng.below(4) {
                        self.random_command(&mut p);
                    }
                    let i = self.rng.below(p.len() as u64 + 1) as usize;
                    let recrc = self.rng.below(2) == 0;
                    if recrc && i < p.len() {
                        p[i] = self.rng.next() as u8;
                        if self.known_bug(&p) {
                            continue;
                        }
                        let b = self.frame(&p);
                        self.write(&b);
                    } else {
                        let mut b = self.frame(&p);
                        let j = self.rng.below(b.len() as u64) as usize;
                        b[j] = self.rng.next() as u8;
                        if self.known_bug(&b[2..b.len() - 3]) {
                            continue;
                        }
                        self.write(&b);
                    }
                }
            }
            // Well-formed random commands, as a (confused) host sends them.
            3 | 4 => {
                for _ in 0..1 + self.rng.below(200) {
                    let mut p = Vec::new();
                    for _ in 0..1 + self.rng.below(4) {
                        self.random_command(&mut p);
                    }
                    let b = self.frame(&p);
                    self.write(&b);
                }
            }
            // Close and reopen the terminal, maybe mid-block.
            5 => {
                if self.rng.below(2) == 0 {
                    let n = 1 + self.rng.below(30) as usize;
                    let b = self.rng.bytes(n);
                    self.write(&b);
                }
                self.reopen();
                self.n.reconnects += 1;
            }
            // A flood the host does not read while it writes.
            _ => {
                let start = Instant::now();
                let mut stuck = 0;
                while start.elapsed() < Duration::from_millis(500) && stuck < 50 {
                    let p = self.m.encode(if self.rng.below(2) == 0 {
                        "get_clock"
                    } else {
                        "identify offset=0 count=40"
                    });
                    let b = self.m.codec.frame(&p);
                    let mut off = 0;
                    while off < b.len() && stuck < 50 && !self.m.hung_up {
                        let w = match self.m.write_some(&b[off..]) {
                            Ok(w) => w,
                            Err(_) => {
                                self.m.hung_up = true;
                                break;
                            }
                        };
                        if w == 0 {
                            stuck += 1;
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        off += w;
                    }
                    if off == b.len() {
                        self.n.flood_blocks += 1;
                    }
                }
            }
        }
        self.n.rounds += 1;
        // Forget what was answered meanwhile (messages pile up otherwise).
        self.m.pump(Duration::from_millis(5));
        self.m.msgs.clear();
        self.m.acks.clear();
        self.alive()
    }

    /// Close and reopen the terminal, keeping the dictionary.
    fn reopen(&mut self) {
        self.m.close();
        self.m.open();
        self.m.codec.dict = self.dict.clone();
    }

    /// The MCU still answers `get_clock`: resynchronise and ask, following
    /// a re-execution to its new terminal.
    fn alive(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + common::TIMEOUT;
        let mut tries = 0;
        loop {
            if let Ok(Some(st)) = self.m.child.try_wait() {
                return Err(format!(
                    "klipper_mcu exited ({st}); stderr:\n{}",
                    tail(&self.m.stderr())
                ));
            }
            if self.m.hung_up || self.link_moved() {
                // config_reset re-executed it: a new terminal.
                let old = self.m.tty.clone();
                self.m
                    .wait_link(Some(&old), common::TIMEOUT)
                    .map_err(|e| format!("after a hang-up: {e}"))?;
                self.reopen();
                self.n.reexecs += 1;
            }
            // Sync bytes end any partial block; alone they are ignored.
            let sync = [MESSAGE_SYNC; 70];
            self.write(&sync);
            self.m.acks.clear();
            self.m.msgs.retain(|r| r.name != "clock");
            let p = self.m.encode("get_clock");
            let b = self.m.codec.frame(&p);
            self.write(&b);
            let wait = Instant::now() + Duration::from_millis(300 + 200 * tries.min(10));
            while Instant::now() < wait && !self.m.has_msg("clock") && !self.m.hung_up {
                self.m.pump(Duration::from_millis(20));
            }
            if let Some(r) = self.m.msgs.iter().find(|r| r.name == "clock") {
                self.last_clock = r.int("clock") as u32;
                self.m.msgs.clear();
                return Ok(());
            }
            // A nak carries the sequence number the MCU expects.
            if let Some(&s) = self.m.acks.last() {
                self.m.codec.set_seq(s);
            }
            tries += 1;
            if Instant::now() > deadline {
                return Err(format!(
                    "no answer to get_clock for {:?} ({tries} tries); acks {:02x?}; stderr:\n{}",
                    common::TIMEOUT,
                    self.m.acks,
                    tail(&self.m.stderr())
                ));
            }
        }
    }

    fn link_moved(&self) -> bool {
        std::fs::read_link(&self.m.link).is_ok_and(|t| t != self.m.tty)
    }

    /// Shut down (no timer left), then an idle second must cost no CPU.
    fn idle_check(&mut self) -> Result<(), String> {
        let p = self.m.encode("emergency_stop");
        let b = self.m.codec.frame(&p);
        self.write(&b);
        self.m.pump(Duration::from_millis(50));
        self.m.msgs.clear();
        let pid = self.m.pid();
        let before = cpu_ticks(pid);
        std::thread::sleep(Duration::from_secs(1));
        let used = cpu_ticks(pid) - before;
        if used > IDLE_TICKS_MAX {
            return Err(format!(
                "{used} CPU ticks over an idle second after shutdown (seed rounds: {})",
                self.n.rounds
            ));
        }
        Ok(())
    }
}

fn tail(s: &str) -> String {
    let l: Vec<&str> = s.lines().collect();
    l[l.len().saturating_sub(30)..].join("\n")
}

fn run(sim: bool, dialect: &str, secs: u64, seed: u64) -> Result<(), Failed> {
    let roots = TempDir::new("blackbox-roots");
    let root = roots.path.to_str().expect("utf-8 path").to_string();
    let mut args = vec!["--dialect", dialect];
    if sim {
        args.push("--sim");
    } else {
        args.extend(["--dev-root", &root, "--sysfs-root", &root]);
    }
    let mut s = Session::start(&args, seed);
    let t0 = Instant::now();
    s.alive()?;
    s.idle_check()?;
    let pid = s.m.pid();
    let mut base = proc_status(pid, "VmRSS:");
    let mut reexecs = 0;
    let mut max = base;
    let mut last_idle = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        s.round()
            .map_err(|e| format!("round {} (seed {seed}): {e}", s.n.rounds))?;
        if s.n.reexecs != reexecs {
            // A fresh process image: measure from its start.
            reexecs = s.n.reexecs;
            base = proc_status(pid, "VmRSS:");
            max = base;
        }
        let rss = proc_status(pid, "VmRSS:");
        max = max.max(rss);
        if rss > base + RSS_MARGIN_KB {
            return Err(format!(
                "VmRSS grew from {base} kB to {rss} kB by round {} (seed {seed})",
                s.n.rounds
            )
            .into());
        }
        if last_idle.elapsed() > Duration::from_secs(4) {
            s.idle_check()?;
            last_idle = Instant::now();
        }
    }
    s.idle_check()?;
    s.n.rss_kb = (base, max);
    eprintln!(
        "[fuzz_blackbox] {} {dialect}: {} rounds, {} fuzzed blocks, {} flood blocks, {} random bytes, {} reconnects, \
         {} re-executions, VmRSS {}..{} kB, seed {seed}, {:.0}s",
        if sim { "--sim" } else { "linux" },
        s.n.rounds,
        s.n.blocks,
        s.n.flood_blocks,
        s.n.random_bytes,
        s.n.reconnects,
        s.n.reexecs,
        s.n.rss_kb.0,
        s.n.rss_kb.1,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() {
    let mut args = Arguments::from_args();
    // Each configuration drives its own process; two at a time is what
    // CI's two shared cores allow without starving the MCUs.
    args.test_threads = args.test_threads.or(Some(2));
    let secs: u64 = std::env::var("KLIPPER_MCU_BLACKBOX_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("KLIPPER_MCU_BLACKBOX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let mut trials = Vec::new();
    for (i, (sim, dialect)) in [
        (true, "klipper"),
        (true, "kalico"),
        (false, "klipper"),
        (false, "kalico"),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!(
            "fuzz_blackbox::{}_{dialect}",
            if sim { "sim" } else { "linux" }
        );
        let seed = seed.wrapping_add(i as u64);
        trials.push(Trial::test(name, move || run(sim, dialect, secs, seed)));
    }
    libtest_mimic::run(&args, trials).exit();
}

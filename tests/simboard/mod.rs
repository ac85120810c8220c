//! Helpers for the GPIO integration tests (`gpio_sim.rs`, `fakegpio.rs`):
//! a small host that spawns `klipper_mcu` with chosen arguments *and
//! environment* (the fake-GPIO tests need `LD_PRELOAD`, which
//! `tests/common` cannot pass), talks to it through its pseudo-terminal
//! with `HostCodec`, and drives the simulated board's control socket.
//!
//! Every wait is bounded by [`TIMEOUT`]; the child is killed on drop.
#![allow(dead_code)]

use std::fs::File;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

mod exe;
mod port;
mod rt;
pub mod stall;

use klipper_protocol::dictionary::Dictionary;
use klipper_protocol::host::Response;

/// Longest single wait: CI machines are small and busy.
pub const TIMEOUT: Duration = Duration::from_secs(20);
/// MCU clock ticks per millisecond (CLOCK_FREQ is 50 MHz).
pub const TICKS_PER_MS: u32 = 50_000;
/// How late (never early) a timed output edge typically lands: the
/// median lateness of a series of edges must be within this.
pub const LATE_TOLERANCE: u32 = 2 * TICKS_PER_MS;
/// How late any single edge may be. On a shared 2-core machine running
/// tests in parallel the MCU process is now and then descheduled for a few
/// milliseconds (seen: 2.6 and 3.7 ms); such a stall delays an edge or two
/// and the schedule then catches up, while a scheduling error shifts every
/// edge (caught by the median) or lands early (never allowed).
pub const MAX_LATE: u32 = 50 * TICKS_PER_MS;

pub const fn ms(n: u32) -> u32 {
    n * TICKS_PER_MS
}

/// Signed distance `a - b` between two 32-bit clock times.
pub fn diff(a: u32, b: u32) -> i64 {
    a.wrapping_sub(b) as i32 as i64
}

pub use port::Scratch;

/// The state of one simulated line, as `get` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinState {
    pub level: u8,
    pub rises: u32,
    pub falls: u32,
    pub output: u8,
    pub bias: String,
}

/// `-r` (SCHED_FIFO, locked memory) when the tests run as root, as CI
/// does, unless `KLIPPER_TEST_NO_RT` is set; otherwise nothing, and the
/// tests that use it check what the protocol reports about lost data
/// instead of assuming a quiet machine.
pub fn realtime() -> &'static [&'static str] {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && std::env::var_os("KLIPPER_TEST_NO_RT").is_none() && rt::fifo_allowed() {
        &["-r"]
    } else {
        &[]
    }
}

/// The environment variable `name` as a number, else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Each (commands, reason): a fresh board sent `allocate_oids` for
/// `oids` and the commands shuts down for that reason.
pub fn assert_shutdowns(oids: u32, cases: &[(&[&str], &str)]) {
    let alloc = format!("allocate_oids count={oids}");
    for &(cmds, reason) in cases {
        let cmds = [&[alloc.as_str()], cmds].concat();
        assert_eq!(Board::shutdown_reason_of(&cmds), reason, "{cmds:?}");
    }
}

/// One `klipper_mcu` process and a host session on its terminal.
pub struct Board {
    child: Child,
    pub link: PathBuf,
    stderr_path: PathBuf,
    /// The host's session on the terminal.
    pub io: port::Session,
    /// The control socket of the simulated board (with `--sim`).
    ctl: Option<UnixDatagram>,
    /// How far the simulator's clock runs ahead of the MCU's (a lower
    /// bound, see [`Board::measure_sim_offset`]).
    pub sim_offset: u32,
    /// With `-r`: the machine's own stalls while the board runs (see
    /// [`Board::machine_stall`]).
    stalls: Option<stall::StallWatch>,
    // Last: the child is killed (in Drop) before the directory goes.
    pub dir: Scratch,
}

impl Board {
    /// A simulated board (`--sim`), identified and ready to configure.
    pub fn sim() -> Board {
        Board::sim_with(&[])
    }

    /// A simulated board run with `-r` when allowed (see [`realtime`]), as
    /// the deployment recommends for streaming sensors and bit-banged
    /// protocols: the chips' FIFOs and the bit timing then do not depend
    /// on how busy the machine is.
    pub fn sim_realtime() -> Board {
        Board::sim_with(realtime())
    }

    /// With `-r`, watch the machine's own stalls from now on (see
    /// [`Board::machine_stall`]). Only for tests whose timing allows a
    /// thread above the MCU's priority to wake every millisecond: it
    /// preempts the MCU for microseconds, which bit-banged protocols
    /// (tmcuart's 25 us bits) may not bear.
    pub fn watch_machine_stalls(&mut self) {
        if !realtime().is_empty() && self.stalls.is_none() {
            self.stalls = stall::StallWatch::start();
        }
    }

    /// The longest the machine stopped running a CPU since
    /// [`Board::watch_machine_stalls`] (zero without it or without `-r`):
    /// a stall no real-time scheduling inside the machine can prevent,
    /// seen by a thread pinned to each CPU at a priority above the MCU's.
    pub fn machine_stall(&self) -> Duration {
        self.stalls.as_ref().map_or(Duration::ZERO, |w| w.worst())
    }

    /// The machine's stalls since [`Board::watch_machine_stalls`] added
    /// up over its CPUs (zero without the watch): an upper bound on the
    /// time the MCU lost to them.
    pub fn machine_stall_total(&self) -> Duration {
        self.stalls.as_ref().map_or(Duration::ZERO, |w| w.total())
    }

    /// A simulated board with extra arguments.
    pub fn sim_with(extra: &[&str]) -> Board {
        let mut args = vec!["--sim"];
        args.extend_from_slice(extra);
        let mut b = Board::spawn(&args, &[]);
        b.connect();
        b.open_control();
        b.sim_offset = b.measure_sim_offset();
        b
    }

    /// The simulator keeps its own clock, started a little before the
    /// MCU's, so its `clock` and `history` times run ahead of the MCU's
    /// by a few hundred microseconds to several milliseconds (a bug, see
    /// `gpio_sim.rs`'s `sim_clock_is_the_mcu_clock`). Measure a lower
    /// bound of that offset: a simulator time read *before* a `get_clock`
    /// exceeds the MCU time by at most the offset. Subtracting a lower
    /// bound keeps corrected times at or after the true MCU times, so
    /// "never early" checks stay sound. Zero once the two clocks agree.
    pub fn measure_sim_offset(&mut self) -> u32 {
        let mut best = 0i64;
        for _ in 0..10 {
            let s = self.raw_sim_clock();
            let c = self.clock();
            best = best.max(diff(s, c));
        }
        best as u32
    }

    /// Spawn `klipper_mcu -I <scratch>/tty <args>` with extra environment
    /// variables; does not wait for it.
    pub fn spawn(args: &[&str], env: &[(&str, &Path)]) -> Board {
        let dir = Scratch::new("gpio");
        let link = dir.path.join("tty");
        let stderr_path = dir.path.join("stderr.log");
        let stderr = File::create(&stderr_path).expect("create the stderr log");
        let mut cmd = port::mcu_on_link(exe::mcu_command(), &link, args, stderr.into());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn klipper_mcu");
        Board {
            child,
            link,
            stderr_path,
            io: port::Session::default(),
            ctl: None,
            sim_offset: 0,
            stalls: None,
            dir,
        }
    }

    /// The MCU's process id (the same across `config_reset`, which
    /// re-executes in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the MCU to exit, up to `timeout`; None if it did not.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        port::wait_exit(&mut self.child, timeout)
    }

    /// Wait for the link, open it as klippy does, fetch the dictionary.
    pub fn connect(&mut self) {
        self.connect_after(None);
    }

    /// As [`Board::connect`], for a link that must no longer point at
    /// `old` (the terminal before a `config_reset`).
    pub fn connect_after(&mut self, old: Option<&Path>) {
        if let Err(e) = port::wait_link(&self.link, old, Some(&mut self.child), TIMEOUT) {
            panic!("{e}; stderr:\n{}", self.stderr());
        }
        self.io = port::Session::open(&self.link);
        self.identify();
    }

    fn identify(&mut self) {
        self.io.codec.dict = port::fetch_dictionary(|offset| {
            self.send(&format!("identify offset={offset} count=40"));
            let r = self.wait_msg_where("identify_response", |r| r.int("offset") == offset as i64);
            r.bytes("data").to_vec()
        });
        // Messages before the dictionary (`starting`) could not be decoded
        // and were dropped; nothing else is expected yet.
        self.io.msgs.clear();
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// What the MCU wrote to stderr besides its start-up line (which says
    /// only that it is up, where and how).
    pub fn stderr_messages(&self) -> String {
        let up = format!("klipper_mcu {}: link ", env!("CARGO_PKG_VERSION"));
        self.stderr()
            .lines()
            .filter(|l| !l.starts_with(&up))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    pub fn dict(&self) -> &Dictionary {
        &self.io.codec.dict
    }

    /// Each of `formats` (a command's full format, name first) is in the
    /// dictionary, spelled exactly so.
    pub fn assert_command_formats(&self, formats: &[&str]) {
        for c in formats {
            let name = c.split(' ').next().unwrap();
            let m = self
                .dict()
                .commands
                .get(name)
                .unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(m.format.format, *c);
        }
    }

    /// The value of `key` in the dictionary's enumeration `name`.
    pub fn enumeration(&self, name: &str, key: &str) -> Option<i64> {
        let e = self.dict().enumerations.get(name)?;
        e.get(key).and_then(|v| v.as_i64())
    }

    fn fd(&self) -> i32 {
        self.io.fd()
    }

    fn write_all(&mut self, data: &[u8]) {
        port::write_all(self.fd(), data, TIMEOUT, || {
            self.pump(Duration::from_millis(5));
        });
    }

    /// Send one command (text, see `HostCodec::encode_text`) in a block.
    pub fn send(&mut self, text: &str) {
        let b = port::block(&mut self.io.codec, text);
        self.write_all(&b);
    }

    /// Send several commands packed into as few blocks as fit, so that
    /// the MCU runs them back to back.
    pub fn send_all(&mut self, cmds: &[String]) {
        let enc: Vec<Vec<u8>> = cmds
            .iter()
            .map(|t| port::encode(&self.io.codec, t))
            .collect();
        let b = self.io.codec.frame_all(&enc);
        self.write_all(&b);
    }

    /// Wait up to `timeout` for input and read what is there.
    pub fn pump(&mut self, timeout: Duration) -> bool {
        let revents = port::poll(self.fd(), libc::POLLIN, timeout);
        if revents == 0 {
            return false;
        }
        if revents & libc::POLLIN == 0 {
            // Hung up: do not spin.
            std::thread::sleep(timeout.min(Duration::from_millis(20)));
            return false;
        }
        port::read_available(self.fd(), |chunk| self.io.feed(chunk)).0
    }

    /// Read for `d`, collecting messages.
    pub fn settle(&mut self, d: Duration) {
        port::for_a_while(d, Duration::from_millis(50), |left| {
            self.pump(left);
        });
    }

    pub fn fail(&mut self, why: &str) -> ! {
        let status = self.child.try_wait().ok().flatten();
        let msgs: Vec<&Response> = self.io.msgs.iter().filter(|m| m.name != "stats").collect();
        panic!(
            "{why}\n  messages: {msgs:?}\n  process: {}\n  stderr:\n{}",
            status.map_or("running".to_string(), |s| s.to_string()),
            self.stderr()
        );
    }

    /// Take the first message named `name` for which `pred` holds,
    /// waiting up to [`TIMEOUT`].
    pub fn wait_msg_where(&mut self, name: &str, pred: impl Fn(&Response) -> bool) -> Response {
        self.try_wait_msg(name, &pred, TIMEOUT)
            .unwrap_or_else(|| self.fail(&format!("timed out waiting for `{name}`")))
    }

    pub fn wait_msg(&mut self, name: &str) -> Response {
        self.wait_msg_where(name, |_| true)
    }

    /// As [`Board::wait_msg_where`], but `None` after `timeout`.
    pub fn try_wait_msg(
        &mut self,
        name: &str,
        pred: &dyn Fn(&Response) -> bool,
        timeout: Duration,
    ) -> Option<Response> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.io.msgs.iter().position(|r| r.name == name && pred(r)) {
                return Some(self.io.msgs.remove(i));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.pump(left.min(Duration::from_millis(50)));
        }
    }

    /// The integer `field` of every message named `name` received so far
    /// (taken).
    pub fn take_ints(&mut self, name: &str, field: &str) -> Vec<i64> {
        self.take_all(name).iter().map(|r| r.int(field)).collect()
    }

    /// Read for `d`: no message named `name` may come (nor be waiting);
    /// `what` says what one would mean.
    pub fn assert_none_for(&mut self, d: Duration, name: &str, what: &str) {
        self.settle(d);
        let got = self.take_all(name);
        assert!(got.is_empty(), "{what}: {got:?}");
    }

    /// Take every message named `name` received so far.
    pub fn take_all(&mut self, name: &str) -> Vec<Response> {
        let (take, keep) = std::mem::take(&mut self.io.msgs)
            .into_iter()
            .partition(|r| r.name == name);
        self.io.msgs = keep;
        take
    }

    /// Send `cmd` and wait for the first `resp` after it.
    pub fn request(&mut self, cmd: &str, resp: &str) -> Response {
        // Drop stale replies of the same name first.
        self.pump(Duration::ZERO);
        self.take_all(resp);
        self.send(cmd);
        self.wait_msg(resp)
    }

    /// The MCU's clock now (`get_clock`).
    pub fn clock(&mut self) -> u32 {
        self.request("get_clock", "clock").int("clock") as u32
    }

    /// `allocate_oids`, the given configuration commands, and
    /// `finalize_config`; checks the MCU took them without shutting down.
    pub fn configure(&mut self, oids: u32, cmds: &[String]) {
        let mut all = vec![format!("allocate_oids count={oids}")];
        all.extend(cmds.iter().cloned());
        all.push("finalize_config crc=1234".to_string());
        self.send_all(&all);
        let c = self.request("get_config", "config");
        if c.int("is_config") != 1 || c.int("is_shutdown") != 0 {
            let why = format!("configuration refused: {c:?}");
            self.fail(&why);
        }
        self.assert_not_shutdown();
    }

    pub fn assert_not_shutdown(&mut self) {
        self.pump(Duration::ZERO);
        if let Some(s) = self.io.msgs.iter().find(|m| m.name == "shutdown").cloned() {
            let why = format!(
                "unexpected shutdown: {}",
                self.static_string(s.int("static_string_id"))
            );
            self.fail(&why);
        }
    }

    /// The text of a `static_string_id`, through the dictionary.
    pub fn static_string(&self, id: i64) -> String {
        port::static_string(self.dict(), id)
            .unwrap_or_else(|| panic!("static_string_id {id} not in the dictionary"))
    }

    /// Wait for `shutdown`; returns (clock, reason text).
    /// A fresh simulated board (see [`Board::sim_realtime`]) sent `cmds`
    /// in one go, which must shut it down: the reason.
    pub fn shutdown_reason_of(cmds: &[&str]) -> String {
        let mut b = Board::sim_realtime();
        let cmds: Vec<String> = cmds.iter().map(|c| c.to_string()).collect();
        b.send_all(&cmds);
        b.wait_shutdown().1
    }

    pub fn wait_shutdown(&mut self) -> (u32, String) {
        let r = self.wait_msg("shutdown");
        (
            r.int("clock") as u32,
            self.static_string(r.int("static_string_id")),
        )
    }

    // -----------------------------------------------------------------
    // The simulated board's control socket.

    fn open_control(&mut self) {
        let me = self.dir.path.join("ctl-client");
        let s = UnixDatagram::bind(&me).expect("bind a control client socket");
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut server = self.link.as_os_str().to_owned();
        server.push(".sim");
        s.connect(PathBuf::from(server))
            .expect("connect to the simulator control socket");
        self.ctl = Some(s);
    }

    /// One request to the control socket; its answer.
    pub fn ctl(&mut self, req: &str) -> String {
        let s = self.ctl.as_ref().expect("a --sim board");
        s.send(req.as_bytes()).expect("send a control request");
        let mut buf = vec![0u8; 65536];
        let n = s
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no answer to {req:?}: {e}"));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Drive an input line.
    pub fn set(&mut self, pin: u32, v: u8) {
        let r = self.ctl(&format!("set gpio{pin} {v}"));
        assert_eq!(r, "ok", "set gpio{pin} {v}");
    }

    pub fn get(&mut self, pin: u32) -> PinState {
        let r = self.ctl(&format!("get gpio{pin}"));
        let field = |k: &str| -> String {
            r.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")).map(str::to_string))
                .unwrap_or_else(|| panic!("no {k} in {r:?}"))
        };
        PinState {
            level: field("level").parse().unwrap(),
            rises: field("rises").parse().unwrap(),
            falls: field("falls").parse().unwrap(),
            output: field("output").parse().unwrap(),
            bias: field("bias"),
        }
    }

    /// `pin` is an output at `level` (`what` says which, on failure).
    pub fn assert_output(&mut self, pin: u32, level: u8, what: &str) {
        let p = self.get(pin);
        assert_eq!((p.level, p.output), (level, 1), "{what}: {p:?}");
    }

    /// The last `n` (at most 512) writes of a line: (clock, value), in
    /// MCU clock (corrected by [`Board::sim_offset`]).
    pub fn history(&mut self, pin: u32, n: usize) -> Vec<(u32, u8)> {
        let off = self.sim_offset;
        self.raw_history(pin, n)
            .into_iter()
            .map(|(c, v)| (c.wrapping_sub(off), v))
            .collect()
    }

    /// `history` as the simulator answers it.
    pub fn raw_history(&mut self, pin: u32, n: usize) -> Vec<(u32, u8)> {
        let r = self.ctl(&format!("history gpio{pin} {n}"));
        r.split_whitespace()
            .map(|w| {
                let (c, v) = w
                    .split_once(':')
                    .unwrap_or_else(|| panic!("bad history {r:?}"));
                (c.parse().unwrap(), v.parse().unwrap())
            })
            .collect()
    }

    /// The simulated board's clock, in MCU clock (corrected by
    /// [`Board::sim_offset`]).
    pub fn sim_clock(&mut self) -> u32 {
        self.raw_sim_clock().wrapping_sub(self.sim_offset)
    }

    /// `clock` as the simulator answers it.
    pub fn raw_sim_clock(&mut self) -> u32 {
        self.ctl("clock").trim().parse().expect("a clock")
    }

    /// Wait (reading messages meanwhile) until the board's clock has
    /// passed `t`.
    pub fn wait_until_clock(&mut self, t: u32) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let now = self.sim_clock();
            let left = diff(t, now);
            if left < 0 {
                return;
            }
            assert!(Instant::now() < deadline, "clock {t} never came");
            let wait_ms = (left / TICKS_PER_MS as i64).clamp(1, 50) as u64;
            self.pump(Duration::from_millis(wait_ms));
        }
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        self.io.port = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Check a series of edge times against their ideal times: the same
/// count, none early, none more than [`MAX_LATE`] late, and the median
/// lateness within `tol` ticks.
pub fn assert_on_time(what: &str, actual: &[u32], ideal: &[u32], tol: u32) {
    assert_eq!(
        actual.len(),
        ideal.len(),
        "{what}: {} edges, expected {}\n actual {actual:?}\n ideal {ideal:?}",
        actual.len(),
        ideal.len()
    );
    let late: Vec<i64> = actual
        .iter()
        .zip(ideal)
        .map(|(&a, &i)| diff(a, i))
        .collect();
    for (k, &d) in late.iter().enumerate() {
        assert!(
            (0..=MAX_LATE as i64).contains(&d),
            "{what}: edge {k} at {}, ideal {}: {d} ticks off (allowed 0..={MAX_LATE})\n \
             actual {actual:?}\n ideal {ideal:?}",
            actual[k],
            ideal[k]
        );
    }
    let m = median(&late);
    assert!(
        m <= tol as i64,
        "{what}: median lateness {m} ticks (allowed {tol})\n lateness {late:?}"
    );
}

/// The lower median.
pub fn median(v: &[i64]) -> i64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s[(s.len() - 1) / 2]
}

//! A small host-side harness for integration tests that talk to the
//! `klipper_mcu` binary through its pseudo-terminal: spawn it with
//! `-I <tempdir>/tty`, open the link, fetch the data dictionary through
//! `identify`, send commands with `HostCodec`, and read acks/naks and
//! messages with timeouts. The child is killed when the harness drops.
#![allow(dead_code)]

#[path = "../simboard/exe.rs"]
mod exe;
#[path = "../simboard/port.rs"]
mod port;

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use klipper_protocol::dictionary::Dictionary;
use klipper_protocol::host::{HostCodec, Response};

/// How long any single wait may take: generous, CI machines are small and
/// busy.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// A scratch directory, removed on drop.
pub use port::Scratch as TempDir;

/// One `klipper_mcu` process and, once opened, a host connection to it.
pub struct Mcu {
    pub child: Child,
    /// The `-I` path.
    pub link: PathBuf,
    stderr_path: PathBuf,
    port: Option<File>,
    /// The terminal the link pointed at when it was opened.
    pub tty: PathBuf,
    pub codec: HostCodec,
    /// Sequence bytes of the empty blocks (acks and naks) received, in order.
    pub acks: Vec<u8>,
    /// Decoded messages received and not yet taken, in order.
    pub msgs: Vec<Response>,
    /// Payloads that could not be decoded with the dictionary at hand (e.g.
    /// `starting` before `identify`); decoded again once it is fetched.
    undecoded: Vec<Vec<u8>>,
    /// A `starting` message arrived before or during `identify`.
    pub saw_starting: bool,
    /// Set when the port reported a hang-up (the MCU closed its side).
    pub hung_up: bool,
    // Last, so the child is killed (in Drop) before the directory goes.
    pub dir: TempDir,
}

impl Mcu {
    /// Start an MCU, open its terminal and fetch its dictionary.
    pub fn start() -> Mcu {
        Mcu::start_with(&[])
    }

    /// As [`Mcu::start`], with extra command-line arguments.
    pub fn start_with(args: &[&str]) -> Mcu {
        let mut m = Mcu::spawn_in(TempDir::new("pty"), args);
        if let Err(e) = m.wait_link(None, TIMEOUT) {
            panic!("klipper_mcu {args:?} did not come up: {e}");
        }
        m.open();
        m.identify();
        m
    }

    /// Spawn `klipper_mcu -I <dir>/tty <args>` without waiting for it.
    pub fn spawn_in(dir: TempDir, args: &[&str]) -> Mcu {
        let link = dir.path.join("tty");
        Mcu::spawn_at(dir, link, args, None)
    }

    /// Spawn `klipper_mcu -I <link> <args>`, its stderr to `stderr` if
    /// given (else to a log file in `dir`, which [`Mcu::stderr`] reads).
    pub fn spawn_at(dir: TempDir, link: PathBuf, args: &[&str], stderr: Option<Stdio>) -> Mcu {
        let stderr_path = dir.path.join("stderr.log");
        let stderr = stderr.unwrap_or_else(|| {
            File::create(&stderr_path)
                .expect("create the stderr log")
                .into()
        });
        let child = port::mcu_on_link(exe::mcu_command(), &link, args, stderr)
            .spawn()
            .expect("spawn klipper_mcu");
        Mcu {
            child,
            link,
            stderr_path,
            port: None,
            tty: PathBuf::new(),
            codec: HostCodec::new(),
            acks: Vec::new(),
            msgs: Vec::new(),
            undecoded: Vec::new(),
            hung_up: false,
            saw_starting: false,
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Wait until the link exists, points at an existing terminal, and
    /// (if `old` is given) no longer points at `old`. Returns its target.
    pub fn wait_link(&mut self, old: Option<&Path>, timeout: Duration) -> Result<PathBuf, String> {
        port::wait_link(&self.link, old, Some(&mut self.child), timeout)
            .map_err(|e| format!("{e}; stderr:\n{}", self.stderr()))
    }

    /// Open the link as klippy does (read-write, no controlling terminal,
    /// raw mode) and start a fresh host session on it.
    pub fn open(&mut self) {
        self.tty = std::fs::read_link(&self.link).expect("read the link");
        self.port = Some(port::open_raw(&self.link));
        self.codec = HostCodec::new();
        self.acks.clear();
        self.msgs.clear();
        self.undecoded.clear();
        self.hung_up = false;
        self.saw_starting = false;
    }

    /// Close the host side of the terminal.
    pub fn close(&mut self) {
        self.port = None;
    }

    fn fd(&self) -> i32 {
        self.port.as_ref().expect("port not open").as_raw_fd()
    }

    /// Fetch and install the data dictionary (`identify` in 40-byte
    /// chunks until an empty one).
    pub fn identify(&mut self) {
        self.codec.dict = port::fetch_dictionary(|offset| {
            self.send(&format!("identify offset={offset} count=40"));
            let r = self.wait_msg_where("identify_response", |r| r.int("offset") == offset as i64);
            r.bytes("data").to_vec()
        });
        // Decode what arrived before the dictionary, in front of the rest.
        let pending = std::mem::take(&mut self.undecoded);
        let mut early = Vec::new();
        for p in pending {
            match self.codec.decode(&p) {
                Ok(ms) => early.extend(ms),
                Err(e) => panic!("undecodable message {p:02x?}: {e}"),
            }
        }
        early.append(&mut self.msgs);
        self.msgs = early;
        // `starting` is noted apart, so tests can expect an empty queue.
        if let Some(i) = self.msgs.iter().position(|r| r.name == "starting") {
            self.msgs.remove(i);
            self.saw_starting = true;
        }
        // The identify exchange's acks are of no further interest.
        self.acks.clear();
    }

    pub fn dict(&self) -> &Dictionary {
        &self.codec.dict
    }

    /// Encode a command written as text (see `HostCodec::encode_text`).
    pub fn encode(&self, text: &str) -> Vec<u8> {
        port::encode(&self.codec, text)
    }

    /// The sequence byte the MCU is expected to carry in its acks now
    /// (i.e. the sequence of the next block we send).
    pub fn expected_seq(&self) -> u8 {
        0x10 | self.codec.seq()
    }

    /// Frame `payload` with the next sequence number and write it.
    /// Returns the block.
    pub fn send_payload(&mut self, payload: &[u8]) -> Vec<u8> {
        let b = self.codec.frame(payload);
        self.write_raw(&b);
        b
    }

    /// Encode a command and frame it with the next sequence number,
    /// without writing it. Returns the block.
    pub fn frame_text(&mut self, text: &str) -> Vec<u8> {
        let p = self.encode(text);
        self.codec.frame(&p)
    }

    /// Send one command in its own block. Returns the block.
    pub fn send(&mut self, text: &str) -> Vec<u8> {
        let p = self.encode(text);
        self.send_payload(&p)
    }

    /// Write bytes as they are, reading whatever the MCU sends meanwhile
    /// so that neither side blocks.
    pub fn write_raw(&mut self, data: &[u8]) {
        port::write_all(self.fd(), data, TIMEOUT, || {
            self.poll_io(libc::POLLIN | libc::POLLOUT, Duration::from_millis(50));
        });
    }

    /// Write what the terminal takes now, without reading anything (a
    /// host that stopped reading). Returns the bytes written (0 if full);
    /// an error when the MCU's side is gone (EIO after it re-executed).
    pub fn write_some(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = unsafe { libc::write(self.fd(), data.as_ptr().cast(), data.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::Interrupted => Ok(0),
            _ => Err(e),
        }
    }

    /// Wait up to `timeout` for input and read all that is there.
    /// Returns true if anything was read.
    pub fn pump(&mut self, timeout: Duration) -> bool {
        self.poll_io(libc::POLLIN, timeout)
    }

    fn poll_io(&mut self, events: i16, timeout: Duration) -> bool {
        let revents = port::poll(self.fd(), events, timeout);
        if revents == 0 {
            return false;
        }
        if revents & libc::POLLHUP != 0 && revents & libc::POLLIN == 0 {
            self.hung_up = true;
            // Do not spin on a hung-up terminal.
            std::thread::sleep(timeout.min(Duration::from_millis(20)));
            return false;
        }
        self.read_available()
    }

    fn read_available(&mut self) -> bool {
        let (got, err) = port::read_available(self.fd(), |chunk| {
            for b in self.codec.feed(chunk) {
                if b.payload.is_empty() {
                    self.acks.push(b.seq);
                    continue;
                }
                match self.codec.decode(&b.payload) {
                    Ok(ms) => self.msgs.extend(ms),
                    Err(_) => self.undecoded.push(b.payload),
                }
            }
        });
        if err.and_then(|e| e.raw_os_error()) == Some(libc::EIO) {
            self.hung_up = true;
        }
        got
    }

    /// Pump until `cond` holds; panics after [`TIMEOUT`] naming `what`.
    pub fn wait_until(&mut self, what: &str, mut cond: impl FnMut(&Mcu) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !cond(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.fail(&format!("timed out waiting for {what}"));
            }
            self.pump(left.min(Duration::from_millis(100)));
        }
    }

    /// Panic with the state of the session and the MCU's stderr.
    pub fn fail(&mut self, why: &str) -> ! {
        let status = self.child.try_wait().ok().flatten();
        panic!(
            "{why}\n  messages: {:?}\n  acks: {:02x?}\n  undecoded: {:02x?}\n  \
             process: {}\n  stderr:\n{}",
            self.msgs,
            self.acks,
            self.undecoded,
            status.map_or("running".to_string(), |s| s.to_string()),
            self.stderr()
        );
    }

    /// Take the first message named `name` (waiting for it).
    pub fn wait_msg(&mut self, name: &str) -> Response {
        self.wait_msg_where(name, |_| true)
    }

    /// Take the first message named `name` for which `pred` holds.
    pub fn wait_msg_where(&mut self, name: &str, pred: impl Fn(&Response) -> bool) -> Response {
        let find = |m: &Mcu| m.msgs.iter().position(|r| r.name == name && pred(r));
        self.wait_until(&format!("a `{name}` message"), |m| find(m).is_some());
        let i = find(self).expect("found");
        self.msgs.remove(i)
    }

    /// Send `cmd` and take the first `resp` message that follows.
    pub fn request(&mut self, cmd: &str, resp: &str) -> Response {
        self.send(cmd);
        self.wait_msg(resp)
    }

    /// Wait until at least `n` acks/naks are in, and take them all.
    pub fn wait_acks(&mut self, n: usize) -> Vec<u8> {
        self.wait_until(&format!("{n} acks"), |m| m.acks.len() >= n);
        std::mem::take(&mut self.acks)
    }

    /// Read for `d` (to check that nothing more arrives).
    pub fn settle(&mut self, d: Duration) {
        port::for_a_while(d, Duration::MAX, |left| {
            self.pump(left);
        });
    }

    pub fn has_msg(&self, name: &str) -> bool {
        self.msgs.iter().any(|r| r.name == name)
    }

    /// The text of a `static_string_id`, through the dictionary's
    /// `static_string_id` enumeration.
    pub fn static_string(&self, id: i64) -> String {
        port::static_string(self.dict(), id)
            .unwrap_or_else(|| panic!("static_string_id {id} is not in the dictionary"))
    }

    /// Wait for a `shutdown` message and return its reason's text.
    pub fn wait_shutdown(&mut self) -> String {
        let r = self.wait_msg("shutdown");
        self.static_string(r.int("static_string_id"))
    }

    /// The MCU shuts down for `reason`, and says so in `get_config`.
    pub fn assert_shut_down(&mut self, reason: &str) {
        assert_eq!(self.wait_shutdown(), reason);
        assert_eq!(self.config().int("is_shutdown"), 1);
    }

    /// `get_config`, as a response.
    pub fn config(&mut self) -> Response {
        self.request("get_config", "config")
    }

    /// Check the MCU still answers: `get_clock` gets a `clock`, and its
    /// block is acked. Returns the clock.
    pub fn assert_alive(&mut self) -> u32 {
        let seq = self.codec.seq();
        self.send("get_clock");
        let r = self.wait_msg("clock");
        let want = 0x10 | ((seq + 1) & 0x0f);
        self.wait_until("the ack of get_clock", |m| m.acks.contains(&want));
        r.int("clock") as u32
    }

    /// [`Mcu::assert_alive`], and no `shutdown` came.
    pub fn assert_healthy(&mut self) {
        self.assert_alive();
        assert!(!self.has_msg("shutdown"), "{:?}", self.msgs);
    }

    /// Wait for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        port::wait_exit(&mut self.child, timeout)
    }

    /// Send a signal to the process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig)
            .expect("signal the MCU");
    }
}

impl Drop for Mcu {
    fn drop(&mut self) {
        self.port = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The host's side of the MCU's pseudo-terminal, shared by `simboard`,
//! `common` and the kernel tests' VM driver (`tests/vm/driver`, which
//! builds it through `#[path]`): scratch directories, waiting for the `-I`
//! link, opening it as klippy does, writing and reading without blocking,
//! fetching the data dictionary, waiting for the process to exit.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use klipper_protocol::dictionary::{Dictionary, Json};
use klipper_protocol::host::{HostCodec, Response};

/// A scratch directory, removed (whatever its files' modes) on drop.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "klipper-mcu-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create a scratch directory");
        Scratch { path }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // A chmod-000 file inside must not stop the cleanup.
        if let Ok(rd) = std::fs::read_dir(&self.path) {
            for e in rd.flatten() {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o700));
            }
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Wait until `link` exists, points at an existing terminal, and (if `old`
/// is given) no longer points at `old`. Returns its target; an error if
/// `child` (when given) exits first or after `timeout`.
pub fn wait_link(
    link: &Path,
    old: Option<&Path>,
    mut child: Option<&mut Child>,
    timeout: Duration,
) -> Result<PathBuf, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(target) = std::fs::read_link(link) {
            if Some(target.as_path()) != old && target.exists() {
                return Ok(target);
            }
        }
        if let Some(Ok(Some(st))) = child.as_mut().map(|c| c.try_wait()) {
            return Err(format!(
                "klipper_mcu exited ({st}) before linking {}",
                link.display()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("no link at {} after {timeout:?}", link.display()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Open the link as klippy does: read-write, no controlling terminal,
/// non-blocking, raw mode (set at once: what the MCU already wrote, its
/// `starting`, stays).
pub fn open_raw(link: &Path) -> File {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(link)
        .unwrap_or_else(|e| panic!("open {}: {e}", link.display()));
    let mut t = nix::sys::termios::tcgetattr(&f).expect("tcgetattr");
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(&f, nix::sys::termios::SetArg::TCSANOW, &t).expect("tcsetattr");
    f
}

/// Write all of `data` to the non-blocking `fd`, calling `wait` (which
/// should read what the MCU sends meanwhile) whenever the terminal is
/// full. Panics on a write error or when nothing goes out for `timeout`.
pub fn write_all(fd: i32, mut data: &[u8], timeout: Duration, mut wait: impl FnMut()) {
    let deadline = Instant::now() + timeout;
    while !data.is_empty() {
        // SAFETY: `data` is valid for `data.len()` bytes.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n > 0 {
            data = &data[n as usize..];
            continue;
        }
        let e = std::io::Error::last_os_error();
        if n < 0 && e.kind() != ErrorKind::WouldBlock && e.kind() != ErrorKind::Interrupted {
            panic!("write to the MCU's terminal: {e}");
        }
        assert!(
            Instant::now() < deadline,
            "the MCU stopped reading (write blocked for {timeout:?})"
        );
        wait();
    }
}

/// Poll `fd` for `events` up to `timeout`; the events that came (none on
/// a timeout or an error).
pub fn poll(fd: i32, events: i16, timeout: Duration) -> i16 {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
        return 0;
    }
    pfd.revents
}

/// Read what the non-blocking `fd` has, handing each chunk to `feed`.
/// Returns whether anything was read and the error that ended the read,
/// if any (EIO: the MCU's side is gone).
pub fn read_available(fd: i32, mut feed: impl FnMut(&[u8])) -> (bool, Option<std::io::Error>) {
    let mut got = false;
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return (got, (n < 0).then(std::io::Error::last_os_error));
        }
        got = true;
        feed(&buf[..n as usize]);
    }
}

/// Fetch the data dictionary: `identify` in 40-byte chunks, each asked
/// for by `chunk_at(offset)`, until an empty one.
pub fn fetch_dictionary(mut chunk_at: impl FnMut(usize) -> Vec<u8>) -> Dictionary {
    let mut data = Vec::new();
    loop {
        let chunk = chunk_at(data.len());
        if chunk.is_empty() {
            break;
        }
        data.extend_from_slice(&chunk);
        assert!(data.len() < 1 << 20, "dictionary too large");
    }
    Dictionary::from_compressed(&data)
        .unwrap_or_else(|e| panic!("dictionary does not decompress/parse: {e}"))
}

/// The text of a `static_string_id`, through the dictionary's
/// `static_string_id` enumeration (which it must have); None for an id
/// not in it.
pub fn static_string(dict: &Dictionary, id: i64) -> Option<String> {
    let e = dict
        .enumerations
        .get("static_string_id")
        .and_then(Json::as_object)
        .expect("a static_string_id enumeration");
    e.iter()
        .find(|(_, v)| v.as_i64() == Some(id))
        .map(|(k, _)| k.clone())
}

/// Call `pump` for `d`, with what is left of it (at most `step`).
pub fn for_a_while(d: Duration, step: Duration, mut pump: impl FnMut(Duration)) {
    let end = Instant::now() + d;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        pump(left.min(step));
    }
}

/// The host's side of a session on the MCU's terminal: the port once
/// open, the codec (with the MCU's dictionary once fetched), the messages
/// decoded and not yet taken, oldest first.
#[derive(Default)]
pub struct Session {
    pub port: Option<File>,
    pub codec: HostCodec,
    pub msgs: Vec<Response>,
}

impl Session {
    /// `link` opened as klippy opens it, with a fresh codec and no
    /// message.
    pub fn open(link: &Path) -> Session {
        Session {
            port: Some(open_raw(link)),
            ..Session::default()
        }
    }

    pub fn fd(&self) -> i32 {
        self.port.as_ref().expect("port open").as_raw_fd()
    }

    /// Decode the blocks `chunk` completes into messages (acks and naks
    /// carry none; what the dictionary cannot decode yet is dropped).
    pub fn feed(&mut self, chunk: &[u8]) {
        for b in self.codec.feed(chunk) {
            if b.payload.is_empty() {
                continue;
            }
            if let Ok(ms) = self.codec.decode(&b.payload) {
                self.msgs.extend(ms);
            }
        }
    }
}

/// `text` (a command, see `HostCodec::encode_text`) encoded with `codec`'s
/// dictionary; a command it cannot encode is a bug in the test.
pub fn encode(codec: &HostCodec, text: &str) -> Vec<u8> {
    codec
        .encode_text(text)
        .unwrap_or_else(|e| panic!("cannot encode {text:?}: {e:?}"))
}

/// [`encode`] `text` and frame it as `codec`'s next block.
pub fn block(codec: &mut HostCodec, text: &str) -> Vec<u8> {
    let payload = encode(codec, text);
    codec.frame(&payload)
}

/// `cmd` (klipper_mcu) with `-I <link> <args>`, its stdin and stdout on
/// /dev/null and its stderr to `stderr`: how every harness starts the MCU.
pub fn mcu_on_link(mut cmd: Command, link: &Path, args: &[&str], stderr: Stdio) -> Command {
    cmd.arg("-I")
        .arg(link)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    cmd
}

/// Wait for `child` to exit, up to `timeout`; None if it did not.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

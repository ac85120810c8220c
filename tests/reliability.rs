//! What a person starting the MCU by hand, or a host gone wrong, can do to
//! the process: its output streams closed, a path that is not UTF-8, a
//! second instance on the same link; and what it says when it starts.

mod common;

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Mcu, TempDir, TIMEOUT};

/// The write end of a pipe whose read end is already closed: writing to
/// it fails with EPIPE (the MCU ignores SIGPIPE).
fn closed_pipe() -> Stdio {
    let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
    drop(r);
    Stdio::from(w)
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return st;
        }
        if t0.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `klipper_mcu --help | true` aborted ("failed printing to stdout").
#[test]
fn help_into_a_closed_pipe_exits_normally() {
    for arg in ["--help", "--version"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_klipper_mcu"))
            .arg(arg)
            .stdin(Stdio::null())
            .stdout(closed_pipe())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let st = wait_exit(&mut child);
        assert_eq!(st.code(), Some(0), "{arg}: {st}");
    }
}

/// With stderr on a pipe nobody reads, the start-up line and the first
/// shutdown's message aborted the process and left a stale link.
#[test]
fn stderr_into_a_closed_pipe_keeps_the_mcu_alive() {
    let dir = TempDir::new("rel-stderr");
    let link = dir.path.join("tty");
    let mut m = Mcu::spawn_at(dir, link.clone(), &[], Some(closed_pipe()));
    m.wait_link(None, TIMEOUT).expect("the MCU came up");
    m.open();
    m.identify();
    m.send("emergency_stop");
    m.wait_shutdown();
    m.assert_alive();
    m.request("get_clock", "clock");
    assert!(std::fs::read_link(&link).is_ok(), "the link is gone");
}

/// A non-UTF-8 `-I` path panicked in `std::env::args`.
#[test]
fn a_link_path_that_is_not_utf8_works() {
    let dir = TempDir::new("rel-bytes");
    let link = dir.path.join(OsStr::from_bytes(b"tty-\xff\xfe"));
    let mut m = Mcu::spawn_at(dir, link.clone(), &[], None);
    m.wait_link(None, TIMEOUT).expect("the MCU came up");
    m.open();
    m.identify();
    m.request("get_clock", "clock");
    assert!(std::fs::read_link(&link).is_ok());
}

/// Started twice on one path, the second replaced the first's live link.
/// Now it refuses, naming the pid that holds the link.
#[test]
fn a_second_instance_on_a_live_link_is_refused() {
    let mut first = Mcu::start();
    let tty = std::fs::read_link(&first.link).unwrap();
    let log = first.dir.path.join("second.log");
    let mut second = Command::new(env!("CARGO_BIN_EXE_klipper_mcu"))
        .arg("-I")
        .arg(&first.link)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn");
    // Bounded: a second instance that took the link would run on.
    let st = wait_exit(&mut second);
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!st.success(), "the second instance started: {err}");
    assert!(
        err.contains(&format!("pid {}", first.pid())),
        "does not name the holder: {err}"
    );
    // The first keeps its link and its host.
    assert_eq!(std::fs::read_link(&first.link).unwrap(), tty);
    first.request("get_clock", "clock");
}

/// A link left behind by a dead MCU (or pointing nowhere) is replaced.
#[test]
fn a_stale_link_is_replaced() {
    let dir = TempDir::new("rel-stale");
    let link = dir.path.join("tty");
    std::os::unix::fs::symlink("/dev/pts/no-such-terminal", &link).unwrap();
    let mut m = Mcu::spawn_at(dir, link.clone(), &[], None);
    m.wait_link(None, TIMEOUT).expect("the MCU came up");
    m.open();
    m.identify();
    m.request("get_clock", "clock");
}

/// One line on stderr says the MCU is up, where, and how.
#[test]
fn start_up_line_names_version_link_dialect_and_realtime() {
    let m = Mcu::start();
    let err = m.stderr();
    let line = err
        .lines()
        .find(|l| l.starts_with("klipper_mcu "))
        .unwrap_or_else(|| panic!("no start-up line: {err}"));
    for want in [
        env!("CARGO_PKG_VERSION").to_string(),
        format!("link {}", m.link.display()),
        "dialect ".to_string(),
        "realtime off".to_string(),
    ] {
        assert!(line.contains(&want), "{want:?} not in {line:?}");
    }
}

//! What the tests that prepare their own environment (`tests/arch.rs`:
//! cross compilers and qemu-user, `tests/kernel.rs`: a VM,
//! `tests/container.rs` and `tests/image/`: podman) share: this checkout,
//! whether a program is installed, running an installer, and their
//! progress lines.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

/// The root of this checkout.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `program` is on the PATH (`command -v`).
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Run `cmd` to completion, stdin on /dev/null, its output collected; an
/// error naming `what` if it cannot be started.
pub fn output_of(cmd: &mut Command, what: &str) -> Result<Output, String> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))
}

/// A progress line on stderr, `[tag SECONDS] what`, timed from `t0`.
pub fn log(tag: &str, t0: Instant, what: &str) {
    eprintln!("[{tag} {:6.1}s] {what}", t0.elapsed().as_secs_f64());
}

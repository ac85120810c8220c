//! The Raspberry Pi's architectures: the MCU cross-built for armv7
//! (32-bit Raspberry Pi OS) and aarch64 (64-bit), statically, and the
//! pty integration tests, the simulated-board tests, the process tests and
//! the Kalico conformance test run against each under qemu-user. A 32-bit
//! target is where struct layouts, `usize` and time arithmetic differ.
//!
//! The test binaries are this package's own (`tests/pty.rs`,
//! `tests/gpio_sim.rs`, `tests/reliability.rs`, and the Kalico
//! conformance of `tests/kalico_gpio.rs` and `tests/kalico_thermo.rs`), as
//! `cargo test` built them, run again with `KLIPPER_MCU_BIN` (the ARM
//! build) and `KLIPPER_MCU_RUNNER` (`qemu-arm` or `qemu-aarch64`), which
//! every spawn path of the tests honours (`tests/simboard/exe.rs`).
//!
//! On first use, as root, it installs what is missing: Debian's
//! `qemu-user` and the two cross compilers (`gcc-arm-linux-gnueabihf`,
//! `gcc-aarch64-linux-gnu`, for linking), and the two Rust standard
//! libraries (`rustup target add`). Not root and something missing: the
//! trials are reported ignored, with the reason.
//! `KLIPPER_MCU_ARCH_TEST=skip` skips them.
//!
//! Two tests are left out under emulation, with the reason: re-execution
//! through `config_reset` (the emulated process execs an ARM binary, which
//! the kernel cannot run without binfmt_misc; on a Pi it runs natively;
//! for the same reason `tests/kalico.rs`, whose every trial goes through
//! `FIRMWARE_RESTART`, is not among the suites)
//! and the refusal of a second instance (it recognises a live MCU by its
//! process, which under emulation is qemu's).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};

struct Arch {
    name: &'static str,
    triple: &'static str,
    runner: &'static str,
    linker: &'static str,
    /// ELF class (1: 32-bit, 2: 64-bit) and machine.
    class: u8,
    machine: u16,
}

const ARCHES: &[Arch] = &[
    Arch {
        name: "armv7",
        triple: "armv7-unknown-linux-gnueabihf",
        runner: "qemu-arm",
        linker: "arm-linux-gnueabihf-gcc",
        class: 1,
        machine: 40,
    },
    Arch {
        name: "aarch64",
        triple: "aarch64-unknown-linux-gnu",
        runner: "qemu-aarch64",
        linker: "aarch64-linux-gnu-gcc",
        class: 2,
        machine: 183,
    },
];

/// Test binaries run against each build, and the tests left out there.
const SUITES: &[(&str, &[(&str, &str)])] = &[
    (
        "pty",
        &[(
            "config_reset_reexecutes",
            "re-execution of an ARM binary needs binfmt_misc under qemu-user",
        )],
    ),
    (
        "gpio_sim",
        &[(
            "buttons_retransmit_until_acked",
            "checks the retransmit period (about 22 ms) from edge times, which an \
             emulated MCU without -r on busy cores misses by 100 ms and more",
        )],
    ),
    (
        "reliability",
        &[(
            "a_second_instance_on_a_live_link_is_refused",
            "a live MCU is recognised by its process, which is qemu's here",
        )],
    ),
    ("kalico_gpio", &[]),
    ("kalico_thermo", &[]),
];

/// Longest one suite may run under emulation.
const SUITE_TIMEOUT: Duration = Duration::from_secs(900);

fn log(t0: Instant, what: &str) {
    eprintln!("[arch {:6.1}s] {what}", t0.elapsed().as_secs_f64());
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{cmd:?} failed ({}):\n{text}", out.status))
    }
}

fn tools_present() -> bool {
    ARCHES.iter().all(|a| have(a.runner) && have(a.linker))
}

/// Why the trials cannot run here, if they cannot; installs what is
/// missing when root.
fn why_not(t0: Instant) -> Option<String> {
    if std::env::var("KLIPPER_MCU_ARCH_TEST").as_deref() == Ok("skip") {
        return Some("KLIPPER_MCU_ARCH_TEST=skip".into());
    }
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return Some("the cross builds are set up for an x86_64 Linux host".into());
    }
    if !tools_present() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some(
                "needs qemu-user, gcc-arm-linux-gnueabihf and gcc-aarch64-linux-gnu \
                 (installed with apt-get only as root)"
                    .into(),
            );
        }
        log(
            t0,
            "installing qemu-user and the cross compilers with apt-get",
        );
        let apt = |args: &[&str]| {
            run(Command::new("apt-get")
                .args(["-q", "-y", "-o", "DPkg::Lock::Timeout=300"])
                .args(["--no-install-recommends"])
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"))
        };
        let installed = apt(&["update"]).and_then(|_| {
            apt(&[
                "install",
                "qemu-user",
                "gcc-arm-linux-gnueabihf",
                "gcc-aarch64-linux-gnu",
                "libc6-dev-armhf-cross",
                "libc6-dev-arm64-cross",
            ])
        });
        if let Err(e) = installed {
            return Some(format!("apt-get install failed: {e}"));
        }
        if !tools_present() {
            return Some("qemu-user or a cross compiler still missing after apt-get".into());
        }
    }
    let triples: Vec<&str> = ARCHES.iter().map(|a| a.triple).collect();
    let have_std = run(Command::new("rustup").args(["target", "list", "--installed"]))
        .map(|l| triples.iter().all(|t| l.lines().any(|x| x.trim() == *t)));
    match have_std {
        Ok(true) => None,
        _ => {
            log(t0, "adding the ARM standard libraries with rustup");
            run(Command::new("rustup")
                .arg("target")
                .arg("add")
                .args(&triples))
            .err()
            .map(|e| format!("rustup target add failed: {e}"))
        }
    }
}

/// Cross-build the MCU (with the simulated board, which the suites use)
/// for every architecture, statically, once.
fn build(t0: Instant) -> Result<PathBuf, String> {
    let target = repo().join("target/arch");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(repo())
        .args(["build", "--bin", "klipper_mcu", "--features", "sim"])
        .env("CARGO_TARGET_DIR", &target)
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    for a in ARCHES {
        cmd.args(["--target", a.triple]);
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            a.triple.to_uppercase().replace('-', "_")
        );
        cmd.env(var, a.linker);
    }
    log(t0, "cross-building klipper_mcu for armv7 and aarch64");
    run(&mut cmd)?;
    log(t0, "cross builds done");
    Ok(target)
}

fn binary(target: &Path, a: &Arch) -> PathBuf {
    target.join(a.triple).join("debug/klipper_mcu")
}

/// The build is what it says: the ELF header's class and machine.
fn check_elf(path: &Path, a: &Arch) -> Result<(), Failed> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return Err(format!("{} is not an ELF file", path.display()).into());
    }
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    if (bytes[4], machine) != (a.class, a.machine) {
        return Err(format!(
            "{}: ELF class {} machine {machine}, want class {} machine {}",
            path.display(),
            bytes[4],
            a.class,
            a.machine
        )
        .into());
    }
    Ok(())
}

/// The newest build of test binary `name` beside this one.
fn test_exe(name: &str) -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = me.parent().ok_or("no folder")?;
    let prefix = format!("{name}-");
    std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&prefix)
                && !n.contains('.')
                && n[prefix.len()..].chars().all(|c| c.is_ascii_hexdigit())
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
        .ok_or(format!(
            "no test binary {name} in {}: build the tests (cargo test --workspace)",
            dir.display()
        ))
}

fn run_suite(
    t0: Instant,
    mcu: &Path,
    a: &Arch,
    suite: &str,
    skip: &[(&str, &str)],
) -> Result<(), Failed> {
    let exe = test_exe(suite)?;
    let mut cmd = Command::new(&exe);
    for (name, why) in skip {
        log(t0, &format!("{}::{suite}: {name} left out: {why}", a.name));
        cmd.args(["--skip", name]);
    }
    let out_path = repo()
        .join("target/arch")
        .join(format!("{}-{suite}.log", a.name));
    let out = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let mut child = cmd
        .env("KLIPPER_MCU_BIN", mcu)
        .env("KLIPPER_MCU_RUNNER", a.runner)
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out)
        .spawn()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if start.elapsed() > SUITE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{suite} on {}: still running after {SUITE_TIMEOUT:?}",
                a.name
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("test result") || l.contains("FAILED"))
        .collect();
    log(
        t0,
        &format!(
            "{}::{suite}: {} ({:.0} s)",
            a.name,
            summary.join("; "),
            start.elapsed().as_secs_f64()
        ),
    );
    if status.success() {
        Ok(())
    } else {
        let tail: Vec<&str> = text.lines().rev().take(80).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!(
            "{suite} against the {} build failed ({status}); full output in {}:\n{}",
            a.name,
            out_path.display(),
            tail.join("\n")
        )
        .into())
    }
}

fn main() {
    let mut args = Arguments::from_args();
    // One suite at a time: each runs its own tests in parallel, and the
    // emulated MCUs need the cores.
    args.test_threads.get_or_insert(1);
    let t0 = Instant::now();
    let skip = if args.list { None } else { why_not(t0) };
    if let Some(why) = &skip {
        eprintln!("arch tests ignored: {why}");
    }
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let mut trials = Vec::new();
    for a in ARCHES {
        trials.push(
            Trial::test(format!("arch::{}::static_build", a.name), move || {
                let target = BUILT.get_or_init(|| build(t0)).clone()?;
                check_elf(&binary(&target, a), a)
            })
            .with_ignored_flag(skip.is_some()),
        );
        for &(suite, left_out) in SUITES {
            trials.push(
                Trial::test(format!("arch::{}::{suite}", a.name), move || {
                    let target = BUILT.get_or_init(|| build(t0)).clone()?;
                    run_suite(t0, &binary(&target, a), a, suite, left_out)
                })
                .with_ignored_flag(skip.is_some()),
            );
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

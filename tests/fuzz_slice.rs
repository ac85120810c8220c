//! A slice of the coverage-guided fuzzing (fuzz/, see README
//! "Reliability") on every CI run: builds the libFuzzer targets with the
//! flags cargo-fuzz uses (`fuzz/build.sh`: sanitizer coverage and
//! AddressSanitizer, nightly or stable with RUSTC_BOOTSTRAP=1) in their
//! own target directory (`target/fuzz`, so it never waits on the lock of
//! the outer `cargo test`), then runs each target for a bounded time from
//! the corpus kept in `fuzz/corpus/<target>` (new inputs go to a scratch
//! folder, the tree is not changed). Any crash, leak, out-of-memory
//! (`-rss_limit_mb`) or hang (`-timeout`) fails the test, with the
//! reproducer's path.
//!
//! `KLIPPER_MCU_FUZZ_SECS=N` runs each target N seconds instead of the CI
//! default (a soak). Reported ignored, with the reason, when no toolchain
//! here can build with `-Zsanitizer=address` or no C++ compiler can be had
//! for libFuzzer.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use libtest_mimic::{Arguments, Failed, Trial};

/// Seconds per target on CI (2 shared cores): about two minutes in all.
const TARGETS: &[(&str, u64)] = &[("block_receiver", 25), ("parse_args", 25), ("dispatch", 70)];
const RUST_TARGET: &str = "x86_64-unknown-linux-gnu";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    repo().join("target").join("fuzz")
}

fn has(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why the targets cannot be built here, if they cannot.
fn unavailable() -> Option<String> {
    // libfuzzer-sys compiles libFuzzer (C++).
    if !has("c++", "--version") {
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            let _ = Command::new("apt-get").arg("update").status();
            let _ = Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "g++"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .status();
        }
        if !has("c++", "--version") {
            return Some(format!(
                "no C++ compiler for libFuzzer (c++ missing{})",
                if root {
                    ", apt-get install g++ failed"
                } else {
                    ", not root to install g++"
                }
            ));
        }
    }
    // The sanitizer needs nightly, or stable told it may use unstable flags.
    let dir = target_dir().join("probe");
    let _ = std::fs::create_dir_all(&dir);
    let src = dir.join("probe.rs");
    let _ = std::fs::write(&src, "fn main() {}\n");
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut c = if nightly {
        let mut c = Command::new("rustup");
        c.args(["run", "nightly", "rustc"]);
        c
    } else {
        let mut c = Command::new("rustc");
        c.env("RUSTC_BOOTSTRAP", "1");
        c
    };
    let out = c
        .args([
            "-Zsanitizer=address",
            "-Cpasses=sancov-module",
            "--target",
            RUST_TARGET,
        ])
        .arg("-o")
        .arg(dir.join("probe"))
        .arg(&src)
        .output();
    match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "neither nightly nor stable with RUSTC_BOOTSTRAP=1 builds with \
             -Zsanitizer=address here: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run rustc: {e}")),
    }
}

fn build() -> Result<(), String> {
    let t0 = Instant::now();
    let out = Command::new("sh")
        .arg(repo().join("fuzz").join("build.sh"))
        .arg(target_dir())
        // The outer cargo's settings are for the test build, not this one.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run fuzz/build.sh: {e}"))?;
    eprintln!(
        "[fuzz_slice] fuzz targets built in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    if !out.status.success() {
        return Err(format!(
            "fuzz/build.sh failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn run(name: &str, secs: u64) -> Result<(), Failed> {
    let bin = target_dir().join(RUST_TARGET).join("release").join(name);
    let scratch = target_dir().join("slice").join(name);
    let _ = std::fs::remove_dir_all(&scratch);
    let corpus_new = scratch.join("corpus");
    let artifacts = scratch.join("artifacts");
    std::fs::create_dir_all(&corpus_new).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&artifacts).map_err(|e| e.to_string())?;
    let kept = repo().join("fuzz").join("corpus").join(name);
    let kept_count = std::fs::read_dir(&kept).map_or(0, |d| d.count());
    if kept_count == 0 {
        return Err(format!("no kept corpus in {}", kept.display()).into());
    }
    let log = scratch.join("log");
    let status = Command::new(&bin)
        .arg(format!("-max_total_time={secs}"))
        // A single input taking this long is a hang.
        .arg("-timeout=20")
        .arg("-rss_limit_mb=2048")
        .arg("-malloc_limit_mb=512")
        .arg("-len_control=0")
        .arg("-print_final_stats=1")
        // The MCU's own stderr lines (shutdown reasons) are noise here.
        .arg("-close_fd_mask=2")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(&corpus_new)
        .arg(&kept)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).map_err(|e| e.to_string())?)
        .stderr(std::fs::File::create(scratch.join("stderr")).map_err(|e| e.to_string())?)
        .status()
        .map_err(|e| format!("run {}: {e}", bin.display()))?;
    let text = std::fs::read_to_string(scratch.join("stderr")).unwrap_or_default()
        + &std::fs::read_to_string(&log).unwrap_or_default();
    let execs = text
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units: "))
        .map_or("?", str::trim);
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("stat::average_exec_per_sec: "))
        .map_or("?", str::trim);
    eprintln!("[fuzz_slice] {name}: {execs} inputs in {secs}s ({rate}/s) from {kept_count} kept");
    if !status.success() {
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "{name} failed ({status}); reproducer in {}:\n{}",
            artifacts.display(),
            tail.join("\n")
        )
        .into());
    }
    if !text.contains("INITED") || execs == "?" {
        return Err(format!("{name} did not run its corpus:\n{text}").into());
    }
    Ok(())
}

fn main() {
    let mut args = Arguments::from_args();
    // One target at a time: CI's two cores are shared with the suite.
    args.test_threads = Some(1);
    let secs: Option<u64> = std::env::var("KLIPPER_MCU_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok());
    let why = unavailable();
    if let Some(w) = &why {
        eprintln!("fuzz_slice: ignored: {w}");
    }
    let built = if why.is_none() {
        Some(std::sync::Arc::new(std::sync::OnceLock::new()))
    } else {
        None
    };
    let trials = TARGETS
        .iter()
        .map(|&(name, default)| {
            let built = built.clone();
            let t = Trial::test(format!("fuzz_slice::{name}"), move || {
                let built = built.expect("not ignored");
                built.get_or_init(build).clone()?;
                run(name, secs.unwrap_or(default))
            });
            t.with_ignored_flag(why.is_some())
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

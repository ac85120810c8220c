//! The `hostmcu` container image, end to end, with podman (no Docker engine
//! needed):
//!
//! 1. installs podman and runc from Debian's packages when missing;
//! 2. builds a static klipper_mcu on the host
//!    (`RUSTFLAGS='-C target-feature=+crt-static' cargo build --release
//!    --target x86_64-unknown-linux-gnu`, in its own target directory under
//!    `target/tmp/`, so it never waits on the lock the outer `cargo test`
//!    holds on its own target directory);
//! 3. assembles the runtime image from it with
//!    `podman build --format docker --build-context build=DIR --target hostmcu .`
//!    (the binary at `DIR/out/klipper_mcu`) and checks it is under 5 MB;
//! 4. runs it (no capabilities, read-only root) with a host folder
//!    bind-mounted at /opt/printer_data/run and the host's /dev shared (so
//!    the host's /dev/ptmx and /dev/pts: a bind of /dev/pts alone leaves
//!    /dev/ptmx a link to the host's pts/ptmx, mode 000), and, from
//!    the host, through the link the MCU made in that folder: fetches the
//!    whole data dictionary with `identify` and gets an answer to
//!    `get_clock`;
//! 5. checks the MCU runs as uid/gid 1000 (podman inspect and the host's
//!    /proc), that the image's HEALTHCHECK (`klipper_mcu --check`) passes
//!    without disturbing the host's session, and fails for a wrong path;
//! 6. `podman stop` (SIGTERM): exit status 0 within a few seconds, link
//!    removed, and the host sees its terminal hang up.
//!
//! Podman is configured for this test alone (CONTAINERS_CONF,
//! CONTAINERS_STORAGE_CONF, all state under `target/tmp/container/` and a
//! run folder under the system's temporary folder): cgroupfs, runc, no
//! default ulimits, vfs storage, no network. The system's configuration and
//! storage are left alone.
//!
//! Needs root (rootful podman, apt-get). Not root, or podman missing and
//! apt-get unable to install it: the test is reported ignored, with the
//! reason. `KLIPPER_MCU_CONTAINER_TEST=skip` skips it too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

mod hosttools;
mod image;
use hosttools::repo;
use image::{run, Cleanup, Podman, Port, GID, UID};

const IMAGE: &str = "localhost/klipper-mcu-hostmcu:test";
const MAX_IMAGE_BYTES: u64 = 5_000_000;
const RUST_TARGET: &str = "x86_64-unknown-linux-gnu";

fn log(t0: Instant, what: &str) {
    hosttools::log("container", t0, what);
}

/// Whether an ELF64 little-endian executable has a PT_INTERP program
/// header (asks for a dynamic loader, which `FROM scratch` does not have).
fn has_interpreter(path: &Path) -> bool {
    let b = std::fs::read(path).unwrap();
    assert!(
        b.len() > 64 && &b[..4] == b"\x7fELF" && b[4] == 2 && b[5] == 1,
        "not ELF64 LE"
    );
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) == 3 // PT_INTERP
    })
}

/// `Uid:`/`Gid:` line of /proc/PID/status: real, effective, saved, fs.
fn proc_ids(pid: u32, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"));
    line[key.len()..]
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect()
}

/// Why the test cannot run here, if it cannot; installs podman and runc
/// when missing, as root.
fn skip_reason(t0: Instant) -> Option<String> {
    if std::env::var("KLIPPER_MCU_CONTAINER_TEST").as_deref() == Ok("skip") {
        return Some("KLIPPER_MCU_CONTAINER_TEST=skip".into());
    }
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return Some("the host build is for x86_64 Linux".into());
    }
    image::podman_unavailable(&|w| log(t0, w))
}

/// One trial, reported ignored with its reason where it cannot run.
fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let t0 = Instant::now();
    let name = "hostmcu_image_serves_klippy_from_a_container";
    let mut t = libtest_mimic::Trial::test(name, move || {
        hostmcu_image_serves_klippy_from_a_container(t0);
        Ok(())
    });
    if let Some(why) = if args.list { None } else { skip_reason(t0) } {
        eprintln!("{name}: ignored: {why}");
        t = t.with_ignored_flag(true);
    }
    libtest_mimic::run(&args, vec![t]).exit();
}

fn hostmcu_image_serves_klippy_from_a_container(t0: Instant) {
    log(t0, "podman and runc present");

    // Everything this test keeps lives under target/tmp/container/.
    let state = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("container");
    std::fs::create_dir_all(&state).unwrap();
    // A short, per-checkout name for the container.
    let tag = image::tag(&state);
    let podman = Podman::for_state(&state);

    // 2. The host static build, in its own target directory.
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let target_dir = state.join("target");
    run(Command::new(cargo)
        .current_dir(repo())
        .args([
            "build",
            "--release",
            "--bin",
            "klipper_mcu",
            "--target",
            RUST_TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_ENCODED_RUSTFLAGS"));
    let binary = target_dir
        .join(RUST_TARGET)
        .join("release")
        .join("klipper_mcu");
    assert!(
        !has_interpreter(&binary),
        "the host build {} asks for a dynamic loader: not static",
        binary.display()
    );
    let ctx = state.join("build-context");
    std::fs::create_dir_all(ctx.join("out")).unwrap();
    std::fs::copy(&binary, ctx.join("out").join("klipper_mcu")).unwrap();
    let bytes = std::fs::metadata(&binary).unwrap().len();
    log(
        t0,
        &format!("static build done: {bytes} bytes, no program interpreter"),
    );

    // 3. The runtime image, from that binary.
    let mut build = podman.cmd();
    build
        .current_dir(repo())
        .args([
            "build",
            "--format",
            "docker",
            "--pull=never",
            // Podman 4.3's layer cache ignores the platform: a cached
            // layer of an ARM build (tests/arch.rs) would lend this image
            // its variant.
            "--no-cache",
            "--target",
            "hostmcu",
        ])
        .arg("--build-context")
        .arg(format!("build={}", ctx.display()))
        .args(["--build-arg", "TARGETPLATFORM=linux/amd64"])
        .args(["--build-arg", "BUILDPLATFORM=linux/amd64"])
        .args(["-t", IMAGE, "."]);
    run(&mut build);
    let size: u64 = podman
        .run(&["image", "inspect", IMAGE, "--format", "{{.Size}}"])
        .trim()
        .parse()
        .unwrap();
    log(t0, &format!("image {IMAGE} built: {size} bytes"));
    assert!(
        size < MAX_IMAGE_BYTES,
        "image is {size} bytes, not under 5 MB"
    );
    let user = podman.run(&["image", "inspect", IMAGE, "--format", "{{.Config.User}}"]);
    assert_eq!(user.trim(), format!("{UID}:{GID}"), "image user");
    let health = podman.run(&[
        "image",
        "inspect",
        IMAGE,
        "--format",
        "{{json .Config.Healthcheck}}",
    ]);
    assert!(
        health.contains("--check"),
        "no --check HEALTHCHECK in the image: {health}"
    );

    // 4. Run it: the run folder bind-mounted, the host's /dev shared.
    let name = format!("klipper-mcu-ctest-{tag}");
    let run_dir = state.join(format!("run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).unwrap();
    std::os::unix::fs::chown(&run_dir, Some(UID), Some(GID)).unwrap();
    let _cleanup = Cleanup {
        podman: &podman,
        name: name.clone(),
        images: Vec::new(),
        run_dir: run_dir.clone(),
    };
    podman.run(&["rm", "-f", "-t", "2", "--ignore", &name]); // a previous, killed run
                                                             // As deploy/README.md recommends (no capabilities, read-only root, no
                                                             // privilege gain), with the host's /dev shared.
    run(podman
        .cmd()
        .args(image::run_args(&name, &run_dir))
        .arg(IMAGE));
    let link = run_dir.join("klipper_host_mcu.tty");
    let tty = podman.wait_link(&name, &link);
    log(
        t0,
        &format!("container up: {} -> {}", link.display(), tty.display()),
    );
    assert!(tty.starts_with("/dev/pts"), "link target {}", tty.display());

    let mut port = Port::open(&link);
    let dict_len = port.identify();
    let mcu = port.codec.dict.constant("MCU").cloned();
    assert_eq!(
        mcu.and_then(|v| v.as_str().map(str::to_string)).as_deref(),
        Some("linux")
    );
    log(
        t0,
        &format!("identify: {dict_len}-byte dictionary, MCU=linux"),
    );

    // 5. Non-root, in the image's configuration and in fact.
    assert_eq!(
        podman.inspect(&name, "{{.Config.User}}"),
        format!("{UID}:{GID}")
    );
    let pid: u32 = podman.inspect(&name, "{{.State.Pid}}").parse().unwrap();
    assert_eq!(
        proc_ids(pid, "Uid:"),
        vec![UID; 4],
        "uids of the MCU (host pid {pid})"
    );
    assert_eq!(
        proc_ids(pid, "Gid:"),
        vec![GID; 4],
        "gids of the MCU (host pid {pid})"
    );
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "klipper_mcu");
    let top = podman.run(&["top", &name, "user", "group", "comm"]);
    log(
        t0,
        &format!("runs as {UID}:{GID}; podman top:\n{}", top.trim_end()),
    );

    // The health check, as the image defines it; then a wrong path fails.
    let hc = podman.output(&["healthcheck", "run", &name]);
    assert!(
        hc.status.success(),
        "health check failed ({}): {}{}\nlogs:\n{}",
        hc.status,
        String::from_utf8_lossy(&hc.stdout),
        String::from_utf8_lossy(&hc.stderr),
        podman.logs(&name)
    );
    let bad = podman.output(&[
        "exec",
        &name,
        "/usr/local/bin/klipper_mcu",
        "--check",
        "/opt/printer_data/run/nothing",
    ]);
    assert!(!bad.status.success(), "--check passed for a missing link");
    log(t0, "health check passes (and fails for a wrong path)");

    // The health check did not touch the session: get_clock still answers.
    port.send("get_clock");
    let clock = port.wait_msg("clock", |_| true).int("clock");
    log(t0, &format!("get_clock: clock={clock}"));

    // 6. SIGTERM: podman stop, exit status 0, quickly; link removed.
    podman.stop_cleanly(&name, &mut port, &link, &|w| log(t0, w));
    log(t0, "container test passed");
}

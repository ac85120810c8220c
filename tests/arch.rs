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
//! And the `hostmcu` image for `linux/arm/v7` and `linux/arm64`
//! (`arch::NAME::hostmcu_image`): assembled with podman from the release
//! cross build (`--build-context build=DIR`, nothing pulled, nothing run
//! for the foreign platform), checked with `podman image inspect` (os,
//! architecture) and as a registry would receive it (`podman save`: the
//! config's os, architecture and variant), its binary taken out of the
//! layer and checked for its ELF class and machine, then run once with
//! `podman run` as deployed (read-only, no capabilities): there is no
//! binfmt_misc, so the host's qemu-user is bind-mounted in and put before
//! the image's entrypoint and health check. It must serve the data
//! dictionary and the clock through its pty, pass its health check and
//! exit 0 on SIGTERM. The broken case is a trial too: an arm/v7 image
//! holding the aarch64 binary must be refused. Needs root (rootful podman,
//! set up as in `tests/container.rs`, shared through `tests/image/`);
//! `KLIPPER_MCU_CONTAINER_TEST=skip` skips these three as well.
//!
//! Two tests are left out under emulation, with the reason: re-execution
//! through `config_reset` (the emulated process execs an ARM binary, which
//! the kernel cannot run without binfmt_misc; on a Pi it runs natively;
//! for the same reason `tests/kalico.rs`, whose every trial goes through
//! `FIRMWARE_RESTART`, is not among the suites) and the buttons'
//! retransmit period (timing). The refusal of a second instance, which
//! recognises a live MCU by its process name, runs: qemu is run through
//! a link named `klipper_mcu`, the name binfmt_misc would give.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};

mod hosttools;
mod image;
use hosttools::{have, repo};

struct Arch {
    name: &'static str,
    triple: &'static str,
    runner: &'static str,
    linker: &'static str,
    /// ELF class (1: 32-bit, 2: 64-bit) and machine.
    class: u8,
    machine: u16,
    /// The container platform, and what `podman image inspect` reports
    /// for it: architecture and variant.
    platform: &'static str,
    image_arch: &'static str,
    variant: &'static str,
}

const ARCHES: &[Arch] = &[
    Arch {
        name: "armv7",
        triple: "armv7-unknown-linux-gnueabihf",
        runner: "qemu-arm",
        linker: "arm-linux-gnueabihf-gcc",
        class: 1,
        machine: 40,
        platform: "linux/arm/v7",
        image_arch: "arm",
        variant: "v7",
    },
    Arch {
        name: "aarch64",
        triple: "aarch64-unknown-linux-gnu",
        runner: "qemu-aarch64",
        linker: "aarch64-linux-gnu-gcc",
        class: 2,
        machine: 183,
        platform: "linux/arm64",
        image_arch: "arm64",
        variant: "",
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
    ("reliability", &[]),
    ("kalico_gpio", &[]),
    ("kalico_thermo", &[]),
];

/// Longest one suite may run under emulation.
const SUITE_TIMEOUT: Duration = Duration::from_secs(900);

fn log(t0: Instant, what: &str) {
    hosttools::log("arch", t0, what);
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

/// Cross-build klipper_mcu for every architecture, statically, once per
/// kind: the debug build with the simulated board, which the suites use,
/// or the product (release profile, no simulated board, stripped), which
/// the images ship.
fn cross_build(t0: Instant, release: bool) -> Result<PathBuf, String> {
    let target = repo().join("target/arch");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(repo())
        .args(["build", "--bin", "klipper_mcu"])
        .args(if release {
            &["--release"][..]
        } else {
            &["--features", "sim"][..]
        })
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
    let kind = if release { "release" } else { "test" };
    log(
        t0,
        &format!("cross-building the {kind} klipper_mcu for armv7 and aarch64"),
    );
    run(&mut cmd)?;
    log(t0, "cross builds done");
    Ok(target)
}

/// Where the image tests keep podman's state: the same as
/// `tests/container.rs`, so that both share one image store.
fn podman_state() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("container")
}

/// The `hostmcu` image for `a`'s platform, assembled from the release
/// cross build with `--build-context build=DIR` (no registry image, no
/// emulated build step), checked for its platform, its binary taken back
/// out of it and checked for its architecture, then run once with
/// `podman run`, qemu-user as its entrypoint: it must serve the data
/// dictionary and the clock, pass its health check and stop cleanly.
fn hostmcu_image(t0: Instant, a: &Arch) -> Result<(), Failed> {
    let trial = ImageTrial::new(t0, a, a.name);
    let name = format!(
        "klipper-mcu-atest-{}-{}",
        a.name,
        image::tag(&podman_state())
    );
    let _cleanup = trial.cleanup(name.clone());
    trial.assemble(a)?;
    trial.serve_under_qemu(&name)
}

/// The broken case, to show the checks bite: an image for `linux/arm/v7`
/// holding the aarch64 binary must be refused.
fn hostmcu_image_wrong_binary(t0: Instant) -> Result<(), Failed> {
    let (a, from) = (&ARCHES[0], &ARCHES[1]);
    let trial = ImageTrial::new(t0, a, &format!("{}-with-{}", a.name, from.name));
    let tag = &trial.tag;
    let _cleanup = trial.cleanup(String::new());
    let want = format!(
        "ELF class {} machine {}, want class {} machine {}",
        from.class, from.machine, a.class, a.machine
    );
    match trial.assemble(from) {
        Ok(()) => Err(format!("{tag} (the {} binary) passed the checks", from.name).into()),
        Err(e) if e.message().is_some_and(|m| m.contains(&want)) => {
            log(t0, &format!("{tag} refused: {want}"));
            Ok(())
        }
        Err(e) => Err(format!("{tag} failed, but not for its binary: {e:?}").into()),
    }
}

/// One image trial's setting: the image `tag` for `a`'s platform, its
/// build context and run folder under `ctx`, in the tests' podman store.
struct ImageTrial<'a> {
    t0: Instant,
    podman: image::Podman,
    a: &'a Arch,
    tag: String,
    ctx: PathBuf,
}

impl<'a> ImageTrial<'a> {
    /// The trial `what` (the tag's and the build folder's name) for `a`.
    fn new(t0: Instant, a: &'a Arch, what: &str) -> ImageTrial<'a> {
        ImageTrial {
            t0,
            podman: image::Podman::for_state(&podman_state()),
            a,
            tag: format!("localhost/klipper-mcu-hostmcu:{what}-test"),
            ctx: repo().join(format!("target/arch/image-{what}")),
        }
    }

    /// Removes the container `name` (none if empty), the image and the
    /// run folder when dropped.
    fn cleanup(&self, name: String) -> image::Cleanup<'_> {
        image::Cleanup {
            podman: &self.podman,
            name,
            images: vec![self.tag.clone()],
            run_dir: self.ctx.join("run"),
        }
    }

    /// Build the image `tag` for `a`'s platform from `from`'s release
    /// cross build (build context in `ctx`) and check it: `podman image
    /// inspect` for os and architecture, the saved image's config (as a
    /// registry would receive it) for the variant too, and the binary in
    /// its layer for the ELF class and machine of `a`.
    fn assemble(&self, from: &Arch) -> Result<(), Failed> {
        let (t0, podman, a) = (self.t0, &self.podman, self.a);
        let (tag, ctx) = (self.tag.as_str(), self.ctx.as_path());
        let release = BUILT_RELEASE
            .get_or_init(|| cross_build(t0, true))
            .clone()?;
        let built = release.join(from.triple).join("release/klipper_mcu");
        std::fs::create_dir_all(ctx.join("out")).map_err(|e| e.to_string())?;
        std::fs::copy(&built, ctx.join("out/klipper_mcu")).map_err(|e| e.to_string())?;
        log(
            t0,
            &format!(
                "{tag}: podman build --platform {} from the {} build",
                a.platform, from.name
            ),
        );
        let mut build = podman.cmd();
        build
            .current_dir(repo())
            // --no-cache: podman 4.3 keys its layer cache without the
            // platform, and an arm64 image built after an arm/v7 one came out
            // labelled linux/arm64/v7 (this test caught it).
            .args(["build", "--format", "docker", "--pull=never", "--no-cache"])
            .args(["--platform", a.platform, "--target", "hostmcu"])
            // The unused build stage names it in its FROM line.
            .args(["--build-arg", "BUILDPLATFORM=linux/amd64"])
            .arg("--build-context")
            .arg(format!("build={}", ctx.display()))
            .args(["-t", tag, "."]);
        image::run(&mut build);
        // Podman 4.3's `image inspect` has no variant: that is checked in the
        // saved config below.
        let os_arch = podman.run(&[
            "image",
            "inspect",
            tag,
            "--format",
            "{{.Os}}/{{.Architecture}}",
        ]);
        let want = format!("linux/{}", a.image_arch);
        if os_arch.trim() != want {
            return Err(format!(
                "podman image inspect {tag}: {}, want {want}",
                os_arch.trim()
            )
            .into());
        }
        // The image as a registry would receive it (`podman save`): its
        // config names the platform, its layer holds the binary.
        let saved = ctx.join("saved");
        let _ = std::fs::remove_dir_all(&saved);
        std::fs::create_dir_all(&saved).map_err(|e| e.to_string())?;
        let archive = saved.join("image.tar");
        podman.run(&[
            "save",
            "--format",
            "docker-archive",
            "-o",
            &archive.to_string_lossy(),
            tag,
        ]);
        let untar = |tar: &Path, into: &Path| {
            run(Command::new("tar").arg("-xf").arg(tar).arg("-C").arg(into))
        };
        untar(&archive, &saved)?;
        let json = |name: &str| -> Result<serde_json::Value, String> {
            let text =
                std::fs::read_to_string(saved.join(name)).map_err(|e| format!("{name}: {e}"))?;
            serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))
        };
        let manifest = json("manifest.json")?;
        let entry = &manifest[0];
        let config = json(
            entry["Config"]
                .as_str()
                .ok_or("no Config in manifest.json")?,
        )?;
        let field = |k: &str| config[k].as_str().unwrap_or("").to_string();
        let platform = format!(
            "{}/{}/{}",
            field("os"),
            field("architecture"),
            field("variant")
        );
        let want = format!("linux/{}/{}", a.image_arch, a.variant);
        if platform != want {
            return Err(format!("image {tag} is for {platform}, want {want}").into());
        }
        let layers = entry["Layers"]
            .as_array()
            .ok_or("no Layers in manifest.json")?;
        let rootfs = saved.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(|e| e.to_string())?;
        for l in layers {
            untar(&saved.join(l.as_str().unwrap_or("")), &rootfs)?;
        }
        let inside = rootfs.join("usr/local/bin/klipper_mcu");
        check_elf(&inside, a)?;
        log(
            t0,
            &format!(
                "{tag}: {want}, {} bytes of ELF class {} machine {} at /usr/local/bin/klipper_mcu",
                std::fs::metadata(&inside).map(|m| m.len()).unwrap_or(0),
                a.class,
                a.machine,
            ),
        );
        Ok(())
    }

    /// Run image `tag` once as container `name`, as deployed, with the
    /// host's qemu-user prepended to its entrypoint and health check
    /// (there is no binfmt_misc to do it), and talk to it through the
    /// link in `ctx`'s run folder.
    fn serve_under_qemu(&self, name: &str) -> Result<(), Failed> {
        let (t0, podman, a) = (self.t0, &self.podman, self.a);
        let (tag, run_dir) = (self.tag.as_str(), &self.ctx.join("run"));
        let (qemu, mounts) = qemu_mounts(a.runner)?;
        let config = |f: &str| -> Result<serde_json::Value, String> {
            let text = podman.run(&["image", "inspect", tag, "--format", f]);
            serde_json::from_str(&text).map_err(|e| format!("{tag} {f}: {e}: {text}"))
        };
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        };
        let entrypoint = strings(&config("{{json .Config.Entrypoint}}")?);
        let cmd = strings(&config("{{json .Config.Cmd}}")?);
        let health = strings(&config("{{json .Config.Healthcheck}}")?["Test"]);
        if entrypoint.is_empty() || health.first().map(String::as_str) != Some("CMD") {
            return Err(
                format!("{tag}: entrypoint {entrypoint:?}, health check {health:?}").into(),
            );
        }
        let mut health_cmd = vec![qemu.clone()];
        health_cmd.extend_from_slice(&health[1..]);
        let health_cmd = serde_json::to_string(&health_cmd).map_err(|e| e.to_string())?;

        let _ = std::fs::remove_dir_all(run_dir);
        std::fs::create_dir_all(run_dir).map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(run_dir, Some(image::UID), Some(image::GID))
            .map_err(|e| e.to_string())?;
        podman.run(&["rm", "-f", "-t", "2", "--ignore", name]); // a previous, killed run
        let mut run_cmd = podman.cmd();
        run_cmd.args(image::run_args(name, run_dir));
        for m in &mounts {
            run_cmd.args(["-v", m]);
        }
        run_cmd
            .args(["--entrypoint", &qemu])
            .args(["--health-cmd", &health_cmd])
            .arg(tag)
            .args(&entrypoint)
            .args(&cmd);
        log(
            t0,
            &format!(
                "{}: podman run, {} as {qemu}, {}",
                a.name,
                a.runner,
                entrypoint
                    .iter()
                    .chain(&cmd)
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        );
        image::run(&mut run_cmd);
        let link = run_dir.join("klipper_host_mcu.tty");
        let tty = podman.wait_link(name, &link);
        let mut port = image::Port::open(&link);
        let dict = port.identify();
        let mcu = port.codec.dict.constant("MCU").cloned();
        if mcu.as_ref().and_then(|v| v.as_str()) != Some("linux") {
            return Err(format!("MCU constant {mcu:?}, want linux").into());
        }
        let hc = podman.output(&["healthcheck", "run", name]);
        if !hc.status.success() {
            return Err(format!(
                "health check failed ({}): {}{}\nlogs:\n{}",
                hc.status,
                String::from_utf8_lossy(&hc.stdout),
                String::from_utf8_lossy(&hc.stderr),
                podman.logs(name)
            )
            .into());
        }
        port.send("get_clock");
        let clock = port.wait_msg("clock", |_| true).int("clock");
        log(
            t0,
            &format!(
                "{}: container up ({} -> {}), dictionary {dict} bytes, MCU=linux, \
             health check passes, clock {clock}",
                a.name,
                link.display(),
                tty.display()
            ),
        );
        podman.stop_cleanly(name, &mut port, &link, &|w| {
            log(t0, &format!("{}: {w}", a.name))
        });
        Ok(())
    }
}

/// The host's qemu-user `runner` for a container: where it will be
/// inside and the bind mounts for it and, as Debian builds it dynamically
/// linked, for its loader and libraries at the paths it asks for (a
/// scratch image has none). Inside it is named `klipper_mcu`
/// (`/qemu/klipper_mcu`): the health check and the MCU's refusal of a
/// second instance recognise a running MCU by its process name, which
/// is the name of the file executed; with binfmt_misc that would be the
/// ARM binary's, and this gives the same.
fn qemu_mounts(runner: &str) -> Result<(String, Vec<String>), String> {
    let found = run(Command::new("sh").args(["-c", &format!("command -v {runner}")]))?;
    let host = std::fs::canonicalize(found.trim()).map_err(|e| format!("{runner}: {e}"))?;
    let inside = "/qemu/klipper_mcu".to_string();
    let mut mounts = vec![format!("{}:{inside}:ro", host.display())];
    let ldd = Command::new("ldd")
        .arg(&host)
        .output()
        .map_err(|e| format!("ldd: {e}"))?;
    let text = String::from_utf8_lossy(&ldd.stdout).into_owned();
    if !ldd.status.success() {
        // A static build (qemu-user-static) needs nothing more.
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&ldd.stderr).contains("not a dynamic executable")
        {
            return Ok((inside, mounts));
        }
        return Err(format!("ldd {}: {}", host.display(), ldd.status));
    }
    // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" and the
    // loader's "/lib64/ld-linux-x86-64.so.2 (0x...)".
    for path in text.split_whitespace().filter(|w| w.starts_with('/')) {
        let real = std::fs::canonicalize(path).map_err(|e| format!("{path}: {e}"))?;
        mounts.push(format!("{}:{path}:ro", real.display()));
    }
    Ok((inside, mounts))
}

static BUILT_RELEASE: OnceLock<Result<PathBuf, String>> = OnceLock::new();

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

/// `a`'s qemu-user under the name `klipper_mcu` (a link in
/// `target/arch/runner-NAME/`): a process's name is that of the file it
/// executed, and the MCU recognises a live MCU by it (the refusal of a
/// second instance, the health check). With binfmt_misc the name would be
/// the ARM binary's; this gives the same.
fn named_runner(a: &Arch) -> Result<PathBuf, String> {
    let found = run(Command::new("sh").args(["-c", &format!("command -v {}", a.runner)]))?;
    let qemu = std::fs::canonicalize(found.trim()).map_err(|e| format!("{}: {e}", a.runner))?;
    let dir = repo().join(format!("target/arch/runner-{}", a.name));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let link = dir.join("klipper_mcu");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&qemu, &link).map_err(|e| format!("{}: {e}", link.display()))?;
    Ok(link)
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
        .env("KLIPPER_MCU_RUNNER", named_runner(a)?)
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
    // The image trials need rootful podman too (installed when missing).
    let image_skip = skip.clone().or_else(|| {
        if args.list {
            None
        } else if std::env::var("KLIPPER_MCU_CONTAINER_TEST").as_deref() == Ok("skip") {
            Some("KLIPPER_MCU_CONTAINER_TEST=skip".to_string())
        } else {
            image::podman_unavailable(&|w| log(t0, w))
        }
    });
    if let Some(why) = &image_skip {
        eprintln!("arch::*::hostmcu_image* ignored: {why}");
    }
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let mut trials = Vec::new();
    for a in ARCHES {
        trials.push(
            Trial::test(format!("arch::{}::static_build", a.name), move || {
                let target = BUILT.get_or_init(|| cross_build(t0, false)).clone()?;
                check_elf(&binary(&target, a), a)
            })
            .with_ignored_flag(skip.is_some()),
        );
        trials.push(
            Trial::test(format!("arch::{}::hostmcu_image", a.name), move || {
                hostmcu_image(t0, a)
            })
            .with_ignored_flag(image_skip.is_some()),
        );
        for &(suite, left_out) in SUITES {
            trials.push(
                Trial::test(format!("arch::{}::{suite}", a.name), move || {
                    let target = BUILT.get_or_init(|| cross_build(t0, false)).clone()?;
                    run_suite(t0, &binary(&target, a), a, suite, left_out)
                })
                .with_ignored_flag(skip.is_some()),
            );
        }
    }
    trials.push(
        Trial::test(
            "arch::armv7::hostmcu_image_with_the_aarch64_binary_is_refused",
            move || hostmcu_image_wrong_binary(t0),
        )
        .with_ignored_flag(image_skip.is_some()),
    );
    libtest_mimic::run(&args, trials).exit();
}

//! klipper_mcu against a real Linux kernel: Debian's stock kernel in
//! `qemu-system-x86_64 -accel tcg` (TCG: this machine kind's /dev/kvm
//! cannot run it), booted once with a busybox initramfs, with gpio-sim (two
//! chips, one line hogged by the kernel), a register-file I2C adapter, a
//! fake PWM controller, a fake SPI controller bound to spidev and a fake
//! IIO ADC (`tests/vm/modules/`). Inside, a static
//! `kernel_vm_driver` (`tests/vm/driver/`) runs a static klipper_mcu per
//! scenario, drives it through its pty with the project's host codec and
//! checks what the kernel reports (gpio-sim sysfs, line-info ioctls,
//! /proc, i2cget/i2cset, the fake devices' records). Each scenario is a trial here; the VM
//! runs them all in one boot and prints one result line each on its serial
//! console.
//!
//! Why the driver runs inside the VM rather than on the host through a
//! bridged serial port: every check reads the guest's sysfs, ioctls or
//! /proc, so the host would need a second channel into the guest anyway;
//! one guest program keeps each command next to the kernel state it
//! checks, with no emulated-UART latency between them.
//!
//! `tests/vm/build.sh` downloads (never installs) the kernel, headers,
//! kbuild, source and busybox packages with `apt-get download`, builds
//! gpio-sim and the test modules out of tree, and assembles the initramfs;
//! all of it is cached under `target/tmp/kernel-vm/`. qemu (and the
//! kernel's compiler, make) are installed from Debian when missing, as
//! root. `KLIPPER_MCU_KERNEL_TEST=skip` skips it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};

mod hosttools;
use hosttools::{have, repo};

const RUST_TARGET: &str = "x86_64-unknown-linux-gnu";
/// The whole VM run (boot and every scenario); a cold TCG boot takes a
/// few seconds, each scenario well under one on a quiet machine.
const VM_TIMEOUT: Duration = Duration::from_secs(420);

/// The scenarios `tests/vm/driver/` runs, in its order.
const SCENARIOS: &[&str] = &[
    "output_initial_value_and_updates",
    "bias_reaches_the_kernel",
    "inputs_follow_an_outside_pull",
    "buttons_report_presses",
    "endstop_homing_triggers",
    "counter_counts_edges",
    "second_chip_pins",
    "line_configured_twice",
    "line_held_by_the_kernel",
    "emergency_stop_values",
    "config_reset_leaks_no_line_handle",
    "sigterm_releases_every_line",
    "hw_i2c_write_read_transfer",
    "hw_i2c_nack_for_an_absent_address",
    "sw_i2c_on_gpio_sim_lines",
    "realtime_flag",
    "hardware_pwm",
    "spi_through_spidev",
    "spi_devices_keep_their_own_mode_and_rate",
    "adc_through_iio",
];

/// Scenarios that fail today, ignored with the reason until fixed; run them
/// with `cargo test --test kernel -- --ignored`.
const KNOWN_FAILING: &[(&str, &str)] = &[];

/// Families with no kernel stand-in here, with the reason.
const NOT_COVERED: &[(&str, &str)] = &[(
    "ds18b20_one_wire",
    "no 1-wire slave to stand in: w1-gpio needs a platform device with a GPIO \
     (no device tree here) and nothing in the kernel answers as a DS18B20",
)];

fn log(t0: Instant, what: &str) {
    hosttools::log("kernel", t0, what);
}

/// Why the VM cannot run here, if it cannot. Installs qemu when root.
fn why_not(t0: Instant) -> Option<String> {
    if std::env::var("KLIPPER_MCU_KERNEL_TEST").as_deref() == Ok("skip") {
        return Some("KLIPPER_MCU_KERNEL_TEST=skip".into());
    }
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return Some("the VM and its static binaries are for x86_64 Linux".into());
    }
    if !have("apt-get") || !have("dpkg-deb") {
        return Some("needs Debian's apt-get and dpkg-deb to fetch the kernel".into());
    }
    let root = unsafe { libc::geteuid() } == 0;
    let cached = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("kernel-vm")
        .join("abi")
        .exists();
    if !root && !cached {
        return Some("not root: the first run needs apt-get update (as root)".into());
    }
    if have("qemu-system-x86_64") {
        return None;
    }
    if !root {
        return Some("qemu-system-x86_64 is missing and installing it needs root".into());
    }
    log(t0, "installing qemu-system-x86 with apt-get");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(["-q", "-y", "-o", "DPkg::Lock::Timeout=300"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
    };
    let _ = apt(&["update"]);
    match apt(&["install", "--no-install-recommends", "qemu-system-x86"]) {
        Ok(o) if o.status.success() && have("qemu-system-x86_64") => None,
        Ok(o) => Some(format!(
            "qemu-system-x86 is not installable: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run apt-get: {e}")),
    }
}

/// Run a command to completion; its stdout, or an error with its output.
fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The console of one VM run.
struct VmRun {
    console: String,
}

impl VmRun {
    fn result(&self, name: &str) -> Result<(), Failed> {
        let head = format!("KTEST-RESULT {name} ");
        let mut lines = self.console.lines();
        while let Some(l) = lines.next() {
            let Some(rest) = l.trim_end().strip_prefix(&head) else {
                continue;
            };
            if rest.starts_with("ok") {
                return Ok(());
            }
            let detail: Vec<&str> = lines
                .by_ref()
                .map_while(|l| l.strip_prefix("KTEST| "))
                .collect();
            return Err(format!("failed in the VM:\n{}", detail.join("\n")).into());
        }
        let tail: Vec<&str> = self.console.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!(
            "the VM did not report `{name}`; console tail:\n{}",
            tail.join("\n")
        )
        .into())
    }
}

/// Build the static binaries and the initramfs, boot the VM with the
/// selected scenarios, and collect its console.
fn boot(t0: Instant, selected: &[&str]) -> Result<VmRun, String> {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    // The same directory tests/container.rs builds its static binary in:
    // the same flags, so the two share their artifacts; its own target
    // directory, so it never waits on the outer cargo's lock.
    let target_dir = tmp.join("container").join("target");
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    log(t0, "building static klipper_mcu and kernel_vm_driver");
    run(
        Command::new(cargo)
            .current_dir(repo())
            .args([
                "build",
                "--release",
                "-p",
                "klipper_mcu",
                "-p",
                "kernel-vm-driver",
                "--bins",
                "--target",
                RUST_TARGET,
                "--target-dir",
            ])
            .arg(&target_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
        "cargo build (static)",
    )?;
    let rel = target_dir.join(RUST_TARGET).join("release");
    log(
        t0,
        "preparing the kernel, modules and initramfs (tests/vm/build.sh)",
    );
    let out = run(
        Command::new("sh")
            .arg(repo().join("tests/vm/build.sh"))
            .arg(tmp.join("kernel-vm"))
            .arg(rel.join("klipper_mcu"))
            .arg(rel.join("kernel_vm_driver"))
            .stderr(Stdio::inherit()),
        "tests/vm/build.sh",
    )?;
    let get = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::to_string)
            .ok_or_else(|| format!("build.sh printed no {key}"))
    };
    let (kernel, initrd) = (get("kernel=")?, get("initrd=")?);
    log(t0, "booting the VM");
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "512", "-smp", "1", "-no-reboot"])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .args(["-kernel", &kernel, "-initrd", &initrd])
        .arg("-append")
        .arg(format!(
            "console=ttyS0 loglevel=3 panic=-1 ktest={}",
            selected.join(",")
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    let console = Arc::new(Mutex::new(String::new()));
    let reader = {
        let console = console.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("KTEST-RESULT") {
                    eprintln!("[kernel {:6.1}s] {line}", t0.elapsed().as_secs_f64());
                }
                let mut c = console.lock().unwrap();
                c.push_str(&line);
                c.push('\n');
            }
        })
    };
    let deadline = Instant::now() + VM_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = reader.join();
    let console = std::mem::take(&mut *console.lock().unwrap());
    log(t0, &format!("VM finished: {status:?}"));
    if status.is_none() {
        eprintln!("VM console:\n{console}");
        return Err(format!("the VM did not finish within {VM_TIMEOUT:?}"));
    }
    if !console.contains("KTEST-DONE") {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        return Err(format!(
            "the VM stopped before its driver finished ({status:?}); qemu stderr:\n{err}\nconsole:\n{console}"
        ));
    }
    Ok(VmRun { console })
}

fn main() {
    let args = Arguments::from_args();
    let t0 = Instant::now();
    // Only the scenarios the filter selects are run in the VM.
    let run_ignored = args.ignored || args.include_ignored;
    let selected: Vec<&'static str> = SCENARIOS
        .iter()
        .copied()
        .chain(
            KNOWN_FAILING
                .iter()
                .map(|(n, _)| *n)
                .filter(|_| run_ignored),
        )
        .filter(|n| match &args.filter {
            None => true,
            Some(f) if args.exact => *n == f || format!("kernel::{n}") == *f,
            Some(f) => format!("kernel::{n}").contains(f.as_str()),
        })
        .collect();
    let skip = if selected.is_empty() || args.list {
        None
    } else {
        why_not(t0)
    };
    if let Some(why) = &skip {
        eprintln!("kernel tests ignored: {why}");
    }
    let vm: Arc<OnceLock<Result<VmRun, String>>> = Arc::new(OnceLock::new());
    let mut trials = Vec::new();
    for &name in SCENARIOS {
        let vm = vm.clone();
        let selected = selected.clone();
        trials.push(
            Trial::test(format!("kernel::{name}"), move || {
                match vm.get_or_init(|| boot(t0, &selected)) {
                    Ok(run) => run.result(name),
                    Err(e) => Err(e.clone().into()),
                }
            })
            .with_ignored_flag(skip.is_some()),
        );
    }
    for &(name, why) in KNOWN_FAILING {
        let vm = vm.clone();
        let selected = selected.clone();
        eprintln!("kernel::{name} ignored: {why}");
        trials.push(
            Trial::test(format!("kernel::{name}"), move || {
                match vm.get_or_init(|| boot(t0, &selected)) {
                    Ok(run) => run.result(name),
                    Err(e) => Err(e.clone().into()),
                }
            })
            .with_ignored_flag(true),
        );
    }
    for &(name, why) in NOT_COVERED {
        if run_ignored {
            eprintln!("kernel::{name}: not covered: {why}");
        }
        trials.push(
            Trial::test(format!("kernel::{name}"), move || {
                Err(format!("not covered: {why}").into())
            })
            .with_ignored_flag(true),
        );
    }
    if skip.is_none() {
        for &(name, why) in NOT_COVERED {
            eprintln!("kernel::{name} ignored: {why}");
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

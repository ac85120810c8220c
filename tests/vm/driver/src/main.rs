//! The scenario driver of the kernel tests (tests/kernel.rs): a static
//! binary that runs inside the test VM beside a static klipper_mcu, drives
//! it through its pseudo-terminal with the project's host codec, as klippy
//! would, and checks what the kernel itself reports: gpio-sim's sysfs
//! `value`/`pull`, the GPIO line-info ioctl, `/proc/PID/fd`, `i2cget` and
//! `i2cset`, the PWM core's sysfs and the fake PWM driver's record.
//!
//! `kernel_vm_driver [NAME...]` runs the named scenarios (all without a
//! name), each in a child process of its own (the release profile aborts
//! on panic, and a fresh process also keeps scenarios from sharing fds),
//! and prints for each `KTEST-RESULT NAME ok|FAIL SECONDS`, then on
//! failure the child's output, each line prefixed `KTEST| `.

use std::fmt::Display;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use klipper_protocol::dictionary::Json;
use klipper_protocol::host::Response;

// The host side of the terminal, shared with the project's pty tests.
#[path = "../../../simboard/port.rs"]
mod port;

/// Generous: the VM runs under TCG on a busy machine.
const TIMEOUT: Duration = Duration::from_secs(20);
const MCU: &str = "/bin/klipper_mcu";
const GPIO_SIM: &str = "/sys/kernel/config/gpio-sim";

type Scenario = fn();

const SCENARIOS: &[(&str, Scenario)] = &[
    (
        "output_initial_value_and_updates",
        output_initial_value_and_updates,
    ),
    ("bias_reaches_the_kernel", bias_reaches_the_kernel),
    (
        "inputs_follow_an_outside_pull",
        inputs_follow_an_outside_pull,
    ),
    ("buttons_report_presses", buttons_report_presses),
    ("endstop_homing_triggers", endstop_homing_triggers),
    ("counter_counts_edges", counter_counts_edges),
    ("second_chip_pins", second_chip_pins),
    ("line_configured_twice", line_configured_twice),
    ("line_held_by_the_kernel", line_held_by_the_kernel),
    ("emergency_stop_values", emergency_stop_values),
    (
        "config_reset_leaks_no_line_handle",
        config_reset_leaks_no_line_handle,
    ),
    ("sigterm_releases_every_line", sigterm_releases_every_line),
    ("hw_i2c_write_read_transfer", hw_i2c_write_read_transfer),
    (
        "hw_i2c_nack_for_an_absent_address",
        hw_i2c_nack_for_an_absent_address,
    ),
    ("sw_i2c_on_gpio_sim_lines", sw_i2c_on_gpio_sim_lines),
    ("realtime_flag", realtime_flag),
    ("hardware_pwm", hardware_pwm),
    ("spi_through_spidev", spi_through_spidev),
    (
        "spi_devices_keep_their_own_mode_and_rate",
        spi_devices_keep_their_own_mode_and_rate,
    ),
    ("adc_through_iio", adc_through_iio),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--one") {
        let name = args.get(1).expect("--one NAME");
        let (_, f) = SCENARIOS
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no scenario {name}"));
        f();
        return;
    }
    let names: Vec<&str> = if args.is_empty() || args.iter().any(|a| a == "all") {
        SCENARIOS.iter().map(|(n, _)| *n).collect()
    } else {
        args.iter().map(String::as_str).collect()
    };
    let me = std::env::current_exe().expect("current_exe");
    let mut failed = 0;
    for name in names {
        let t0 = Instant::now();
        let out = Command::new(&me)
            .args(["--one", name])
            .stdin(Stdio::null())
            .output()
            .expect("run a scenario");
        let ok = out.status.success();
        println!(
            "KTEST-RESULT {name} {} {:.2}",
            if ok { "ok" } else { "FAIL" },
            t0.elapsed().as_secs_f64()
        );
        if !ok {
            failed += 1;
            let text = format!(
                "{}{}({})",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                out.status
            );
            for line in text.lines() {
                println!("KTEST| {line}");
            }
        }
    }
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

// ---------------------------------------------------------------------------
// What the kernel reports.

/// A gpio-sim chip made by the VM's init: "a" (32 lines, line 3 hogged)
/// or "b" (16 lines).
struct SimChip {
    /// /dev/gpiochipN.
    dev: PathBuf,
    /// The chip's index N, for klipper_mcu's `gpiochipN/gpioM` names.
    index: u32,
    /// /sys/devices/platform/gpio-sim.K/gpiochipN
    sysfs: PathBuf,
}

fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn sim_chip(name: &str) -> SimChip {
    let chip_name = read_trim(&Path::new(GPIO_SIM).join(name).join("bank0/chip_name"));
    let dev_name = read_trim(&Path::new(GPIO_SIM).join(name).join("dev_name"));
    SimChip {
        dev: PathBuf::from("/dev").join(&chip_name),
        index: chip_name["gpiochip".len()..].parse().expect("gpiochipN"),
        sysfs: Path::new("/sys/devices/platform")
            .join(dev_name)
            .join(&chip_name),
    }
}

/// Chip "a", which klipper_mcu must see as gpiochip0 for plain `gpioN`.
fn chip_a() -> SimChip {
    let c = sim_chip("a");
    assert_eq!(c.index, 0, "gpio-sim chip a is not gpiochip0");
    c
}

impl SimChip {
    /// gpio-sim's `value` of a line: what the consumer drives, or what the
    /// simulated pull gives an input.
    fn value(&self, line: u32) -> u8 {
        read_trim(&self.sysfs.join(format!("sim_gpio{line}/value")))
            .parse()
            .expect("value")
    }
    fn pull(&self, line: u32) -> String {
        read_trim(&self.sysfs.join(format!("sim_gpio{line}/pull")))
    }
    /// Pull a line from outside, as a switch or a resistor on the board.
    fn set_pull(&self, line: u32, pull: &str) {
        let p = self.sysfs.join(format!("sim_gpio{line}/pull"));
        std::fs::write(&p, pull).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }
    fn pin(&self, line: u32) -> String {
        if self.index == 0 {
            format!("gpio{line}")
        } else {
            format!("gpiochip{}/gpio{line}", self.index)
        }
    }
    fn info(&self, line: u32) -> LineInfo {
        line_info(&self.dev, line)
    }
}

const FLAG_USED: u64 = 1 << 0;
const FLAG_INPUT: u64 = 1 << 2;
const FLAG_OUTPUT: u64 = 1 << 3;
const FLAG_BIAS_PULL_UP: u64 = 1 << 8;
const FLAG_BIAS_PULL_DOWN: u64 = 1 << 9;
const FLAG_BIAS_DISABLED: u64 = 1 << 10;

/// struct gpio_v2_line_info, as linux/gpio.h lays it out.
#[repr(C)]
struct RawLineInfo {
    name: [u8; 32],
    consumer: [u8; 32],
    offset: u32,
    num_attrs: u32,
    flags: u64,
    attrs: [[u64; 2]; 10],
    padding: [u32; 4],
}

nix::ioctl_readwrite!(gpio_v2_get_lineinfo, 0xB4, 0x05, RawLineInfo);

#[derive(Debug)]
struct LineInfo {
    flags: u64,
    consumer: String,
}

impl LineInfo {
    fn has(&self, f: u64) -> bool {
        self.flags & f != 0
    }
}

/// GPIO_V2_GET_LINEINFO_IOCTL on the chip: who holds the line and how.
fn line_info(dev: &Path, line: u32) -> LineInfo {
    let f = File::open(dev).unwrap_or_else(|e| panic!("open {}: {e}", dev.display()));
    let mut raw = RawLineInfo {
        name: [0; 32],
        consumer: [0; 32],
        offset: line,
        num_attrs: 0,
        flags: 0,
        attrs: [[0; 2]; 10],
        padding: [0; 4],
    };
    unsafe { gpio_v2_get_lineinfo(f.as_raw_fd(), &mut raw) }
        .unwrap_or_else(|e| panic!("line info of {} line {line}: {e}", dev.display()));
    let end = raw.consumer.iter().position(|&b| b == 0).unwrap_or(32);
    LineInfo {
        flags: raw.flags,
        consumer: String::from_utf8_lossy(&raw.consumer[..end]).into_owned(),
    }
}

/// The targets of a process's open fds that match `what`.
fn fds_of(pid: u32, what: &str) -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in rd.flatten() {
            if let Ok(t) = std::fs::read_link(e.path()) {
                let t = t.to_string_lossy().into_owned();
                if t.contains(what) {
                    v.push(t);
                }
            }
        }
    }
    v
}

/// Run a busybox tool; its stdout, trimmed. Panics unless it succeeds.
fn tool(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Wait until `cond` holds (the MCU acts on a command after we sent it).
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------
// klipper_mcu and a host session on its terminal.

struct Mcu {
    child: Child,
    link: PathBuf,
    stderr_path: PathBuf,
    io: port::Session,
}

impl Mcu {
    fn start() -> Mcu {
        Mcu::start_with(&[])
    }

    fn start_with(args: &[&str]) -> Mcu {
        let dir = PathBuf::from(format!("/tmp/mcu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("tty");
        let stderr_path = dir.join("stderr.log");
        let stderr = File::create(&stderr_path).unwrap().into();
        let child = port::mcu_on_link(Command::new(MCU), &link, args, stderr)
            .spawn()
            .expect("spawn klipper_mcu");
        let mut m = Mcu {
            child,
            link,
            stderr_path,
            io: port::Session::default(),
        };
        m.connect(None);
        m
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Wait for the link (to a terminal other than `old`), open it as
    /// klippy does, and fetch the dictionary.
    fn connect(&mut self, old: Option<&Path>) {
        if let Err(e) = port::wait_link(&self.link, old, Some(&mut self.child), TIMEOUT) {
            panic!("{e}; stderr:\n{}", self.stderr());
        }
        self.io = port::Session::open(&self.link);
        self.io.codec.dict = port::fetch_dictionary(|offset| {
            self.send(&format!("identify offset={offset} count=40"));
            let r = self.wait_where("identify_response", |r| r.int("offset") == offset as i64);
            r.bytes("data").to_vec()
        });
        self.io.msgs.clear();
    }

    fn fd(&self) -> i32 {
        self.io.fd()
    }

    fn send(&mut self, text: &str) {
        let block = port::block(&mut self.io.codec, text);
        port::write_all(self.fd(), &block, TIMEOUT, || {
            self.pump(Duration::from_millis(10))
        });
    }

    /// Wait up to `timeout` for input and decode all of it.
    fn pump(&mut self, timeout: Duration) {
        if port::poll(self.fd(), libc::POLLIN, timeout) == 0 {
            return;
        }
        port::read_available(self.fd(), |chunk| self.io.feed(chunk));
    }

    fn wait_where(&mut self, name: &str, pred: impl Fn(&Response) -> bool) -> Response {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(i) = self.io.msgs.iter().position(|r| r.name == name && pred(r)) {
                return self.io.msgs.remove(i);
            }
            if Instant::now() > deadline {
                panic!(
                    "no `{name}` within {TIMEOUT:?}; got {:?}; stderr:\n{}",
                    self.io.msgs,
                    self.stderr()
                );
            }
            self.pump(Duration::from_millis(50));
        }
    }

    fn wait(&mut self, name: &str) -> Response {
        self.wait_where(name, |_| true)
    }

    fn request(&mut self, cmd: &str, resp: &str) -> Response {
        self.io.msgs.retain(|r| r.name != resp);
        self.send(cmd);
        self.wait(resp)
    }

    /// A round trip: every command sent before has been handled.
    fn sync(&mut self) -> u32 {
        self.request("get_clock", "clock").int("clock") as u32
    }

    fn no_shutdown(&mut self) {
        let c = self.request("get_config", "config");
        assert_eq!(
            c.int("is_shutdown"),
            0,
            "shut down: {:?}; stderr:\n{}",
            self.io.msgs,
            self.stderr()
        );
    }

    fn shutdown_reason(&mut self) -> String {
        let r = self.wait("shutdown");
        let id = r.int("static_string_id");
        port::static_string(&self.io.codec.dict, id).unwrap_or_else(|| format!("#{id}"))
    }

    /// The value of `name` in the dictionary's enumeration `enumeration`.
    fn enum_value(&self, enumeration: &str, name: &str) -> i64 {
        self.io
            .codec
            .dict
            .enumerations
            .get(enumeration)
            .and_then(Json::as_object)
            .and_then(|e| e.get(name))
            .and_then(Json::as_i64)
            .unwrap_or_else(|| panic!("no {enumeration} {name} in the dictionary"))
    }

    fn allocate_oids(&mut self, count: u32) {
        self.send(&format!("allocate_oids count={count}"));
        self.no_shutdown();
    }

    /// allocate_oids for `oids`, then each of `cmds`, one at a time.
    fn send_config(&mut self, oids: u32, cmds: &[String]) {
        self.allocate_oids(oids);
        for c in cmds {
            self.send(c);
        }
    }

    /// [`Mcu::send_config`], then finalize_config: no shutdown.
    fn configure(&mut self, oids: u32, cmds: &[String]) {
        self.send_config(oids, cmds);
        self.send("finalize_config crc=0");
        self.no_shutdown();
    }

    /// An i2c_transfer on oid 0 writing `write` and reading a byte ends
    /// with `status` (a name of the i2c_bus_status enumeration).
    fn assert_i2c_read_status(&mut self, write: &str, status: &str) {
        let r = self.request(
            &format!("i2c_transfer oid=0 write={write} read_len=1"),
            "i2c_response",
        );
        let want = self.enum_value("i2c_bus_status", status);
        assert_eq!(r.int("i2c_bus_status"), want, "{r:?}");
    }

    /// The MCU clock 200 ms after a round trip: room for the slow,
    /// emulated guest on a busy host to deliver a command timed then.
    fn soon(&mut self) -> u32 {
        self.sync().wrapping_add(10_000_000)
    }
}

/// `config_digital_out` (no max_duration) of `oid` on `pin`.
fn digital_out(oid: u32, pin: impl Display, value: u8, default: u8) -> String {
    format!("config_digital_out oid={oid} pin={pin} value={value} default_value={default} max_duration=0")
}

/// Outputs oid 0 on `l0` (1, default 0) and oid 1 on `l1` (0, default 1).
fn opposite_outputs(chip: &SimChip, l0: u32, l1: u32) -> [String; 2] {
    [
        digital_out(0, chip.pin(l0), 1, 0),
        digital_out(1, chip.pin(l1), 0, 1),
    ]
}

/// `config_endstop` of `oid` on `pin` (pull_up 1, 0 or -1).
fn endstop(oid: u32, pin: impl Display, pull_up: i32) -> String {
    format!("config_endstop oid={oid} pin={pin} pull_up={pull_up}")
}

impl Drop for Mcu {
    fn drop(&mut self) {
        self.io.port = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Scenarios.

fn output_initial_value_and_updates() {
    let a = chip_a();
    let mut m = Mcu::start();
    // Initial values reach the line as it is requested.
    m.configure(2, &opposite_outputs(&a, 5, 6));
    assert_eq!(a.value(5), 1);
    assert_eq!(a.value(6), 0);
    for line in [5, 6] {
        let i = a.info(line);
        assert!(i.has(FLAG_USED) && i.has(FLAG_OUTPUT), "line {line}: {i:?}");
        assert_eq!(i.consumer, "klipper");
    }
    // Updates.
    for v in [0, 1, 0] {
        m.send(&format!("update_digital_out oid=0 value={v}"));
        m.send(&format!("update_digital_out oid=1 value={}", 1 - v));
        m.sync();
        assert_eq!(a.value(5), v);
        assert_eq!(a.value(6), 1 - v);
    }
    // A scheduled update: high at a clock 200 ms ahead.
    let at = m.soon();
    m.send(&format!("queue_digital_out oid=0 clock={at} on_ticks=1"));
    eventually("the queued update of line 5", || a.value(5) == 1);
    // set_digital_out takes a line no oid holds.
    m.send(&format!("set_digital_out pin={} value=1", a.pin(7)));
    m.sync();
    assert_eq!(a.value(7), 1);
    m.no_shutdown();
}

fn bias_reaches_the_kernel() {
    let a = chip_a();
    // Start from the opposite of what each line is asked for.
    a.set_pull(8, "pull-down");
    a.set_pull(9, "pull-up");
    let mut m = Mcu::start();
    let cmds = [
        endstop(0, a.pin(8), 1),
        endstop(1, a.pin(9), -1),
        endstop(2, a.pin(10), 0),
    ];
    m.send_config(3, &cmds);
    m.sync();
    m.no_shutdown();
    // `^`: pull-up in the kernel's flags and gpio-sim's pull; `~`:
    // pull-down.
    for (line, what, flag, other, pull, value) in [
        (8, "^", FLAG_BIAS_PULL_UP, FLAG_BIAS_PULL_DOWN, "pull-up", 1),
        (
            9,
            "~",
            FLAG_BIAS_PULL_DOWN,
            FLAG_BIAS_PULL_UP,
            "pull-down",
            0,
        ),
    ] {
        let i = a.info(line);
        assert!(
            i.has(FLAG_INPUT) && i.has(flag) && !i.has(other),
            "{what} line: {i:?}"
        );
        assert_eq!(a.pull(line), pull);
        assert_eq!(a.value(line), value);
    }
    // Neither: no bias flag at all (the line keeps what the board gives).
    let i = a.info(10);
    assert!(
        i.has(FLAG_INPUT)
            && !i.has(FLAG_BIAS_PULL_UP)
            && !i.has(FLAG_BIAS_PULL_DOWN)
            && !i.has(FLAG_BIAS_DISABLED),
        "plain line: {i:?}"
    );
    // And the MCU reads what the bias gives.
    let r = m.request("endstop_query_state oid=0", "endstop_state");
    assert_eq!(r.int("pin_value"), 1);
    let r = m.request("endstop_query_state oid=1", "endstop_state");
    assert_eq!(r.int("pin_value"), 0);
}

fn inputs_follow_an_outside_pull() {
    let a = chip_a();
    a.set_pull(11, "pull-down");
    let mut m = Mcu::start();
    m.send_config(1, &[endstop(0, a.pin(11), 0)]);
    m.sync();
    for (pull, want) in [
        ("pull-down", 0),
        ("pull-up", 1),
        ("pull-down", 0),
        ("pull-up", 1),
    ] {
        a.set_pull(11, pull);
        let r = m.request("endstop_query_state oid=0", "endstop_state");
        assert_eq!(r.int("pin_value"), want, "after an outside {pull}");
    }
    m.no_shutdown();
}

fn buttons_report_presses() {
    let a = chip_a();
    let mut m = Mcu::start();
    let mut cmds = vec!["config_buttons oid=0 button_count=2".to_string()];
    for (pos, line) in [(0, 12), (1, 13)] {
        cmds.push(format!(
            "buttons_add oid=0 pos={pos} pin={} pull_up=1",
            a.pin(line)
        ));
    }
    m.configure(1, &cmds);
    assert_eq!(a.pull(12), "pull-up");
    // From 200 ms on, sample every 1 ms, report through retransmits.
    let at = m.soon();
    m.send(&format!(
        "buttons_query oid=0 clock={at} rest_ticks=50000 retransmit_count=10 invert=0"
    ));
    // A press pulls button 0 low: the reported state has bit 0 clear.
    let expect = |m: &mut Mcu, want: u8| {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let r = m.wait("buttons_state");
            let st = r.bytes("state").to_vec();
            // Acknowledge what arrived, so each state is reported once.
            m.send(&format!("buttons_ack oid=0 count={}", st.len()));
            if st.last() == Some(&want) {
                return;
            }
            assert!(Instant::now() < deadline, "no buttons state {want:#x}");
        }
    };
    a.set_pull(12, "pull-down");
    expect(&mut m, 0b10);
    a.set_pull(12, "pull-up");
    a.set_pull(13, "pull-down");
    expect(&mut m, 0b01);
    m.no_shutdown();
}

/// Homing: the endstop samples its line and triggers its trsync when a
/// switch pulls the line to the homing value.
fn endstop_homing_triggers() {
    let a = chip_a();
    a.set_pull(27, "pull-up");
    let mut m = Mcu::start();
    // No bias: the outside pull alone decides the level.
    m.configure(2, &[endstop(0, a.pin(27), 0), "config_trsync oid=1".into()]);
    let now = m.sync();
    m.send("trsync_start oid=1 report_clock=0 report_ticks=0 expire_reason=4");
    m.send(&format!(
        "trsync_set_timeout oid=1 clock={}",
        now.wrapping_add(50_000_000 * 15)
    ));
    // From 200 ms on, sample 4 times 100 us apart, every 1 ms (slower than
    // klippy asks: the guest is emulated); trigger on a low line.
    m.send(&format!(
        "endstop_home oid=0 clock={} sample_ticks=5000 sample_count=4 rest_ticks=50000 \
         pin_value=0 trsync_oid=1 trigger_reason=1",
        now.wrapping_add(10_000_000)
    ));
    std::thread::sleep(Duration::from_millis(300));
    let r = m.request("endstop_query_state oid=0", "endstop_state");
    assert_eq!(
        r.int("homing"),
        1,
        "stopped homing with the line high: {r:?}"
    );
    assert!(!m
        .io
        .msgs
        .iter()
        .any(|r| r.name == "trsync_state" && r.int("can_trigger") == 0));
    // The switch closes.
    a.set_pull(27, "pull-down");
    let t = m.wait_where("trsync_state", |r| r.int("can_trigger") == 0);
    assert_eq!(t.int("trigger_reason"), 1, "{t:?}");
    // klippy then stops the homing and reads the endstop.
    m.send(
        "endstop_home oid=0 clock=0 sample_ticks=0 sample_count=0 rest_ticks=0 \
         pin_value=0 trsync_oid=0 trigger_reason=0",
    );
    let r = m.request("endstop_query_state oid=0", "endstop_state");
    assert_eq!((r.int("homing"), r.int("pin_value")), (0, 0), "{r:?}");
    m.no_shutdown();
}

/// A counter (klippy's pulse counter, e.g. a fan tachometer) counts the
/// line's level changes.
fn counter_counts_edges() {
    let a = chip_a();
    a.set_pull(28, "pull-down");
    let mut m = Mcu::start();
    m.configure(
        1,
        &[format!("config_counter oid=0 pin={} pull_up=0", a.pin(28))],
    );
    // Sample every 1 ms, report every 100 ms.
    let at = m.soon();
    m.send(&format!(
        "query_counter oid=0 clock={at} poll_ticks=5000000 sample_ticks=50000"
    ));
    // Each change is waited for before the next, so a slow guest cannot
    // miss one between two samples.
    for k in 1..=6 {
        a.set_pull(28, if k % 2 == 1 { "pull-up" } else { "pull-down" });
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let r = m.wait("counter_state");
            let count = r.int("count");
            assert!(count <= k, "{count} edges counted after {k}: {r:?}");
            if count == k {
                break;
            }
            assert!(Instant::now() < deadline, "edge {k} not counted: {r:?}");
        }
    }
    m.no_shutdown();
}

fn second_chip_pins() {
    let a = chip_a();
    let b = sim_chip("b");
    assert_ne!(b.index, 0);
    let mut m = Mcu::start();
    m.configure(
        2,
        &[digital_out(0, b.pin(4), 1, 0), endstop(1, b.pin(5), 1)],
    );
    assert_eq!(b.value(4), 1);
    assert!(b.info(4).has(FLAG_OUTPUT));
    assert_eq!(b.pull(5), "pull-up");
    assert!(b.info(5).has(FLAG_BIAS_PULL_UP));
    // The same offsets on the first chip are left alone.
    assert!(!a.info(4).has(FLAG_USED), "{:?}", a.info(4));
    assert!(!a.info(5).has(FLAG_USED), "{:?}", a.info(5));
    m.send("update_digital_out oid=0 value=0");
    m.sync();
    assert_eq!(b.value(4), 0);
    // Both chips' device nodes are open, one each.
    assert_eq!(fds_of(m.pid(), &format!("gpiochip{}", b.index)).len(), 1);
}

fn line_configured_twice() {
    let a = chip_a();
    let mut m = Mcu::start();
    m.send_config(
        2,
        &[digital_out(0, a.pin(14), 1, 0), endstop(1, a.pin(14), 1)],
    );
    m.sync();
    m.no_shutdown();
    // The second request replaced the first: an input with pull-up, and
    // one line handle in the process, not two.
    let i = a.info(14);
    assert!(i.has(FLAG_INPUT) && i.has(FLAG_BIAS_PULL_UP), "{i:?}");
    assert_eq!(
        fds_of(m.pid(), "gpio-line").len(),
        1,
        "{:?}",
        fds_of(m.pid(), "")
    );
}

fn line_held_by_the_kernel() {
    let a = chip_a();
    let hog = a.info(3);
    assert!(hog.has(FLAG_USED), "line 3 is not hogged: {hog:?}");
    let mut m = Mcu::start();
    m.send_config(1, &[digital_out(0, a.pin(3), 0, 0)]);
    assert_eq!(m.shutdown_reason(), "Unable to open out GPIO chip line");
    let err = m.stderr();
    assert!(err.contains("EBUSY"), "stderr does not name EBUSY:\n{err}");
    assert!(
        err.contains("another program holds the line"),
        "stderr does not say the fix:\n{err}"
    );
    // The hog is untouched and the MCU still answers, shut down.
    assert_eq!(a.value(3), 1);
    assert_eq!(a.info(3).consumer, hog.consumer);
    assert_eq!(m.request("get_config", "config").int("is_shutdown"), 1);
}

fn emergency_stop_values() {
    let a = chip_a();
    let mut m = Mcu::start();
    m.configure(2, &opposite_outputs(&a, 15, 16));
    assert_eq!((a.value(15), a.value(16)), (1, 0));
    m.send("emergency_stop");
    assert_eq!(m.shutdown_reason(), "Command request");
    // Each output goes to its default value.
    eventually("default values", || (a.value(15), a.value(16)) == (0, 1));
    // Still held (not released to whatever the board pulls).
    assert!(a.info(15).has(FLAG_OUTPUT) && a.info(16).has(FLAG_OUTPUT));
}

fn config_reset_leaks_no_line_handle() {
    let a = chip_a();
    let mut m = Mcu::start();
    let cmds = [
        digital_out(0, a.pin(17), 1, 0),
        endstop(1, a.pin(18), 1),
        "config_i2c oid=2".into(),
        "i2c_set_bus oid=2 i2c_bus=1 rate=100000 address=80".into(),
    ];
    let configure = |m: &mut Mcu| m.configure(3, &cmds);
    configure(&mut m);
    let pid = m.pid();
    assert_eq!(fds_of(pid, "gpio-line").len(), 2);
    let before = fds_of(pid, "");
    for _ in 0..2 {
        let old = std::fs::read_link(&m.link).unwrap();
        m.send("emergency_stop");
        m.shutdown_reason();
        m.send("config_reset");
        // The same process, re-executed, links a new terminal.
        m.connect(Some(&old));
        assert_eq!(m.pid(), pid);
        assert!(fds_of(pid, "gpio-line").is_empty(), "{:?}", fds_of(pid, ""));
        assert!(fds_of(pid, "i2c").is_empty(), "{:?}", fds_of(pid, ""));
        for line in [17, 18] {
            assert!(!a.info(line).has(FLAG_USED), "line {line} still held");
        }
        // The same lines configure again (a leaked handle would make the
        // kernel refuse them with EBUSY).
        configure(&mut m);
        assert_eq!(a.value(17), 1);
        let after = fds_of(pid, "");
        assert_eq!(after.len(), before.len(), "{before:?} -> {after:?}");
    }
}

fn sigterm_releases_every_line() {
    let a = chip_a();
    let b = sim_chip("b");
    let mut m = Mcu::start();
    m.configure(
        4,
        &[
            digital_out(0, a.pin(19), 1, 0),
            endstop(1, a.pin(20), 1),
            digital_out(2, b.pin(6), 1, 0),
            endstop(3, b.pin(7), -1),
        ],
    );
    let lines = [(&a, 19), (&a, 20), (&b, 6), (&b, 7)];
    for (c, l) in lines {
        assert!(c.info(l).has(FLAG_USED));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(m.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let st = loop {
        if let Some(st) = m.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(st.success(), "exit status {st}");
    for (c, l) in lines {
        assert!(!c.info(l).has(FLAG_USED), "line {l} held after exit");
    }
    assert!(
        std::fs::symlink_metadata(&m.link).is_err(),
        "link left behind"
    );
}

fn i2cget(addr: u8, reg: u8) -> u8 {
    let s = tool(&[
        "i2cget",
        "-y",
        "1",
        &format!("{addr:#x}"),
        &format!("{reg:#x}"),
    ]);
    u8::from_str_radix(s.trim_start_matches("0x"), 16).expect("i2cget output")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// I2C `oid` on /dev/i2c-1 at 100 kHz for the device at `address`.
fn hw_i2c(oid: u32, address: u8) -> Vec<String> {
    vec![
        format!("config_i2c oid={oid}"),
        format!("i2c_set_bus oid={oid} i2c_bus=1 rate=100000 address={address}"),
    ]
}

fn hw_i2c_write_read_transfer() {
    let mut m = Mcu::start();
    let mut cmds = hw_i2c(0, 80);
    cmds.extend(hw_i2c(1, 81));
    m.configure(2, &cmds);
    // Write: register 0x10 on, on each device; the kernel's own tools see it.
    m.send("i2c_write oid=0 data=10a1b2c3");
    m.send("i2c_write oid=1 data=105a6b");
    m.sync();
    assert_eq!(
        [i2cget(0x50, 0x10), i2cget(0x50, 0x11), i2cget(0x50, 0x12)],
        [0xa1, 0xb2, 0xc3]
    );
    assert_eq!([i2cget(0x51, 0x10), i2cget(0x51, 0x11)], [0x5a, 0x6b]);
    // Read back what i2cset wrote.
    tool(&["i2cset", "-y", "1", "0x50", "0x20", "0x77"]);
    tool(&["i2cset", "-y", "1", "0x50", "0x21", "0x88"]);
    let r = m.request("i2c_read oid=0 reg=20 read_len=2", "i2c_read_response");
    assert_eq!(r.bytes("response"), [0x77, 0x88]);
    // A combined write-then-read transfer.
    let r = m.request("i2c_transfer oid=1 write=10 read_len=2", "i2c_response");
    assert_eq!(r.int("i2c_bus_status"), 0);
    assert_eq!(hex(r.bytes("response")), "5a6b");
    // A write-only transfer.
    let r = m.request(
        "i2c_transfer oid=0 write=30c0ffee read_len=0",
        "i2c_response",
    );
    assert_eq!(r.int("i2c_bus_status"), 0);
    assert_eq!(
        [i2cget(0x50, 0x30), i2cget(0x50, 0x31), i2cget(0x50, 0x32)],
        [0xc0, 0xff, 0xee]
    );
    m.no_shutdown();
}

fn hw_i2c_nack_for_an_absent_address() {
    let mut m = Mcu::start();
    m.configure(1, &hw_i2c(0, 96));
    m.assert_i2c_read_status("00", "NACK");
    // A status, not a shutdown.
    m.no_shutdown();
    // The kernel's reason on stderr, with the device and the errno.
    let err = m.stderr();
    assert!(
        err.contains("i2c read on /dev/i2c-1 address 0x60 failed") && err.contains("(E"),
        "no errno logged: {err}"
    );
}

fn sw_i2c_on_gpio_sim_lines() {
    let a = chip_a();
    let mut m = Mcu::start();
    let bus = format!(
        "i2c_set_sw_bus oid=0 scl_pin={} sda_pin={} pulse_ticks=250 address=80",
        a.pin(21),
        a.pin(22)
    );
    m.configure(1, &["config_i2c oid=0".into(), bus]);
    // The bus lines are held, released high by their pull-ups.
    for line in [21, 22] {
        let i = a.info(line);
        assert!(
            i.has(FLAG_USED) && i.consumer == "klipper",
            "line {line}: {i:?}"
        );
        assert_eq!(a.pull(line), "pull-up");
        assert_eq!(a.value(line), 1);
    }
    // Nothing on these lines answers: the address byte is not acked.
    m.assert_i2c_read_status("10", "START_NACK");
    m.no_shutdown();
    // The bus is released after the transfer.
    for line in [21, 22] {
        assert_eq!(a.value(line), 1, "line {line} left low");
    }
}

fn realtime_flag() {
    let a = chip_a();
    let mut m = Mcu::start_with(&["-r"]);
    let stat = read_trim(Path::new(&format!("/proc/{}/stat", m.pid())));
    // Fields after the command name: policy is field 41, rt_priority 40.
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let (prio, policy) = (rest[40 - 3], rest[41 - 3]);
    assert_eq!(policy, "1", "not SCHED_FIFO: {stat}");
    assert_eq!(prio, "49", "priority: {stat}");
    let status = read_trim(Path::new(&format!("/proc/{}/status", m.pid())));
    let locked = status
        .lines()
        .find(|l| l.starts_with("VmLck:"))
        .expect("VmLck");
    assert_ne!(locked.split_whitespace().nth(1), Some("0"), "{locked}");
    // And it works as usual.
    m.send_config(1, &[digital_out(0, a.pin(23), 1, 0)]);
    m.send("finalize_config crc=0");
    m.sync();
    assert_eq!(a.value(23), 1);
    m.send("update_digital_out oid=0 value=0");
    m.sync();
    assert_eq!(a.value(23), 0);
    m.no_shutdown();
}

const PWM: &str = "/sys/class/pwm/pwmchip0";

fn pwm_attr(ch: u32, attr: &str) -> String {
    read_trim(Path::new(&format!("{PWM}/pwm{ch}/{attr}")))
}

/// What the fake PWM driver was last asked to apply on a channel.
fn pwm_applied(ch: usize) -> String {
    let s = read_trim(Path::new("/sys/devices/platform/klipper-test-pwm/applied"));
    s.lines().nth(ch).expect("channel").to_string()
}

fn hardware_pwm() {
    let mut m = Mcu::start();
    // 1 ms period (50 000 ticks), a quarter on.
    m.configure(1, &["config_pwm_out oid=0 pin=pwmchip0/pwm0 cycle_ticks=50000 value=8192 default_value=0 max_duration=0".into()]);
    eventually("the channel exported", || {
        Path::new(PWM).join("pwm0").exists()
    });
    assert_eq!(pwm_attr(0, "period"), "1000000");
    assert_eq!(pwm_attr(0, "duty_cycle"), "250000");
    assert_eq!(pwm_attr(0, "enable"), "1");
    assert_eq!(pwm_applied(0), "1000000 250000 1");
    // A scheduled change, 200 ms ahead.
    let at = m.soon();
    m.send(&format!("queue_pwm_out oid=0 clock={at} value=24576"));
    eventually("the queued duty cycle", || {
        pwm_attr(0, "duty_cycle") == "750000"
    });
    assert_eq!(pwm_applied(0), "1000000 750000 1");
    // set_pwm_out on the second channel.
    m.send("set_pwm_out pin=pwmchip0/pwm1 cycle_ticks=100000 value=32768");
    m.sync();
    assert_eq!(pwm_attr(1, "period"), "2000000");
    assert_eq!(pwm_attr(1, "duty_cycle"), "2000000");
    // Shutdown: the default value, 0, which turns the output off.
    m.send("emergency_stop");
    assert_eq!(m.shutdown_reason(), "Command request");
    eventually("the output disabled", || pwm_attr(0, "enable") == "0");
    assert!(pwm_applied(0).ends_with(" 0"), "{}", pwm_applied(0));
    assert_eq!(pwm_attr(1, "enable"), "1", "set_pwm_out has no default");
}

/// What the fake SPI controller saw last: (mode, speed, bytes sent).
fn spi_last() -> (u32, u32, String) {
    let s = read_trim(Path::new("/sys/devices/platform/klipper-test-spi/last"));
    let mut w = s.split(' ');
    let mode = w.next().unwrap().parse().unwrap();
    let speed = w.next().unwrap().parse().unwrap();
    (mode, speed, w.next().unwrap_or("").to_string())
}

/// SPI `oid` on spidev0.0 (`mode_rate`: "mode=M rate=R") with an
/// active-low chip select on `cs`.
fn spi_with_cs(oid: u32, cs: impl Display, mode_rate: &str) -> Vec<String> {
    vec![
        format!("config_spi oid={oid} pin={cs} cs_active_high=0"),
        format!("spi_set_bus oid={oid} spi_bus=0 {mode_rate}"),
    ]
}

fn spi_through_spidev() {
    let a = chip_a();
    assert!(Path::new("/dev/spidev0.0").exists(), "no /dev/spidev0.0");
    let mut m = Mcu::start();
    let mut cmds = vec![
        "config_spi_without_cs oid=0".into(),
        "spi_set_bus oid=0 spi_bus=0 mode=3 rate=1000000".into(),
    ];
    // A device with its chip select on a gpio-sim line, active low, on
    // the same spidev node with the same settings.
    cmds.extend(spi_with_cs(1, a.pin(24), "mode=3 rate=1000000"));
    cmds.push("config_spi_shutdown oid=2 spi_oid=0 shutdown_msg=dead".into());
    m.configure(3, &cmds);
    assert_eq!(a.value(24), 1, "chip select not idle high");
    // The controller answers the inverse of each byte it is sent.
    let r = m.request("spi_transfer oid=0 data=0102a5", "spi_transfer_response");
    assert_eq!(hex(r.bytes("response")), "fefd5a");
    assert_eq!(spi_last(), (3, 1_000_000, "0102a5".into()));
    m.send("spi_send oid=1 data=c0ffee");
    m.sync();
    assert_eq!(spi_last(), (3, 1_000_000, "c0ffee".into()));
    assert_eq!(a.value(24), 1, "chip select left active");
    // Shutdown sends the shutdown message.
    m.send("emergency_stop");
    assert_eq!(m.shutdown_reason(), "Command request");
    eventually("the shutdown message", || spi_last().2 == "dead");
}

/// Two devices on one spidev node (chip selects on GPIO lines, as klippy
/// configures a MAX31865 and an ADXL345 sharing a bus) each keep their
/// own mode and rate: the reference passes the rate with every transfer.
fn spi_devices_keep_their_own_mode_and_rate() {
    let a = chip_a();
    let mut m = Mcu::start();
    let mut cmds = spi_with_cs(0, a.pin(25), "mode=3 rate=1000000");
    cmds.extend(spi_with_cs(1, a.pin(26), "mode=1 rate=2000000"));
    m.configure(2, &cmds);
    m.request("spi_transfer oid=0 data=0102", "spi_transfer_response");
    assert_eq!(spi_last(), (3, 1_000_000, "0102".into()));
    m.request("spi_transfer oid=1 data=0304", "spi_transfer_response");
    assert_eq!(spi_last(), (1, 2_000_000, "0304".into()));
}

const IIO_RAW: &str = "/sys/module/klipper_test_iio/parameters/raw";

/// The next `analog_in_state` of `oid`, as one 16-bit sum.
fn adc_report(m: &mut Mcu, oid: i64) -> u32 {
    let r = m.wait_where("analog_in_state", |r| r.int("oid") == oid);
    let v = r.bytes("values");
    assert_eq!(v.len(), 2, "{r:?}");
    u16::from_le_bytes([v[0], v[1]]) as u32
}

fn adc_through_iio() {
    let name = read_trim(Path::new("/sys/bus/iio/devices/iio:device0/name"));
    assert_eq!(name, "klipper-test-adc");
    std::fs::write(IIO_RAW, "1000,3000").unwrap();
    let mut m = Mcu::start();
    let cmds = [0, 1].map(|k| format!("config_analog_in oid={k} pin=analog{k}"));
    m.configure(2, &cmds);
    let at = m.soon();
    // From 200 ms on, four samples 0.1 ms apart, a report every 10 ms;
    // channel 1 shuts
    // the MCU down after 2 readings above 3500.
    for (oid, max) in [(0, 4095), (1, 3500)] {
        m.send(&format!(
            "query_analog_in oid={oid} clock={at} sample_ticks=5000 sample_count=4 \
             rest_ticks=500000 bytes_per_report=2 min_value=0 max_value={} range_check_count=2",
            max * 4
        ));
    }
    assert_eq!(adc_report(&mut m, 0), 4000);
    assert_eq!(adc_report(&mut m, 1), 12000);
    // The reading follows the device.
    std::fs::write(IIO_RAW, "2500,3000").unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while adc_report(&mut m, 0) != 10000 {
        assert!(Instant::now() < deadline, "the ADC reading did not follow");
    }
    m.no_shutdown();
    // Out of range on channel 1.
    std::fs::write(IIO_RAW, "2500,4000").unwrap();
    assert_eq!(m.shutdown_reason(), "ADC out of range");
}

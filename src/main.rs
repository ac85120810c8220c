//! klipper_mcu: Klipper's Linux host MCU.

use std::ffi::CString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use klipper_mcu::clock::{self, from_us};
use klipper_mcu::command::Registry;
use klipper_mcu::commands::{self, Dialect};
use klipper_mcu::console::Console;
use klipper_mcu::hw::sim::SimControl;
use klipper_mcu::hw::Board;
use klipper_mcu::mcu::{Mcu, STARTING};
use klipper_mcu::restart::{self, Watchdog};
use klipper_mcu::sched::{TimerResult, MAX_TIMER_LATENESS, RESCHEDULED_IN_PAST};

const USAGE: &str = "\
Usage: klipper_mcu [-w] [-r] [-I PATH]
Klipper's Linux host MCU: lets klippy use this computer's GPIO, SPI, I2C,
PWM and ADC lines as one more micro-controller.

  -I PATH     link the MCU's pseudo-terminal at PATH (default /tmp/klipper_host_mcu);
              point klippy's [mcu] serial: at it
  -r          real-time: SCHED_FIFO scheduling and locked memory
              (needs CAP_SYS_NICE and a memlock limit)
  -w          feed the hardware watchdog /dev/watchdog
  --sim       use a simulated board instead of this computer's hardware; its
              control socket (a Unix datagram socket) is PATH.sim: send
              'set gpio17 1', 'get gpio17', 'history gpio17 20', 'clock'
  --dev-root DIR  look for device nodes (gpiochipN, spidevB.D, i2c-N) in DIR
              instead of /dev
  --dialect klipper|kalico  message forms to serve where the hosts differ
              (default klipper; Kalico 2026.10 needs kalico for ADC inputs
              and DS18B20)
  --sysfs-root DIR  read sysfs (PWM, ADC, 1-wire) under DIR instead of /sys
  --check PATH  health check: exit 0 if PATH links to a live pty held by a
              running klipper_mcu (the pty is never opened), else 1
  --help      show this help
  --version   show the version
";

struct Options {
    path: PathBuf,
    sim: bool,
    dev_root: PathBuf,
    sysfs_root: PathBuf,
    dialect: Dialect,
    realtime: bool,
    watchdog: bool,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        path: PathBuf::from("/tmp/klipper_host_mcu"),
        sim: false,
        dev_root: PathBuf::from("/dev"),
        sysfs_root: PathBuf::from("/sys"),
        dialect: Dialect::Klipper,
        realtime: false,
        watchdog: false,
    };
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        match a.as_str() {
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--check" => {
                let path = PathBuf::from(args.get(i + 1).ok_or("--check needs the pty link path")?);
                match klipper_mcu::health::check(&path) {
                    Ok(msg) => {
                        println!("healthy: {msg}");
                        std::process::exit(0);
                    }
                    Err(msg) => {
                        println!("unhealthy: {msg}");
                        std::process::exit(1);
                    }
                }
            }
            "--sim" => o.sim = true,
            "--dialect" => {
                i += 1;
                o.dialect = match args.get(i).map(String::as_str) {
                    Some("klipper") => Dialect::Klipper,
                    Some("kalico") => Dialect::Kalico,
                    _ => return Err("--dialect takes klipper or kalico".into()),
                };
            }
            "--sysfs-root" => {
                i += 1;
                o.sysfs_root = PathBuf::from(args.get(i).ok_or("--sysfs-root needs a folder")?);
            }
            "--dev-root" => {
                i += 1;
                o.dev_root = PathBuf::from(args.get(i).ok_or("--dev-root needs a folder")?);
            }
            "--version" => {
                println!("klipper_mcu {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            _ if a.starts_with('-') && a.len() > 1 && !a.starts_with("--") => {
                // getopt-style clusters: -rw, -I PATH, -IPATH
                let flags: Vec<char> = a[1..].chars().collect();
                let mut j = 0;
                while j < flags.len() {
                    match flags[j] {
                        'r' => o.realtime = true,
                        'w' => o.watchdog = true,
                        'I' => {
                            let rest: String = flags[j + 1..].iter().collect();
                            if !rest.is_empty() {
                                o.path = PathBuf::from(rest);
                            } else {
                                i += 1;
                                o.path = PathBuf::from(args.get(i).ok_or("-I needs a path")?);
                            }
                            j = flags.len();
                            continue;
                        }
                        c => return Err(format!("unknown option -{c}")),
                    }
                    j += 1;
                }
            }
            _ => return Err(format!("unexpected argument {a}")),
        }
        i += 1;
    }
    Ok(o)
}

static TERMINATE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_terminate(_: libc::c_int) {
    TERMINATE.store(true, Ordering::Relaxed);
}

/// Catch the termination signals, keeping them blocked except while the
/// loop waits in ppoll (which gets the returned mask): a signal that
/// arrives while the loop is busy then interrupts the next wait instead of
/// being missed by it.
fn install_signal_handlers() -> libc::sigset_t {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
    // No SA_RESTART: the signal must interrupt ppoll so the loop sees it.
    let act = SigAction::new(
        SigHandler::Handler(on_terminate),
        SaFlags::empty(),
        SigSet::empty(),
    );
    let mut block = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // Installing a handler for these signals cannot fail.
        let _ = unsafe { sigaction(s, &act) };
        block.add(s);
    }
    let mut old = SigSet::empty();
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&block), Some(&mut old));
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        old.remove(s);
    }
    let _ = unsafe {
        sigaction(
            Signal::SIGPIPE,
            &SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty()),
        )
    };
    *old.as_ref()
}

/// Whether SIGTERM, SIGINT or SIGHUP is pending (blocked, not yet taken).
fn termination_pending() -> bool {
    // SAFETY: sigpending fills the set we own; sigismember only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut set) == 0
            && [libc::SIGTERM, libc::SIGINT, libc::SIGHUP]
                .iter()
                .any(|&s| libc::sigismember(&set, s) == 1)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("klipper_mcu: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let argv: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_bytes()).expect("arguments have no NUL"))
        .collect();

    // Sleep precisely: the default 50 us of timer slack would delay every
    // wake-up for a timer.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };

    if opts.realtime {
        if let Err(e) = restart::realtime_setup() {
            eprintln!("klipper_mcu: {e}");
            std::process::exit(1);
        }
    }
    let mut console = match Console::open(&opts.path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("klipper_mcu: {e}");
            std::process::exit(1);
        }
    };
    let mut watchdog = if opts.watchdog {
        match Watchdog::open() {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!("klipper_mcu: {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    let wait_mask = install_signal_handlers();

    let registry: &'static Registry = Box::leak(Box::new(Registry::with_overrides(
        &commands::modules(),
        &commands::dialect_overrides(opts.dialect),
    )));
    let mut sim_control = None;
    let board = if opts.sim {
        let (board, state) = Board::sim(opts.dev_root.clone(), opts.sysfs_root.clone());
        let path = sim_control_path(&opts.path);
        match SimControl::bind(&path, state) {
            Ok(c) => sim_control = Some(c),
            Err(e) => {
                eprintln!("klipper_mcu: {e}");
                std::process::exit(1);
            }
        }
        board
    } else {
        Board::linux(opts.dev_root.clone(), opts.sysfs_root.clone())
    };
    let mut mcu = Mcu::new(registry, argv, board);
    mcu.send(&STARTING, &[]);
    run(
        &mut mcu,
        &mut console,
        watchdog.as_mut(),
        sim_control.as_mut(),
        &wait_mask,
    );
    console.flush(&mut mcu.out);
    console.unlink();
    if mcu.out.dropped != 0 {
        eprintln!(
            "klipper_mcu: {} messages were dropped because the host was not reading",
            mcu.out.dropped
        );
    }
}

/// Timers due within this many ticks are waited for by spinning.
const TIMER_MIN_TRY_TICKS: u32 = from_us(2);
/// How often a loop too busy to sleep still looks at its input.
const INPUT_CHECK_TICKS: u32 = from_us(50);
/// Timers run back to back before the loop looks at its input again.
const TIMER_REPEAT_COUNT: u32 = 20;

/// Most the loop wakes before a timer, to spin until it is due instead of
/// paying the kernel's wake-up latency after it.
const MAX_WAKE_MARGIN: u32 = from_us(50);

/// How early to wake for a timer: follows the wake-up latency the loop
/// sees, so a timer runs on time without spinning longer than needed.
struct WakeMargin {
    ticks: u32,
}

impl WakeMargin {
    /// The loop asked to wake at `asked` and woke at `now`.
    fn observe(&mut self, asked: u32, now: u32) {
        let late = now.wrapping_sub(asked) as i32;
        if late > 0 {
            // Grow quickly towards the latency seen.
            let target = (late as u32).min(MAX_WAKE_MARGIN);
            if target > self.ticks {
                self.ticks = (self.ticks + target).div_ceil(2);
            }
        }
        // Shrink slowly, so a quiet period gives the spinning back.
        self.ticks = (self.ticks - self.ticks / 256).max(TIMER_MIN_TRY_TICKS);
    }
}

/// Run due timers, spinning for one due within `spin` ticks.
fn run_timers(mcu: &mut Mcu, spin: u32) {
    // Read the clock again only when the next timer is not already due by
    // the last reading (back-to-back step events need no fresh reading).
    let mut now = mcu.clock.now();
    for _ in 0..TIMER_REPEAT_COUNT {
        let Some(next) = mcu.timers.next_wake() else {
            break;
        };
        let mut diff = next.wrapping_sub(now) as i32;
        if diff > 0 {
            now = mcu.clock.now();
            diff = next.wrapping_sub(now) as i32;
        }
        if diff > spin as i32 {
            break;
        }
        if diff < -(MAX_TIMER_LATENESS as i32) {
            mcu.try_shutdown(RESCHEDULED_IN_PAST);
            break;
        }
        while diff > 0 {
            now = mcu.clock.now();
            diff = next.wrapping_sub(now) as i32;
        }
        let Some((waketime, id)) = mcu.timers.pop() else {
            break;
        };
        match mcu.run_timer(id, waketime) {
            Ok(TimerResult::Done) => {}
            Ok(TimerResult::Reschedule(t)) => mcu.timers.insert(id, t),
            Err(reason) => {
                mcu.shutdown(reason);
                break;
            }
        }
    }
}

/// Where the simulated board's control socket goes: beside the pty link.
fn sim_control_path(link: &std::path::Path) -> PathBuf {
    let mut p = link.as_os_str().to_owned();
    p.push(".sim");
    PathBuf::from(p)
}

fn run(
    mcu: &mut Mcu,
    console: &mut Console,
    mut watchdog: Option<&mut Watchdog>,
    mut sim: Option<&mut SimControl>,
    wait_mask: &libc::sigset_t,
) {
    let fd = console.raw_fd();
    let (mut input_ready, mut sim_ready) = (true, true);
    let mut last_input_check = mcu.clock.now();
    let mut margin = WakeMargin {
        ticks: TIMER_MIN_TRY_TICKS,
    };
    let mut asked: Option<u32>;
    let mut wake_timer = match clock::WakeTimer::new() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("klipper_mcu: timerfd_create: {e}");
            std::process::exit(1);
        }
    };
    loop {
        if TERMINATE.load(Ordering::Relaxed) {
            return;
        }
        let start = mcu.clock.now();
        run_timers(mcu, margin.ticks);
        // Only read what poll said is there: a pass woken by a timer
        // costs no system call for input.
        if input_ready {
            console.process_input(mcu);
            last_input_check = start;
            input_ready = false;
        }
        if sim_ready {
            if let Some(c) = sim.as_deref_mut() {
                c.poll();
            }
            sim_ready = false;
        }
        mcu.run_tasks();
        if let Some(w) = watchdog.as_deref_mut() {
            w.feed(mcu.clock.now());
        }
        let cur = mcu.clock.now();
        mcu.stats_update(start, cur);
        console.flush(&mut mcu.out);

        // A pass that does not sleep cannot know what arrived meanwhile:
        // look at the input again after INPUT_CHECK_TICKS, so a busy
        // stretch (fast stepping) never holds back the host's commands,
        // without a system call on every pass.
        if cur.wrapping_sub(last_input_check) >= INPUT_CHECK_TICKS {
            input_ready = true;
            sim_ready = true;
            // The termination signals are let in only by ppoll, which a
            // step burst can keep the loop from reaching for its whole
            // length: look for one pending as often as for input.
            if termination_pending() {
                return;
            }
        }
        // A task that woke itself (more data waiting) runs again at once.
        if mcu.tasks != 0 {
            continue;
        }
        // Sleep until input, the next timer or the next watchdog feed.
        let mut wake = mcu.timers.next_wake();
        if let Some(w) = watchdog.as_deref() {
            let f = w.next_feed();
            wake = Some(wake.map_or(f, |t| if clock::is_before(f, t) { f } else { t }));
        }
        asked = None;
        match wake.map(|t| mcu.clock.monotonic_at(t)) {
            // Due (or nearly): no sleep.
            Some((_, diff)) if diff <= margin.ticks as i32 => continue,
            Some((ns, _)) => {
                let early = margin.ticks as u64 * 20;
                wake_timer.arm(ns - early);
                asked = wake.map(|t| t.wrapping_sub(margin.ticks));
            }
            None => wake_timer.disarm(),
        }
        let events = if mcu.out.is_empty() {
            libc::POLLIN
        } else {
            libc::POLLIN | libc::POLLOUT
        };
        let mut pfd = [
            libc::pollfd {
                fd,
                events,
                revents: 0,
            },
            libc::pollfd {
                fd: wake_timer.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            // Ignored (fd -1) unless the simulated board is in use.
            libc::pollfd {
                fd: sim.as_deref().map_or(-1, |c| c.raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let n = unsafe { libc::ppoll(pfd.as_mut_ptr(), 3, std::ptr::null(), wait_mask) };
        // On an error (EINTR) look at everything once.
        input_ready = n < 0 || pfd[0].revents != 0;
        sim_ready = n < 0 || pfd[2].revents != 0;
        if pfd[1].revents != 0 {
            if let Some(a) = asked {
                margin.observe(a, mcu.clock.now());
            }
        }
    }
}

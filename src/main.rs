//! klipper_mcu: Klipper's Linux host MCU.
// Our own C `main` instead of std's (see `main` below).
// Not in `cargo test`'s build of this file, whose harness brings its own.
#![cfg_attr(not(test), no_main)]

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use klipper_mcu::commands::{self, Dialect};
use klipper_mcu::console::Console;
use klipper_mcu::hw::Board;
use klipper_mcu::mcu::{Mcu, STARTING};
use klipper_mcu::restart::{self, Watchdog};
use klipper_mcu::runtime;
use klipper_mcu::{elog, out, out_raw};

const USAGE: &str = "\
Usage: klipper_mcu [-w] [-r] [-I PATH]
Klipper's Linux host MCU: lets klippy use this computer's GPIO, SPI, I2C,
PWM and ADC lines as one more micro-controller.

  -I PATH     link the MCU's pseudo-terminal at PATH (default /tmp/klipper_host_mcu);
              point klippy's [mcu] serial: at it
  -r          real-time: SCHED_FIFO scheduling and locked memory
              (needs CAP_SYS_NICE and a memlock limit)
  -w          feed the hardware watchdog /dev/watchdog
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

/// The simulated board's option, in builds that have it (`--features sim`).
#[cfg(feature = "sim")]
const USAGE_SIM: &str = "\
  --sim       use a simulated board instead of this computer's hardware; its
              control socket (a Unix datagram socket) is PATH.sim: send
              'set gpio17 1', 'get gpio17', 'history gpio17 20', 'clock'
";
#[cfg(not(feature = "sim"))]
const USAGE_SIM: &str = "";

#[cfg(feature = "sim")]
use klipper_mcu::hw::sim::SimControl;

/// Builds without the simulator have no control socket.
#[cfg(not(feature = "sim"))]
struct SimControl;

#[cfg(not(feature = "sim"))]
impl SimControl {
    fn raw_fd(&self) -> i32 {
        -1
    }
    fn poll(&mut self) {}
}

/// The simulated board and its control socket beside the pty link.
#[cfg(feature = "sim")]
fn sim_board(o: &Options) -> Result<(Board, SimControl), String> {
    let (board, state) = Board::sim(o.dev_root.clone(), o.sysfs_root.clone());
    let mut path = o.path.as_os_str().to_owned();
    path.push(".sim");
    Ok((board, SimControl::bind(&PathBuf::from(path), state)?))
}

#[cfg(not(feature = "sim"))]
fn sim_board(_: &Options) -> Result<(Board, SimControl), String> {
    Err("--sim: this build has no simulated board (cargo build --features sim)".into())
}

struct Options {
    path: PathBuf,
    sim: bool,
    dev_root: PathBuf,
    sysfs_root: PathBuf,
    dialect: Dialect,
    realtime: bool,
    watchdog: bool,
}

/// The command line, read as bytes (`OsString`): a path need not be
/// UTF-8.
fn parse_args(args: &[OsString]) -> Result<Options, String> {
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
        let a = args[i].as_bytes();
        match a {
            b"--help" | b"-h" => {
                out_raw!("{USAGE}{USAGE_SIM}");
                std::process::exit(0);
            }
            b"--check" => {
                let path = PathBuf::from(args.get(i + 1).ok_or("--check needs the pty link path")?);
                match klipper_mcu::health::check(&path) {
                    Ok(msg) => {
                        out!("healthy: {msg}");
                        std::process::exit(0);
                    }
                    Err(msg) => {
                        out!("unhealthy: {msg}");
                        std::process::exit(1);
                    }
                }
            }
            b"--sim" if cfg!(feature = "sim") => o.sim = true,
            b"--sim" => return Err(sim_board(&o).err().unwrap_or_default()),
            b"--dialect" => {
                i += 1;
                o.dialect = match args.get(i).map(|a| a.as_bytes()) {
                    Some(b"klipper") => Dialect::Klipper,
                    Some(b"kalico") => Dialect::Kalico,
                    _ => return Err("--dialect takes klipper or kalico".into()),
                };
            }
            b"--sysfs-root" => {
                i += 1;
                o.sysfs_root = PathBuf::from(args.get(i).ok_or("--sysfs-root needs a folder")?);
            }
            b"--dev-root" => {
                i += 1;
                o.dev_root = PathBuf::from(args.get(i).ok_or("--dev-root needs a folder")?);
            }
            b"--version" => {
                out!("klipper_mcu {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            _ if a.starts_with(b"-") && a.len() > 1 && !a.starts_with(b"--") => {
                // getopt-style clusters: -rw, -I PATH, -IPATH
                let mut j = 1;
                while j < a.len() {
                    match a[j] {
                        b'r' => o.realtime = true,
                        b'w' => o.watchdog = true,
                        b'I' => {
                            let rest = &a[j + 1..];
                            if !rest.is_empty() {
                                o.path = PathBuf::from(OsStr::from_bytes(rest));
                            } else {
                                i += 1;
                                o.path = PathBuf::from(args.get(i).ok_or("-I needs a path")?);
                            }
                            break;
                        }
                        _ => {
                            let c = String::from_utf8_lossy(&a[j..]);
                            let c = c.chars().next().unwrap_or('?');
                            return Err(format!("unknown option -{c}"));
                        }
                    }
                    j += 1;
                }
            }
            _ => return Err(format!("unexpected argument {}", args[i].to_string_lossy())),
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
fn install_signal_handlers() -> nix::sys::signal::SigSet {
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
    old
}

/// The C entry point, in place of std's: std's start-up asks glibc for
/// the main thread's stack bounds (which parses /proc/self/maps with
/// stdio and scanf) and maps an alternate signal stack to report stack
/// overflows, all code and pages an idle MCU then keeps resident. What
/// else std does before `main` is kept: standard descriptors that are
/// closed are opened on /dev/null (or the pty could become stderr), and
/// SIGPIPE is ignored (`install_signal_handlers` sets it again).
/// `std::env::args_os` works without std's `main` on glibc (its
/// arguments come from an `.init_array` hook).
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: plain system calls on descriptors 0..=2 and a signal
    // disposition, before any other thread exists.
    unsafe {
        for fd in 0..=2 {
            if libc::fcntl(fd, libc::F_GETFD) == -1
                && *libc::__errno_location() == libc::EBADF
                && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) != fd
            {
                libc::abort();
            }
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    run();
    0
}

#[cfg_attr(test, allow(dead_code))]
fn run() {
    // args_os: std::env::args panics on an argument that is not UTF-8.
    let args: Vec<OsString> = std::env::args_os().collect();
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            elog!("klipper_mcu: {e}\n\n{USAGE}{USAGE_SIM}");
            std::process::exit(2);
        }
    };
    let argv: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_bytes()).expect("arguments have no NUL"))
        .collect();

    // Sleep precisely: the default 50 us of timer slack would delay every
    // wake-up for a timer.
    let _ = nix::sys::prctl::set_timerslack(1);

    if opts.realtime {
        if let Err(e) = restart::realtime_setup() {
            elog!("klipper_mcu: {e}");
            std::process::exit(1);
        }
    }
    // Never take the link of a live MCU: its host would lose it.
    if let Ok((tty, pid)) = klipper_mcu::health::holder(&opts.path) {
        elog!(
            "klipper_mcu: {} is in use: klipper_mcu pid {pid} holds its terminal {}; \
             leaving it alone. Stop that process first, or pass another path with -I.",
            opts.path.display(),
            tty.display()
        );
        std::process::exit(1);
    }
    let mut console = match Console::open(&opts.path) {
        Ok(c) => c,
        Err(e) => {
            elog!("klipper_mcu: {e}");
            std::process::exit(1);
        }
    };
    let mut watchdog = if opts.watchdog {
        match Watchdog::open() {
            Ok(w) => Some(w),
            Err(e) => {
                elog!("klipper_mcu: {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    let wait_mask = install_signal_handlers();

    // Building the data dictionary needs a few hundred KB for a moment
    // (JSON, compression): while it runs, blocks this large come from
    // their own mappings and go back to the kernel when freed, so the idle
    // MCU does not keep them resident. Then glibc's default again: the
    // simulated board grows its logs by realloc, which a mapping would
    // turn into page faults inside bit-banged timing.
    #[cfg(target_env = "gnu")]
    // SAFETY: plain settings of the allocator, before any other thread.
    let registry = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 16 * 1024);
        let r = commands::registry(opts.dialect);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        // The dictionary's smaller blocks, freed, stay in the heap: give
        // their pages back now, or the reserves the MCU takes next (move
        // queue, timers) land on them and keep them resident unused.
        if !opts.sim {
            libc::malloc_trim(0);
        }
        r
    };
    #[cfg(not(target_env = "gnu"))]
    let registry = commands::registry(opts.dialect);
    let mut sim_control = None;
    let board = if opts.sim {
        match sim_board(&opts) {
            Ok((board, c)) => {
                sim_control = Some(c);
                board
            }
            Err(e) => {
                elog!("klipper_mcu: {e}");
                std::process::exit(1);
            }
        }
    } else {
        Board::linux(opts.dev_root.clone(), opts.sysfs_root.clone())
    };
    // One line to tell, in a log, which MCU started and how.
    elog!(
        "klipper_mcu {}: link {} (pty {}), dialect {}, realtime {}{}{}",
        env!("CARGO_PKG_VERSION"),
        opts.path.display(),
        console.tty_name().display(),
        match opts.dialect {
            Dialect::Klipper => "klipper",
            Dialect::Kalico => "kalico",
        },
        if opts.realtime { "on" } else { "off" },
        if opts.watchdog { ", watchdog" } else { "" },
        if opts.sim { ", simulated board" } else { "" },
    );
    let sim_fd = sim_control.as_ref().map(|c| c.raw_fd());
    let mut mcu = Mcu::new(registry, argv, board);
    // And what start-up freed in smaller blocks. Not for the simulated
    // board: it allocates as it logs, and a page given back would fault
    // in again inside a bit-banged pulse it is timing.
    #[cfg(target_env = "gnu")]
    if !opts.sim {
        // SAFETY: returns free heap pages to the kernel; no other thread.
        unsafe {
            libc::malloc_trim(0);
        }
    }
    // Start-up's code and read-only data (the dictionary's JSON and
    // compression above all) stay resident otherwise, 64 KB about each
    // page it touched. Not with the simulated board, for the same reason
    // as the trim above, nor under -r, which locks every page on purpose.
    if !opts.sim && !opts.realtime {
        klipper_mcu::pages::release_clean_file_pages();
    }
    mcu.send(&STARTING, &[]);
    let mut sim_poll = || {
        if let Some(c) = sim_control.as_mut() {
            c.poll();
        }
    };
    let aux = sim_fd.map(|fd| runtime::Aux {
        fd,
        poll: &mut sim_poll,
    });
    runtime::run(
        &mut mcu,
        &mut console,
        watchdog.as_mut(),
        aux,
        &wait_mask,
        &TERMINATE,
    );
    console.flush(&mut mcu.out);
    console.unlink();
    if mcu.out.dropped != 0 {
        elog!(
            "klipper_mcu: {} messages were dropped because the host was not reading",
            mcu.out.dropped
        );
    }
}

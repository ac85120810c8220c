//! The main loop's scheduler, driven in-process (no pty, no child
//! process): steppers configured through `dispatch_block` step on the
//! simulated board when `runtime::run_timers` runs their timers.

use std::ffi::CString;
use std::time::{Duration, Instant};

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use klipper_mcu::commands::{registry, Dialect};
use klipper_mcu::hw::Board;
use klipper_mcu::mcu::{Mcu, TimerId};
use klipper_mcu::runtime;
use klipper_mcu::sched::{TimerFn, TimerResult, MAX_TIMER_LATENESS};
use klipper_mcu::shutdown::Shutdown;
use klipper_protocol::dictionary::Dictionary;
use klipper_protocol::host::HostCodec;

fn send(mcu: &mut Mcu, codec: &mut HostCodec, cmds: &[String]) {
    let enc: Vec<Vec<u8>> = cmds.iter().map(|c| codec.encode_text(c).unwrap()).collect();
    let block = codec.frame_all(&enc);
    mcu.dispatch_block(&block);
    let n = mcu.out.pending().len();
    mcu.out.consume(n);
}

/// The host's end of the MCU's pty, raw; reads return after at most
/// 0.1 s, so a silent MCU cannot hang a test.
fn open_host(link: &std::path::Path) -> std::fs::File {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(link)
        .unwrap();
    let mut t = nix::sys::termios::tcgetattr(&tty).unwrap();
    nix::sys::termios::cfmakeraw(&mut t);
    t.control_chars[nix::sys::termios::SpecialCharacterIndices::VMIN as usize] = 0;
    t.control_chars[nix::sys::termios::SpecialCharacterIndices::VTIME as usize] = 1;
    nix::sys::termios::tcsetattr(&tty, nix::sys::termios::SetArg::TCSANOW, &t).unwrap();
    tty
}

#[test]
fn steppers_step_on_time_in_process() {
    let reg = registry(Dialect::Klipper);
    let mut codec = HostCodec::new();
    codec.dict = Dictionary::from_compressed(&reg.dictionary).unwrap();
    let tmp = std::env::temp_dir();
    let (board, state) = Board::sim(tmp.clone(), tmp);
    let mut mcu = Mcu::new(reg, vec![CString::new("t").unwrap()], board);
    let (steps, interval) = (50u32, 2_000u32);
    send(&mut mcu, &mut codec, &["allocate_oids count=4".into()]);
    for oid in 0..2 {
        let (step, dir) = (10 + 2 * oid, 11 + 2 * oid);
        send(
            &mut mcu,
            &mut codec,
            &[format!(
                "config_stepper oid={oid} step_pin={step} dir_pin={dir} invert_step=0 step_pulse_ticks=100"
            )],
        );
    }
    send(&mut mcu, &mut codec, &["finalize_config crc=0".into()]);
    // Far enough ahead that a loaded machine still queues in time.
    let start = mcu.clock.now().wrapping_add(25_000_000);
    for oid in 0..2 {
        send(
            &mut mcu,
            &mut codec,
            &[
                format!("reset_step_clock oid={oid} clock={start}"),
                format!("queue_step oid={oid} interval={interval} count={steps} add=0"),
            ],
        );
    }
    let t0 = Instant::now();
    while !mcu.timers.is_empty() && t0.elapsed() < Duration::from_secs(30) {
        let input_due = mcu.clock.now().wrapping_add(runtime::INPUT_CHECK_TICKS);
        runtime::run_timers(&mut mcu, runtime::TIMER_MIN_TRY_TICKS, input_due);
        mcu.run_tasks();
    }
    assert!(!mcu.is_shutdown());
    assert!(mcu.timers.is_empty(), "timers left after 30 s");
    let st = state.borrow();
    for pin in [10u32, 12] {
        let rises: Vec<_> = st
            .history(pin, 1000)
            .into_iter()
            .filter(|e| e.value)
            .collect();
        assert_eq!(rises.len(), steps as usize, "pin {pin}");
        // Every step at or after its scheduled time, never before.
        for (k, e) in rises.iter().enumerate() {
            let due = start.wrapping_add(interval * (k as u32 + 1));
            assert!(e.clock.wrapping_sub(due) as i32 >= 0, "step {k} early");
        }
    }
}

/// Run the whole loop in-process (`runtime::run`) while `host` talks to
/// it through its pty from another thread; the loop stops when the host
/// is done. Returns what the host returned and the MCU.
fn serve<T: Send + 'static>(
    tag: &str,
    host: impl FnOnce(&mut std::fs::File, &mut HostCodec) -> T + Send + 'static,
) -> (T, Mcu) {
    let reg = registry(Dialect::Klipper);
    let dir = std::env::temp_dir().join(format!("kmcu_{tag}_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("tty");
    let mut console = klipper_mcu::console::Console::open(&link).unwrap();
    let tmp = std::env::temp_dir();
    let (board, _state) = Board::sim(tmp.clone(), tmp);
    let mut mcu = Mcu::new(reg, vec![CString::new("t").unwrap()], board);
    let stop = Arc::new(AtomicBool::new(false));
    let dict = reg.dictionary.clone();
    let thread = {
        let (stop, link) = (stop.clone(), link.clone());
        std::thread::spawn(move || -> T {
            let mut tty = open_host(&link);
            let mut codec = HostCodec::new();
            codec.dict = Dictionary::from_compressed(&dict).unwrap();
            let r = host(&mut tty, &mut codec);
            // Stop, and wake the loop from its wait with one more command.
            stop.store(true, Ordering::Relaxed);
            let block = codec.frame_all(&[codec.encode_text("get_clock").unwrap()]);
            tty.write_all(&block).unwrap();
            r
        })
    };
    let mask = nix::sys::signal::SigSet::empty();
    runtime::run(&mut mcu, &mut console, None, None, &mask, &stop);
    let r = thread.join().unwrap();
    console.unlink();
    let _ = std::fs::remove_dir_all(&dir);
    (r, mcu)
}

/// Read what the MCU sends for at most `limit`, until `done` says so;
/// each message goes to `seen`.
fn read_until(
    tty: &mut std::fs::File,
    codec: &mut HostCodec,
    limit: Duration,
    mut seen: impl FnMut(&klipper_protocol::host::Response) -> bool,
) {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < limit {
        let n = tty.read(&mut buf).unwrap();
        for b in codec.feed(&buf[..n]) {
            for r in codec.decode(&b.payload).unwrap() {
                if seen(&r) {
                    return;
                }
            }
        }
    }
}

/// The whole loop in-process: `runtime::run` serves a host on its pty
/// (from another thread) until the stop flag is set.
#[test]
fn the_loop_answers_on_its_pty_until_stopped() {
    let (names, mcu) = serve("runtime", |tty, codec| {
        let cmds = ["get_clock", "get_uptime"].map(|c| codec.encode_text(c).unwrap());
        tty.write_all(&codec.frame_all(&cmds)).unwrap();
        let mut names = Vec::new();
        read_until(tty, codec, Duration::from_secs(20), |r| {
            names.push(r.name.clone());
            names.len() >= 2
        });
        names
    });
    assert!(names.contains(&"clock".to_string()), "{names:?}");
    assert!(names.contains(&"uptime".to_string()), "{names:?}");
    assert!(!mcu.is_shutdown());
}

/// An idle loop still reports `stats` about every 5 s, as the reference
/// does (klippy's `mcu_awake` and `mcu_task_avg` come from them), and
/// wakes for little else: the report counts the loop's passes.
#[test]
fn an_idle_loop_reports_stats_and_sleeps() {
    let (stats, _mcu) = serve("idle", |tty, codec| {
        // Say nothing: wait for two reports (the second covers a whole
        // idle period), 30 s at most.
        let mut stats = Vec::new();
        read_until(tty, codec, Duration::from_secs(30), |r| {
            if r.name == "stats" {
                stats.push(r.int("count"));
            }
            stats.len() >= 2
        });
        stats
    });
    assert_eq!(stats.len(), 2, "idle for 30 s, reports: {stats:?}");
    // An idle pass costs a wake-up: a few per report (the report's own,
    // the host's open), never a spinning loop's millions.
    assert!(stats[1] < 100, "loop passes while idle: {stats:?}");
}

/// A bare MCU on the simulated board, for driving timers by hand.
fn bare_mcu() -> (Mcu, HostCodec) {
    let reg = registry(Dialect::Klipper);
    let mut codec = HostCodec::new();
    codec.dict = Dictionary::from_compressed(&reg.dictionary).unwrap();
    let tmp = std::env::temp_dir();
    let (board, _state) = Board::sim(tmp.clone(), tmp);
    (
        Mcu::new(reg, vec![CString::new("t").unwrap()], board),
        codec,
    )
}

/// The shutdown reasons the MCU sent so far, as static string ids.
fn shutdown_ids(mcu: &mut Mcu, codec: &mut HostCodec) -> Vec<i64> {
    let out = mcu.out.pending().to_vec();
    mcu.out.consume(out.len());
    let mut ids = Vec::new();
    for b in codec.feed(&out) {
        for r in codec.decode(&b.payload).unwrap() {
            if r.name == "shutdown" {
                ids.push(r.int("static_string_id"));
            }
        }
    }
    ids
}

/// A bare MCU that finds timer `func` three times the allowed lateness
/// behind, after one pass of `run_timers`.
fn run_timer_found_late(func: TimerFn<Mcu>) -> (Mcu, HostCodec) {
    let (mut mcu, codec) = bare_mcu();
    let late = mcu.clock.now().wrapping_sub(3 * MAX_TIMER_LATENESS);
    mcu.timers.insert(TimerId::new(func, 0), late);
    let input_due = mcu.clock.now();
    runtime::run_timers(&mut mcu, runtime::TIMER_MIN_TRY_TICKS, input_due);
    (mcu, codec)
}

static LATE_RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn late_once(_: &mut Mcu, _: u32, _: u32) -> Result<TimerResult, Shutdown> {
    LATE_RUNS.fetch_add(1, Ordering::Relaxed);
    Ok(TimerResult::Done)
}

/// One timer found far behind (the process was not scheduled for a while
/// on a loaded machine) runs late, as in the reference: it is no runaway.
#[test]
fn a_timer_found_late_runs_without_a_shutdown() {
    let (mut mcu, mut codec) = run_timer_found_late(late_once);
    assert_eq!(LATE_RUNS.load(Ordering::Relaxed), 1);
    assert!(!mcu.is_shutdown());
    assert!(mcu.timers.is_empty());
    assert_eq!(shutdown_ids(&mut mcu, &mut codec), Vec::<i64>::new());
}

/// Always due again one tick after it ran: never catches up.
fn never_catches_up(_: &mut Mcu, _: u32, waketime: u32) -> Result<TimerResult, Shutdown> {
    Ok(TimerResult::Reschedule(waketime.wrapping_add(1)))
}

/// Timers still far behind after a run of them are a runaway: "Rescheduled
/// timer in the past", as the reference.
#[test]
fn timers_that_never_catch_up_shut_down() {
    let (mut mcu, mut codec) = run_timer_found_late(never_catches_up);
    assert!(mcu.is_shutdown());
    let want = mcu
        .registry
        .static_string_id("Rescheduled timer in the past") as i64;
    assert_eq!(shutdown_ids(&mut mcu, &mut codec), vec![want]);
}

//! The main loop, in the library so that tests can drive it in-process:
//! run due timers, read and dispatch the input, run woken tasks, write the
//! output, then sleep in `ppoll` until input or the next timer.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::signal::SigSet;

use crate::clock::{self, from_us};
use crate::commands::stepper;
use crate::console::Console;
use crate::mcu::Mcu;
use crate::restart::Watchdog;
use crate::sched::{TimerFn, TimerResult, MAX_TIMER_LATENESS, RESCHEDULED_IN_PAST};

/// One more file descriptor the loop watches, and what to do when it is
/// readable (the simulated board's control socket).
pub struct Aux<'a> {
    pub fd: i32,
    pub poll: &'a mut dyn FnMut(),
}

/// Timers due within this many ticks are waited for by spinning.
pub const TIMER_MIN_TRY_TICKS: u32 = from_us(2);
/// How often a loop too busy to sleep still looks at its input.
pub const INPUT_CHECK_TICKS: u32 = from_us(50);
/// Timers run back to back before the loop looks at its tasks and input
/// (the reference's TIMER_REPEAT_COUNT) ...
const TIMER_REPEAT_COUNT: u32 = 20;
/// ... and how many more when no task waits and the input is not due for
/// a look (its TIMER_IDLE_REPEAT_COUNT): a step burst does not pay a pass
/// of the loop every 20 edges.
const TIMER_IDLE_REPEAT_COUNT: u32 = 100;

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

/// Run due timers, spinning for one due within `spin` ticks. After
/// [`TIMER_REPEAT_COUNT`] of them in a row, stop if a task waits or the
/// clock has reached `input_due` (when the loop must look at its input),
/// else go on for [`TIMER_IDLE_REPEAT_COUNT`] more.
///
/// As the reference's timer dispatch: timers due by the latest clock
/// reading (a step event reads the clock itself) run back to back with no
/// reading of their own. That reading may be older than the caller's last
/// sleep: it only lets timers due by then run without a fresh one.
pub fn run_timers(mcu: &mut Mcu, spin: u32, input_due: u32) {
    let mut repeat = TIMER_REPEAT_COUNT;
    while let Some(next) = mcu.timers.next_wake() {
        let mut diff = next.wrapping_sub(mcu.clock.last_read()) as i32;
        if diff > 0 || repeat == 0 {
            diff = next.wrapping_sub(mcu.clock.now()) as i32;
            if diff > spin as i32 {
                break;
            }
        }
        if repeat == 0 {
            // As the reference: only timers still far behind after a run
            // of them is a runaway. One late timer (the process was not
            // scheduled for a while on a loaded machine) just runs late.
            if diff < -(MAX_TIMER_LATENESS as i32) {
                mcu.try_shutdown(RESCHEDULED_IN_PAST);
                break;
            }
            if mcu.tasks != 0 || !clock::is_before(mcu.clock.last_read(), input_due) {
                break;
            }
            repeat = TIMER_IDLE_REPEAT_COUNT;
        }
        while diff > 0 {
            diff = next.wrapping_sub(mcu.clock.now()) as i32;
        }
        let Some((waketime, id)) = mcu.timers.pop() else {
            break;
        };
        repeat -= 1;
        // The step timer called directly, so the compiler can inline it
        // into this loop (the reference's CONFIG_INLINE_STEPPER_HACK):
        // the hottest timer by far, and the one a burst runs back to back.
        let step: TimerFn<Mcu> = stepper::step_event;
        let result = if id.func as usize == step as usize {
            stepper::step_event_inline(mcu, id.arg, waketime)
        } else {
            mcu.run_timer(id, waketime)
        };
        match result {
            Ok(TimerResult::Done) => {}
            Ok(TimerResult::Reschedule(t)) => mcu.timers.insert(id, t),
            Err(reason) => {
                mcu.shutdown(reason);
                break;
            }
        }
    }
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

/// Run the loop until `stop` is set (by a signal handler, or a test).
/// `wait_mask` is the signal mask to wait with (see `ppoll`).
pub fn run(
    mcu: &mut Mcu,
    console: &mut Console,
    mut watchdog: Option<&mut Watchdog>,
    mut sim: Option<Aux<'_>>,
    wait_mask: &SigSet,
    stop: &AtomicBool,
) {
    let fd = console.raw_fd();
    let (mut input_ready, mut sim_ready, mut polled) = (true, true, false);
    let mut last_input_check = mcu.clock.now();
    let mut margin = WakeMargin {
        ticks: TIMER_MIN_TRY_TICKS,
    };
    let mut asked: Option<u32>;
    let mut wake_timer = match clock::WakeTimer::new() {
        Ok(t) => t,
        Err(e) => {
            elog!("klipper_mcu: timerfd_create: {e}");
            return;
        }
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let start = mcu.clock.now();
        if polled {
            // ppoll just reported the input and let the signals in: that
            // was the input check, and it need not be repeated for
            // INPUT_CHECK_TICKS (no read and sigpending after every
            // timer wake-up).
            last_input_check = start;
            polled = false;
        }
        run_timers(
            mcu,
            margin.ticks,
            last_input_check.wrapping_add(INPUT_CHECK_TICKS),
        );
        // Only read what poll said is there: a pass woken by a timer
        // costs no system call for input.
        if input_ready {
            console.process_input(mcu);
            last_input_check = start;
            input_ready = false;
        }
        if sim_ready {
            if let Some(c) = sim.as_mut() {
                (c.poll)();
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
        // Sleep until input, the next timer, the next watchdog feed or the
        // next statistics report.
        let earliest = |a: Option<u32>, b: u32| {
            Some(a.map_or(b, |t| if clock::is_before(b, t) { b } else { t }))
        };
        let mut wake = earliest(mcu.timers.next_wake(), mcu.stats.next_send());
        if let Some(w) = watchdog.as_deref() {
            wake = earliest(wake, w.next_feed());
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
            PollFlags::POLLIN
        } else {
            PollFlags::POLLIN | PollFlags::POLLOUT
        };
        // SAFETY: the console, the timer and the control socket stay open
        // for the whole call.
        let borrow = |fd: i32| unsafe { BorrowedFd::borrow_raw(fd) };
        let timer_fd = borrow(wake_timer.raw_fd());
        let mut pfd = [
            PollFd::new(borrow(fd), events),
            PollFd::new(timer_fd, PollFlags::POLLIN),
            // Watched only when the simulated board is in use.
            PollFd::new(
                sim.as_ref().map_or(timer_fd, |c| borrow(c.fd)),
                PollFlags::POLLIN,
            ),
        ];
        let nfds = if sim.is_some() { 3 } else { 2 };
        let r = ppoll(&mut pfd[..nfds], None, Some(*wait_mask));
        polled = true;
        let ready = |p: &PollFd| p.revents().is_some_and(|e| !e.is_empty());
        // On an error (EINTR) look at everything once.
        input_ready = r.is_err() || ready(&pfd[0]);
        sim_ready = r.is_err() || (nfds == 3 && ready(&pfd[2]));
        if r.is_err() {
            wake_timer.expired();
        }
        if ready(&pfd[1]) {
            wake_timer.expired();
            if let Some(a) = asked {
                margin.observe(a, mcu.clock.now());
            }
        }
    }
}

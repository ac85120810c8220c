//! The MCU clock: 50 MHz ticks derived from CLOCK_MONOTONIC. Commands see
//! the low 32 bits, which wrap about every 86 s; `get_uptime` adds the high
//! word. Comparisons between 32-bit times go through [`is_before`].

use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{
    ClockId as TimerClock, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags,
};
use nix::time::{clock_gettime, ClockId};

pub const CLOCK_FREQ: u32 = 50_000_000;
const NSECS_PER_TICK: u64 = 1_000_000_000 / CLOCK_FREQ as u64;

/// Ticks in `us` microseconds.
#[inline]
pub const fn from_us(us: u32) -> u32 {
    us * (CLOCK_FREQ / 1_000_000)
}

/// True if `a` comes before `b`, allowing for wrap-around.
#[inline]
pub fn is_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The most one transfer may busy-wait in all (software SPI and I2C, the
/// LCDs, neopixel). The host chooses the bit times; a value meant as a
/// joke (or a corrupted one) must not hold the loop for minutes.
pub const MAX_SPIN_TICKS: u32 = from_us(10_000);

/// A busy-wait allowance for one transfer: waits end at their own time or
/// when the allowance is spent, whichever comes first, so a transfer
/// stalls the loop by at most [`MAX_SPIN_TICKS`] whatever the host's bit
/// times (past the allowance the remaining bits go out unpaced).
#[derive(Debug, Clone, Copy)]
pub struct Spin {
    deadline: u32,
}

impl Spin {
    pub fn start(clock: &Clock) -> Spin {
        Spin {
            deadline: clock.now().wrapping_add(MAX_SPIN_TICKS),
        }
    }

    /// An allowance already spent (a placeholder until a transfer starts).
    pub const fn spent() -> Spin {
        Spin { deadline: 0 }
    }

    /// What is left of the allowance at `now` (never more than the whole
    /// allowance, whatever the wrapping).
    #[inline]
    fn left(&self, now: u32) -> u32 {
        (self.deadline.wrapping_sub(now) as i32).clamp(0, MAX_SPIN_TICKS as i32) as u32
    }

    /// Busy-wait until `end` (or the allowance's end if sooner); an `end`
    /// half the clock's range or more ahead counts as past. Returns the
    /// time read last.
    #[inline]
    pub fn until(&self, clock: &Clock, end: u32) -> u32 {
        let start = clock.now();
        let to_end = (end.wrapping_sub(start) as i32).max(0) as u32;
        spin_for(clock, start, to_end.min(self.left(start)))
    }

    /// Busy-wait `ticks` from now (within the allowance).
    #[inline]
    pub fn delay(&self, clock: &Clock, ticks: u32) -> u32 {
        let start = clock.now();
        spin_for(clock, start, ticks.min(self.left(start)))
    }

    /// Busy-wait until `ticks` have passed since `since` (within the
    /// allowance); a `since` from long ago counts as passed.
    #[inline]
    pub fn since(&self, clock: &Clock, since: u32, ticks: u32) -> u32 {
        let start = clock.now();
        let to_go = ticks.saturating_sub(start.wrapping_sub(since));
        spin_for(clock, start, to_go.min(self.left(start)))
    }
}

/// Busy-wait until `ticks` have passed since `start`; the time then.
/// Unbounded: for the program's own short timings; a duration the host
/// gives goes through [`Spin`].
#[inline]
pub fn spin_for(clock: &Clock, start: u32, ticks: u32) -> u32 {
    loop {
        let now = clock.now();
        if now.wrapping_sub(start) >= ticks {
            return now;
        }
        std::hint::spin_loop();
    }
}

#[inline]
fn monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC cannot fail.
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).unwrap_or(TimeSpec::new(0, 0));
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// The clock, counting from the moment the process started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start_ns: u64,
}

/// Every [`Clock`] in the process counts from the same moment, so the
/// simulated board's timestamps are the MCU's.
static START_NS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// The low 32 bits of the latest reading of any [`Clock`]: a time that has
/// surely passed, so the timer loop can run a timer due by it without a
/// reading of its own (a step event reads the clock anyway).
static LAST_READ: AtomicU32 = AtomicU32::new(0);

impl Clock {
    pub fn new() -> Clock {
        Clock {
            start_ns: *START_NS.get_or_init(monotonic_ns),
        }
    }

    /// The full 64-bit tick count.
    #[inline]
    pub fn now64(&self) -> u64 {
        let t = (monotonic_ns() - self.start_ns) / NSECS_PER_TICK;
        LAST_READ.store(t as u32, Ordering::Relaxed);
        t
    }

    /// The latest reading (of any clock in the process): at most now.
    #[inline]
    pub fn last_read(&self) -> u32 {
        LAST_READ.load(Ordering::Relaxed)
    }

    /// The 32-bit clock commands and timers use.
    #[inline]
    pub fn now(&self) -> u32 {
        self.now64() as u32
    }

    /// The CLOCK_MONOTONIC time (ns) of clock time `t`, which must lie
    /// within ±2^31 ticks of now; also how many ticks away it is.
    pub fn monotonic_at(&self, t: u32) -> (u64, i32) {
        let now = self.now64();
        let diff = t.wrapping_sub(now as u32) as i32;
        let ticks = (now as i64 + diff as i64).max(0) as u64;
        (self.start_ns + ticks * NSECS_PER_TICK, diff)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Wakes the loop at an absolute CLOCK_MONOTONIC time: a timerfd in the
/// loop's poll set. Unlike a poll timeout, which the kernel stretches by
/// 0.1 % of its length, a timerfd expires on time.
pub struct WakeTimer {
    fd: TimerFd,
    /// The expiry set and not yet reached, if any.
    armed: Option<u64>,
}

impl WakeTimer {
    pub fn new() -> std::io::Result<WakeTimer> {
        let fd = TimerFd::new(
            TimerClock::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        Ok(WakeTimer { fd, armed: None })
    }

    pub fn raw_fd(&self) -> i32 {
        use std::os::fd::{AsFd, AsRawFd};
        self.fd.as_fd().as_raw_fd()
    }

    /// Expire at monotonic time `ns`. Arming (or re-arming) also clears
    /// an expiry not yet read. Asking again for the pending expiry costs
    /// no system call (a loop woken by input sleeps again until the same
    /// time).
    pub fn arm(&mut self, ns: u64) {
        let ns = ns.max(1);
        if self.armed == Some(ns) {
            return;
        }
        let t = TimeSpec::new((ns / 1_000_000_000) as _, (ns % 1_000_000_000) as _);
        let _ = self
            .fd
            .set(Expiration::OneShot(t), TimerSetTimeFlags::TFD_TIMER_ABSTIME);
        self.armed = Some(ns);
    }

    /// The timer was seen expired (its fd is readable until re-armed).
    pub fn expired(&mut self) {
        self.armed = Some(0);
    }

    pub fn disarm(&mut self) {
        if self.armed.is_some() {
            let _ = self.fd.unset();
            self.armed = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_comparisons() {
        assert!(is_before(1, 2));
        assert!(!is_before(2, 1));
        assert!(!is_before(5, 5));
        assert!(is_before(0xffff_fff0, 0x10));
        assert!(!is_before(0x10, 0xffff_fff0));
    }

    #[test]
    fn runs_at_50mhz() {
        let c = Clock::new();
        let a = c.now64();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = c.now64();
        // At least 20 ms worth of ticks; generous upper bound for busy CI.
        assert!(b - a >= 1_000_000, "{}", b - a);
        assert!(b - a < 50_000_000);
        assert_eq!(from_us(1000), 50_000);
    }

    #[test]
    fn spins_are_bounded() {
        let c = Clock::new();
        let spin = Spin::start(&c);
        let t0 = c.now();
        // Unbounded, each of these would wait 21 to 43 s.
        spin.delay(&c, 0x4000_0000);
        spin.until(&c, t0.wrapping_add(0x4000_0000));
        spin.since(&c, t0, 0x4000_0000);
        spin.delay(&c, u32::MAX);
        spin.until(&c, c.now().wrapping_add(0x8000_0000));
        spin.until(&c, c.now().wrapping_add(0x7fff_ffff));
        let spent = c.now().wrapping_sub(t0);
        // At least the allowance; far less than one unbounded wait (a
        // loose bound: the machine may be busy).
        assert!(spent >= MAX_SPIN_TICKS, "{spent}");
        assert!(spent < 0x4000_0000, "{spent}");
        // A wait shorter than the allowance lasts its own time.
        let fresh = Spin::start(&c);
        let t2 = c.now();
        let end = fresh.delay(&c, from_us(100));
        assert!(end.wrapping_sub(t2) >= from_us(100));
    }
}

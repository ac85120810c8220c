//! The MCU clock: 50 MHz ticks derived from CLOCK_MONOTONIC. Commands see
//! the low 32 bits, which wrap about every 86 s; `get_uptime` adds the high
//! word. Comparisons between 32-bit times go through [`is_before`].

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

impl Clock {
    pub fn new() -> Clock {
        Clock {
            start_ns: *START_NS.get_or_init(monotonic_ns),
        }
    }

    /// The full 64-bit tick count.
    #[inline]
    pub fn now64(&self) -> u64 {
        (monotonic_ns() - self.start_ns) / NSECS_PER_TICK
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
    armed: bool,
}

impl WakeTimer {
    pub fn new() -> std::io::Result<WakeTimer> {
        let fd = TimerFd::new(
            TimerClock::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        Ok(WakeTimer { fd, armed: false })
    }

    pub fn raw_fd(&self) -> i32 {
        use std::os::fd::{AsFd, AsRawFd};
        self.fd.as_fd().as_raw_fd()
    }

    /// Expire at monotonic time `ns`. Arming (or re-arming) also clears
    /// an expiry not yet read.
    pub fn arm(&mut self, ns: u64) {
        let ns = ns.max(1);
        let t = TimeSpec::new((ns / 1_000_000_000) as _, (ns % 1_000_000_000) as _);
        let _ = self
            .fd
            .set(Expiration::OneShot(t), TimerSetTimeFlags::TFD_TIMER_ABSTIME);
        self.armed = true;
    }

    pub fn disarm(&mut self) {
        if self.armed {
            let _ = self.fd.unset();
            self.armed = false;
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
}

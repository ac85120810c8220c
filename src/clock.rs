//! The MCU clock: 50 MHz ticks derived from CLOCK_MONOTONIC. Commands see
//! the low 32 bits, which wrap about every 86 s; `get_uptime` adds the high
//! word. Comparisons between 32-bit times go through [`is_before`].

use std::time::Duration;

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
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // CLOCK_MONOTONIC cannot fail with a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The clock, counting from the moment the process started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start_ns: u64,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            start_ns: monotonic_ns(),
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

    /// How long from now until clock time `t` (zero if already past).
    pub fn until(&self, t: u32) -> Duration {
        let diff = t.wrapping_sub(self.now()) as i32;
        if diff <= 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(diff as u64 * NSECS_PER_TICK)
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
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
        std::thread::sleep(Duration::from_millis(20));
        let b = c.now64();
        // At least 20 ms worth of ticks; generous upper bound for busy CI.
        assert!(b - a >= 1_000_000, "{}", b - a);
        assert!(b - a < 50_000_000);
        assert_eq!(from_us(1000), 50_000);
    }
}

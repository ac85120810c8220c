//! Displays and bit-banged devices: HD44780 and ST7920 (GPIO), `tmcuart`
//! (single-wire UART to TMC drivers on GPIO), `neopixel`.
//!
//! As in the reference built for Linux (no `HAVE_STRICT_TIMING`), the LCD
//! command delays are the host's `delay_ticks` as given (no calibration),
//! and the short bit-banging delays busy-wait on the MCU clock. Every
//! busy-wait is bounded: a wait the host asks for is capped at
//! [`MAX_WAIT_TICKS`].
//!
//! Group conventions: see `crate::commands::accel`.

use crate::clock::{from_us, is_before, Clock};
use crate::command::Module;
use crate::mcu::Mcu;

pub mod hd44780;
pub mod neopixel;
pub mod st7920;
pub mod tmcuart;

/// The longest a single host-requested busy-wait (a command delay, the
/// neopixel reset time) may last; longer requests are cut to this, so a
/// bad argument cannot stall the loop for seconds.
pub const MAX_WAIT_TICKS: u32 = from_us(10_000);

pub fn modules() -> Vec<&'static Module<Mcu>> {
    vec![
        &hd44780::MODULE,
        &st7920::MODULE,
        &tmcuart::MODULE,
        &neopixel::MODULE,
    ]
}

/// Nanoseconds to clock ticks, rounded down (the LCDs' `nsecs_to_ticks`).
pub const fn ns_to_ticks(ns: u32) -> u32 {
    ns / (1_000_000_000 / crate::clock::CLOCK_FREQ)
}

/// Busy-wait `ticks` from now (the reference's `ndelay`).
#[inline]
pub fn ndelay(clock: &Clock, ticks: u32) {
    let end = clock.now().wrapping_add(ticks);
    while is_before(clock.now(), end) {
        std::hint::spin_loop();
    }
}

/// Busy-wait until `wait` ticks (capped at [`MAX_WAIT_TICKS`]) have passed
/// since `since`; returns the time read last.
#[inline]
pub fn wait_since(clock: &Clock, since: u32, wait: u32) -> u32 {
    let wait = wait.min(MAX_WAIT_TICKS);
    loop {
        let now = clock.now();
        if now.wrapping_sub(since) >= wait {
            return now;
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_conversions() {
        assert_eq!(ns_to_ticks(230), 11);
        assert_eq!(ns_to_ticks(270), 13);
        assert_eq!(ns_to_ticks(200), 10);
    }

    #[test]
    fn waits_are_bounded() {
        let c = Clock::new();
        let t0 = std::time::Instant::now();
        // Unbounded, this wait would last about 86 s.
        let since = c.now();
        let end = wait_since(&c, since, u32::MAX);
        assert!(end.wrapping_sub(since) >= MAX_WAIT_TICKS);
        assert!(t0.elapsed() < std::time::Duration::from_millis(500));
    }
}

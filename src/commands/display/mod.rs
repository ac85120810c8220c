//! Displays and bit-banged devices: HD44780 and ST7920 (GPIO), `tmcuart`
//! (single-wire UART to TMC drivers on GPIO), `neopixel`.
//!
//! As in the reference built for Linux (no `HAVE_STRICT_TIMING`), the LCD
//! command delays are the host's `delay_ticks` as given (no calibration),
//! and the short bit-banging delays busy-wait on the MCU clock. Every
//! busy-wait the host asks for is bounded: a transfer's waits share one
//! [`crate::clock::Spin`] allowance.
//!
//! Group conventions: see `crate::commands::accel`.

use crate::clock::Clock;
use crate::command::Module;
use crate::mcu::Mcu;

pub mod hd44780;
pub mod neopixel;
pub mod st7920;
pub mod tmcuart;

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
    crate::clock::spin_for(clock, clock.now(), ticks);
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
}

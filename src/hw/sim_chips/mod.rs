//! Simulated chips on the simulated board's buses, one file per family
//! group. Each group's `attach` adds its chips to the board at start-up;
//! their control requests arrive as `chip NAME ...` on the control socket.
//!
//! Bus assignments (so groups never collide):
//! - accel: spidev0.0-0.3 (SPI bus numbers 0-3), i2c.1 0x18-0x19, 0x68-0x69;
//! - thermo: spidev1.0-1.7 (256-263), spidev2.0-2.7 (512-519);
//! - probe: spidev3.0-3.7 (768-775), i2c.1 0x2a-0x2b, GPIO lines 40-59;
//! - display: GPIO lines 60-99;
//! - free for tests: spidev4.x and up (SPI bus numbers 1024 and up), which
//!   loop back, and GPIO lines 0-39 and 100 up, which no chip drives.

use super::sim::SimState;

pub mod accel;
pub mod display;
pub mod probe;
pub mod thermo;

/// Put every group's chips on the board.
pub fn attach(s: &mut SimState) {
    accel::attach(s);
    thermo::attach(s);
    probe::attach(s);
    display::attach(s);
}

/// The words of a control request after the chip's name, if it is to
/// chip `name`.
pub fn request_to<'a, 'b>(name: &str, words: &'a [&'b str]) -> Option<&'a [&'b str]> {
    match words {
        [first, rest @ ..] if *first == name => Some(rest),
        _ => None,
    }
}

/// A control request setting a number: store `value` when it parsed (and
/// passed the request's checks) and answer "ok", else the usage.
pub fn set<T>(field: &mut T, value: Option<T>, usage: &str) -> String {
    match value {
        Some(v) => {
            *field = v;
            "ok".into()
        }
        None => format!("error usage: {usage}"),
    }
}

//! Hardware behind small traits, each with a Linux implementation and a
//! simulated one (`--sim`).

pub mod linux_gpio;
pub mod sim;

use crate::command::Shutdown;

/// An input line's bias (klippy's `^` pull-up and `~` pull-down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bias {
    /// Leave the line's bias as it is.
    AsIs,
    PullUp,
    PullDown,
}

impl Bias {
    /// From a command's `pull_up` byte: positive pulls up, negative (as a
    /// signed byte) pulls down, zero leaves the line alone.
    pub fn from_arg(pull_up: u32) -> Bias {
        match pull_up as u8 as i8 {
            0 => Bias::AsIs,
            v if v > 0 => Bias::PullUp,
            _ => Bias::PullDown,
        }
    }
}

/// A requested output line. Plain data, so timers can copy it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpioOut {
    pub pin: u32,
    /// The backend's handle (a line-request fd on Linux).
    pub handle: i32,
}

/// A requested input line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpioIn {
    pub pin: u32,
    pub handle: i32,
}

/// GPIO lines. Setting up may fail (the MCU then shuts down with the
/// returned reason, after the backend has told stderr the details);
/// writing and reading a set-up line may not.
pub trait Gpio {
    fn setup_output(&mut self, pin: u32, value: bool) -> Result<GpioOut, Shutdown>;
    fn setup_input(&mut self, pin: u32, bias: Bias) -> Result<GpioIn, Shutdown>;
    fn write(&mut self, out: GpioOut, value: bool);
    fn read(&mut self, inp: GpioIn) -> bool;
}

/// Shutdown reasons of the GPIO backends, as the reference words them.
pub const GPIO_NOT_FOUND: Shutdown = Shutdown("GPIO chip device not found");
pub const GPIO_OPEN_FAILED: Shutdown = Shutdown("Unable to open GPIO chip device");
pub const GPIO_OUT_LINE_FAILED: Shutdown = Shutdown("Unable to open out GPIO chip line");
pub const GPIO_IN_LINE_FAILED: Shutdown = Shutdown("Unable to open in GPIO chip line");
pub const NOT_OUTPUT_PIN: Shutdown = Shutdown("Not an output pin");
pub const NOT_INPUT_PIN: Shutdown = Shutdown("Not an input pin");

pub static MODULE: crate::command::Module = crate::command::Module {
    commands: &[],
    responses: &[],
    constants: &[],
    enumerations: &[],
    static_strings: STATIC_STRINGS,
};

const STATIC_STRINGS: &[&str] = &[
    GPIO_NOT_FOUND.0,
    GPIO_OPEN_FAILED.0,
    GPIO_OUT_LINE_FAILED.0,
    GPIO_IN_LINE_FAILED.0,
    NOT_OUTPUT_PIN.0,
    NOT_INPUT_PIN.0,
];

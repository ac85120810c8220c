//! Hardware behind small traits, each with a Linux implementation and a
//! simulated one (`--sim`, only in builds with the `sim` feature).

/// Shutdown reasons as constants, and `STATIC_STRINGS`, the same texts
/// for the dictionary: one list, so that no reason is left out of it.
macro_rules! shutdown_reasons {
    ($($name:ident = $text:literal;)*) => {
        $(pub const $name: Shutdown = Shutdown($text);)*

        /// The shutdown reasons above, for the dictionary.
        pub const STATIC_STRINGS: &[&str] = &[$($name.0),*];
    };
}

pub mod bus;
pub mod linux_gpio;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "sim")]
pub mod sim_chips;
pub mod sysfs;

use std::path::PathBuf;

use crate::shutdown::Shutdown;

/// The hardware an MCU drives, and where its device and sysfs files live.
pub struct Board {
    pub gpio: Box<dyn Gpio>,
    pub spi: Box<dyn bus::Spi>,
    pub i2c: Box<dyn bus::I2c>,
    /// `/dev` unless moved with `--dev-root` (tests).
    pub dev_root: PathBuf,
    /// `/sys` unless moved with `--sysfs-root` (tests).
    pub sysfs_root: PathBuf,
}

impl Board {
    /// This computer's devices under the given roots.
    pub fn linux(dev_root: PathBuf, sysfs_root: PathBuf) -> Board {
        Board {
            gpio: Box::new(linux_gpio::LinuxGpio::new(dev_root.clone())),
            spi: Box::new(bus::LinuxSpi::new(dev_root.clone())),
            i2c: Box::new(bus::LinuxI2c::new(dev_root.clone())),
            dev_root,
            sysfs_root,
        }
    }

    /// The simulated board (sysfs parts still read `sysfs_root`); returns
    /// its shared state for the control socket.
    #[cfg(feature = "sim")]
    pub fn sim(
        dev_root: PathBuf,
        sysfs_root: PathBuf,
    ) -> (Board, std::rc::Rc<std::cell::RefCell<sim::SimState>>) {
        let gpio = sim::SimGpio::new();
        let state = gpio.state();
        let board = Board {
            gpio: Box::new(gpio),
            spi: Box::new(sim::SimSpi::new(state.clone())),
            i2c: Box::new(sim::SimI2c::new(state.clone())),
            dev_root,
            sysfs_root,
        };
        (board, state)
    }
}

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

/// A requested output line. Plain data, so timers can copy it; the
/// backend keeps the line's request by pin, so setting a pin up again
/// (e.g. a direction change) re-requests it in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpioOut {
    pub pin: u32,
}

/// A requested input line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpioIn {
    pub pin: u32,
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

// The GPIO backends' shutdown reasons, as the reference words them.
shutdown_reasons! {
    GPIO_NOT_FOUND = "GPIO chip device not found";
    GPIO_OPEN_FAILED = "Unable to open GPIO chip device";
    GPIO_OUT_LINE_FAILED = "Unable to open out GPIO chip line";
    GPIO_IN_LINE_FAILED = "Unable to open in GPIO chip line";
    NOT_OUTPUT_PIN = "Not an output pin";
    NOT_INPUT_PIN = "Not an input pin";
}

//! The simulated board (`--sim`): GPIO lines in memory. Outputs are
//! recorded with the clock time of each change; inputs are set by tests.

use super::{Bias, Gpio, GpioIn, GpioOut, NOT_INPUT_PIN, NOT_OUTPUT_PIN};
use crate::clock::Clock;
use crate::command::Shutdown;
use crate::pins::{GPIO_CHIPS, GPIO_LINES_PER_CHIP};

const LINES: usize = (GPIO_CHIPS * GPIO_LINES_PER_CHIP) as usize;
const HISTORY: usize = 4096;

/// One recorded output change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub clock: u32,
    pub pin: u32,
    pub value: bool,
}

pub struct SimGpio {
    clock: Clock,
    levels: Vec<bool>,
    /// Output changes, oldest first; bounded so it never grows unchecked.
    pub history: Vec<Edge>,
    pub bias: Vec<Option<Bias>>,
}

impl SimGpio {
    pub fn new() -> SimGpio {
        SimGpio {
            clock: Clock::new(),
            levels: vec![false; LINES],
            history: Vec::with_capacity(HISTORY),
            bias: vec![None; LINES],
        }
    }

    /// Drive an input line (as a test would).
    pub fn set_input(&mut self, pin: u32, value: bool) {
        if let Some(l) = self.levels.get_mut(pin as usize) {
            *l = value;
        }
    }

    pub fn level(&self, pin: u32) -> bool {
        self.levels.get(pin as usize).copied().unwrap_or(false)
    }

    fn record(&mut self, pin: u32, value: bool) {
        if self.history.len() == HISTORY {
            self.history.remove(0);
        }
        self.history.push(Edge {
            clock: self.clock.now(),
            pin,
            value,
        });
    }
}

impl Default for SimGpio {
    fn default() -> Self {
        Self::new()
    }
}

impl Gpio for SimGpio {
    fn setup_output(&mut self, pin: u32, value: bool) -> Result<GpioOut, Shutdown> {
        if pin as usize >= LINES {
            return Err(NOT_OUTPUT_PIN);
        }
        self.levels[pin as usize] = value;
        self.record(pin, value);
        Ok(GpioOut { pin, handle: -1 })
    }

    fn setup_input(&mut self, pin: u32, bias: Bias) -> Result<GpioIn, Shutdown> {
        if pin as usize >= LINES {
            return Err(NOT_INPUT_PIN);
        }
        self.bias[pin as usize] = Some(bias);
        if bias == Bias::PullUp {
            self.levels[pin as usize] = true;
        }
        Ok(GpioIn { pin, handle: -1 })
    }

    fn write(&mut self, out: GpioOut, value: bool) {
        self.levels[out.pin as usize] = value;
        self.record(out.pin, value);
    }

    fn read(&mut self, inp: GpioIn) -> bool {
        self.levels[inp.pin as usize]
    }
}

//! The simulated board (`--sim`): GPIO lines in memory. Output changes are
//! recorded with their clock times; inputs are driven from outside through
//! a control socket ([`SimControl`]), so tests and newcomers can exercise a
//! printer configuration with no Raspberry Pi.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::{Bias, Gpio, GpioIn, GpioOut, NOT_INPUT_PIN, NOT_OUTPUT_PIN};
use crate::clock::Clock;
use crate::command::Shutdown;
use crate::pins::{GPIO_CHIPS, GPIO_LINES_PER_CHIP};

const LINES: usize = (GPIO_CHIPS * GPIO_LINES_PER_CHIP) as usize;
/// Output changes kept, for timing checks (a ring: the oldest go first).
const HISTORY: usize = 1 << 16;

/// One recorded output change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Edge {
    pub clock: u32,
    pub pin: u32,
    pub value: bool,
}

/// The board's state, shared by the GPIO backend and the control socket.
pub struct SimState {
    clock: Clock,
    levels: Vec<bool>,
    /// Rising and falling edges written to each line.
    rises: Vec<u32>,
    falls: Vec<u32>,
    bias: Vec<Option<Bias>>,
    outputs: Vec<bool>,
    history: Box<[Edge]>,
    history_len: u64,
}

impl SimState {
    fn new() -> SimState {
        SimState {
            clock: Clock::new(),
            levels: vec![false; LINES],
            rises: vec![0; LINES],
            falls: vec![0; LINES],
            bias: vec![None; LINES],
            outputs: vec![false; LINES],
            history: vec![Edge::default(); HISTORY].into_boxed_slice(),
            history_len: 0,
        }
    }

    fn write(&mut self, pin: u32, value: bool) {
        let p = pin as usize;
        if self.levels[p] != value {
            if value {
                self.rises[p] += 1;
            } else {
                self.falls[p] += 1;
            }
        }
        self.levels[p] = value;
        let e = Edge {
            clock: self.clock.now(),
            pin,
            value,
        };
        self.history[(self.history_len % HISTORY as u64) as usize] = e;
        self.history_len += 1;
    }

    /// The recorded writes of `pin`, oldest first, at most `max`.
    pub fn history(&self, pin: u32, max: usize) -> Vec<Edge> {
        let n = self.history_len.min(HISTORY as u64);
        let mut out: Vec<Edge> = (self.history_len - n..self.history_len)
            .rev()
            .map(|i| self.history[(i % HISTORY as u64) as usize])
            .filter(|e| e.pin == pin)
            .take(max)
            .collect();
        out.reverse();
        out
    }

    /// Answer one control request (a line of text).
    pub fn control(&mut self, req: &str) -> String {
        let w: Vec<&str> = req.split_whitespace().collect();
        let pin = |s: &str| -> Option<usize> {
            let n = crate::pins::parse_gpio(s)? as usize;
            (n < LINES).then_some(n)
        };
        match w.as_slice() {
            ["set", p, v] => match (pin(p), *v) {
                (Some(p), "0" | "1") => {
                    if self.outputs[p] {
                        return format!("error {} is an output", w[1]);
                    }
                    self.levels[p] = *v == "1";
                    "ok".into()
                }
                _ => "error usage: set PIN 0|1".into(),
            },
            ["get", p] => match pin(p) {
                Some(p) => {
                    let bias = match self.bias[p] {
                        None => "none",
                        Some(Bias::AsIs) => "as-is",
                        Some(Bias::PullUp) => "pull-up",
                        Some(Bias::PullDown) => "pull-down",
                    };
                    format!(
                        "level={} rises={} falls={} output={} bias={bias}",
                        self.levels[p] as u8, self.rises[p], self.falls[p], self.outputs[p] as u8
                    )
                }
                None => "error usage: get PIN".into(),
            },
            ["history", p, n] => match (pin(p), n.parse::<usize>()) {
                (Some(p), Ok(n)) => self
                    .history(p as u32, n.min(512))
                    .iter()
                    .map(|e| format!("{}:{}", e.clock, e.value as u8))
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => "error usage: history PIN COUNT".into(),
            },
            ["clock"] => format!("{}", self.clock.now()),
            _ => "error commands: set PIN 0|1, get PIN, history PIN COUNT, clock".into(),
        }
    }
}

/// GPIO on the simulated board.
pub struct SimGpio {
    state: Rc<RefCell<SimState>>,
}

impl SimGpio {
    pub fn new() -> SimGpio {
        SimGpio {
            state: Rc::new(RefCell::new(SimState::new())),
        }
    }

    pub fn state(&self) -> Rc<RefCell<SimState>> {
        self.state.clone()
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
        let mut s = self.state.borrow_mut();
        s.outputs[pin as usize] = true;
        s.write(pin, value);
        Ok(GpioOut { pin, handle: -1 })
    }

    fn setup_input(&mut self, pin: u32, bias: Bias) -> Result<GpioIn, Shutdown> {
        if pin as usize >= LINES {
            return Err(NOT_INPUT_PIN);
        }
        let mut s = self.state.borrow_mut();
        let p = pin as usize;
        s.outputs[p] = false;
        s.bias[p] = Some(bias);
        // An undriven line settles where its bias pulls it.
        match bias {
            Bias::PullUp => s.levels[p] = true,
            Bias::PullDown => s.levels[p] = false,
            Bias::AsIs => {}
        }
        Ok(GpioIn { pin, handle: -1 })
    }

    #[inline]
    fn write(&mut self, out: GpioOut, value: bool) {
        self.state.borrow_mut().write(out.pin, value);
    }

    #[inline]
    fn read(&mut self, inp: GpioIn) -> bool {
        self.state.borrow().levels[inp.pin as usize]
    }
}

/// The simulated board's control socket: a Unix datagram socket; each
/// datagram is one request (see [`SimState::control`]), answered to the
/// sender's address.
pub struct SimControl {
    sock: UnixDatagram,
    path: PathBuf,
    state: Rc<RefCell<SimState>>,
}

impl SimControl {
    pub fn bind(path: &Path, state: Rc<RefCell<SimState>>) -> Result<SimControl, String> {
        if std::fs::symlink_metadata(path).is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_socket()
        }) {
            let _ = std::fs::remove_file(path);
        }
        let sock = UnixDatagram::bind(path).map_err(|e| {
            format!(
                "cannot bind the simulator control socket {}: {e}",
                path.display()
            )
        })?;
        sock.set_nonblocking(true)
            .map_err(|e| format!("simulator control socket: {e}"))?;
        Ok(SimControl {
            sock,
            path: path.to_path_buf(),
            state,
        })
    }

    pub fn raw_fd(&self) -> i32 {
        self.sock.as_raw_fd()
    }

    /// Answer every waiting request.
    pub fn poll(&mut self) {
        let mut buf = [0u8; 512];
        while let Ok((n, addr)) = self.sock.recv_from(&mut buf) {
            let req = String::from_utf8_lossy(&buf[..n]);
            let reply = self.state.borrow_mut().control(&req);
            if let Some(p) = addr.as_pathname() {
                let _ = self.sock.send_to(reply.as_bytes(), p);
            }
        }
    }
}

impl Drop for SimControl {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_recorded_and_inputs_driven() {
        let mut g = SimGpio::new();
        let o = g.setup_output(17, false).unwrap();
        g.write(o, true);
        g.write(o, false);
        g.write(o, true);
        let st = g.state();
        assert!(st
            .borrow_mut()
            .control("get gpio17")
            .starts_with("level=1 rises=2 falls=1 output=1"));
        assert_eq!(st.borrow().history(17, 10).len(), 4);
        let i = g.setup_input(5, Bias::PullUp).unwrap();
        assert!(g.read(i));
        assert_eq!(st.borrow_mut().control("set gpio5 0"), "ok");
        assert!(!g.read(i));
        assert!(st.borrow_mut().control("set gpio17 0").starts_with("error"));
        assert!(st
            .borrow_mut()
            .control("get gpiochip1/gpio0")
            .contains("level=0"));
        assert!(g.setup_output(LINES as u32, false).is_err());
    }
}

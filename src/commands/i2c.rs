//! I2C devices (the reference's i2ccmds.c and i2c_software.c): hardware
//! buses through the board's [`I2c`](crate::hw::bus::I2c), or software I2C
//! bit-banged on GPIO lines. `i2c_transfer` reports a NACK as a status the
//! host sees; the older `i2c_read`/`i2c_write` (still used by Kalico) shut
//! down on one, as they did in the reference.

use klipper_protocol::dictionary::EnumValue;
use klipper_protocol::format::Arg;

use crate::clock::Spin;
use crate::command::{Args, CmdResult, Module, Response, Shutdown};
use crate::hw::bus::{
    I2cHandle, I2C_BUS_TIMEOUT, I2C_NACK, I2C_START_NACK, I2C_START_READ_NACK, I2C_SUCCESS,
};
use crate::hw::Bias;
use crate::mcu::Mcu;

static I2C_RESPONSE: Response = Response::new("i2c_response oid=%c i2c_bus_status=%c response=%*s");
static I2C_READ_RESPONSE: Response = Response::new("i2c_read_response oid=%c response=%*s");

const NACK: Shutdown = Shutdown("I2C NACK");
const START_NACK: Shutdown = Shutdown("I2C START NACK");
const START_READ_NACK: Shutdown = Shutdown("I2C START READ NACK");
const TIMEOUT: Shutdown = Shutdown("I2C Timeout");

/// Longest read whose answer still fits one message block.
const MAX_RESPONSE: usize = 48;

/// A software I2C bus: the lines are driven low as outputs and released
/// (inputs with pull-up) for high, as open-drain lines must be.
#[derive(Clone, Copy)]
pub struct SoftI2c {
    scl: u32,
    sda: u32,
    addr: u8,
    ticks: u32,
    /// The current transfer's busy-wait allowance.
    spin: Spin,
}

#[derive(Clone, Copy)]
enum Bus {
    None,
    Hardware(I2cHandle),
    Software(SoftI2c),
}

pub struct I2cDev {
    bus: Bus,
}

/// The I2C device an oid names (for the sensor families).
pub fn lookup(mcu: &Mcu, oid: u32) -> Result<usize, Shutdown> {
    mcu.oid_lookup::<I2cDev>(oid)
}

fn status_error(status: u8) -> Option<Shutdown> {
    match status {
        I2C_NACK => Some(NACK),
        I2C_START_NACK => Some(START_NACK),
        I2C_START_READ_NACK => Some(START_READ_NACK),
        I2C_BUS_TIMEOUT => Some(TIMEOUT),
        _ => None,
    }
}

// Software I2C, after the reference's i2c_software.c.
impl SoftI2c {
    fn delay(&self, mcu: &Mcu) {
        self.spin.delay(&mcu.clock, self.ticks);
    }
    fn low(&self, mcu: &mut Mcu, pin: u32) -> CmdResult {
        mcu.gpio.setup_output(pin, false).map(|_| ())
    }
    fn release(&self, mcu: &mut Mcu, pin: u32) -> CmdResult {
        mcu.gpio.setup_input(pin, Bias::PullUp).map(|_| ())
    }
    fn read_line(&self, mcu: &mut Mcu, pin: u32) -> bool {
        mcu.gpio.read(crate::hw::GpioIn { pin })
    }
    fn clock_pulse(&self, mcu: &mut Mcu) -> CmdResult {
        self.delay(mcu);
        self.release(mcu, self.scl)?;
        self.delay(mcu);
        self.low(mcu, self.scl)
    }
    fn send_byte(&self, mcu: &mut Mcu, mut b: u8) -> Result<u8, Shutdown> {
        for _ in 0..8 {
            if b & 0x80 != 0 {
                self.release(mcu, self.sda)?;
            } else {
                self.low(mcu, self.sda)?;
            }
            b <<= 1;
            self.clock_pulse(mcu)?;
        }
        // The target acknowledges by holding SDA low.
        self.release(mcu, self.sda)?;
        self.delay(mcu);
        self.release(mcu, self.scl)?;
        let nack = self.read_line(mcu, self.sda);
        self.delay(mcu);
        self.low(mcu, self.scl)?;
        Ok(if nack { I2C_NACK } else { I2C_SUCCESS })
    }
    fn read_byte(&self, mcu: &mut Mcu, last: bool) -> Result<u8, Shutdown> {
        let mut b = 0u8;
        self.release(mcu, self.sda)?;
        for _ in 0..8 {
            self.delay(mcu);
            self.release(mcu, self.scl)?;
            self.delay(mcu);
            b = (b << 1) | self.read_line(mcu, self.sda) as u8;
            self.low(mcu, self.scl)?;
        }
        // Acknowledge every byte but the last.
        if !last {
            self.low(mcu, self.sda)?;
        }
        self.clock_pulse(mcu)?;
        Ok(b)
    }
    fn start(&self, mcu: &mut Mcu, addr: u8) -> Result<u8, Shutdown> {
        self.delay(mcu);
        self.release(mcu, self.sda)?;
        self.release(mcu, self.scl)?;
        self.delay(mcu);
        self.low(mcu, self.sda)?;
        self.delay(mcu);
        self.low(mcu, self.scl)?;
        let r = self.send_byte(mcu, addr)?;
        Ok(if r == I2C_NACK { I2C_START_NACK } else { r })
    }
    fn stop(&self, mcu: &mut Mcu) -> CmdResult {
        self.low(mcu, self.sda)?;
        self.delay(mcu);
        self.release(mcu, self.scl)?;
        self.delay(mcu);
        self.release(mcu, self.sda)
    }
    fn write(&self, mcu: &mut Mcu, data: &[u8]) -> Result<u8, Shutdown> {
        let mut r = self.start(mcu, self.addr)?;
        if r == I2C_SUCCESS {
            for &b in data {
                r = self.send_byte(mcu, b)?;
                if r != I2C_SUCCESS {
                    break;
                }
            }
        }
        self.stop(mcu)?;
        Ok(r)
    }
    fn read(&self, mcu: &mut Mcu, reg: &[u8], out: &mut [u8]) -> Result<u8, Shutdown> {
        let mut r = I2C_SUCCESS;
        if !reg.is_empty() {
            r = self.start(mcu, self.addr)?;
            for &b in reg {
                if r != I2C_SUCCESS {
                    break;
                }
                r = self.send_byte(mcu, b)?;
            }
        }
        if r == I2C_SUCCESS {
            r = self.start(mcu, self.addr | 1)?;
            if r != I2C_SUCCESS {
                r = I2C_START_READ_NACK;
            } else {
                let n = out.len();
                for (k, o) in out.iter_mut().enumerate() {
                    *o = self.read_byte(mcu, k + 1 == n)?;
                }
            }
        }
        self.stop(mcu)?;
        Ok(r)
    }
}

/// Write to I2C device `i`; returns an `i2c_bus_status`.
pub fn write(mcu: &mut Mcu, i: usize, data: &[u8]) -> Result<u8, Shutdown> {
    match mcu.objs.of::<I2cDev>()[i].bus {
        Bus::Hardware(h) => Ok(mcu.i2c.write(h, data)),
        Bus::Software(mut s) => {
            s.spin = Spin::start(&mcu.clock);
            s.write(mcu, data)
        }
        Bus::None => Ok(I2C_NACK),
    }
}

/// Write `reg` then read `out` from I2C device `i`.
pub fn read(mcu: &mut Mcu, i: usize, reg: &[u8], out: &mut [u8]) -> Result<u8, Shutdown> {
    match mcu.objs.of::<I2cDev>()[i].bus {
        Bus::Hardware(h) => Ok(mcu.i2c.read(h, reg, out)),
        Bus::Software(mut s) => {
            s.spin = Spin::start(&mcu.clock);
            s.read(mcu, reg, out)
        }
        Bus::None => Ok(I2C_NACK),
    }
}

crate::command!(CONFIG_I2C = "config_i2c oid=%c" => config_i2c);
fn config_i2c(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid);
    mcu.oid_new::<I2cDev>(oid)?;
    mcu.objs.push(I2cDev { bus: Bus::None });
    Ok(())
}

crate::command!(I2C_SET_BUS = "i2c_set_bus oid=%c i2c_bus=%u rate=%u address=%u" => i2c_set_bus);
fn i2c_set_bus(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, i2c_bus, rate, address);
    let i = lookup(mcu, oid)?;
    // The rate is the kernel driver's to set (dtparam=i2c_baudrate).
    let h = mcu.i2c.setup(i2c_bus, (address & 0x7f) as u8)?;
    mcu.objs.of::<I2cDev>()[i].bus = Bus::Hardware(h);
    Ok(())
}

crate::command!(I2C_SET_SW_BUS = "i2c_set_sw_bus oid=%c scl_pin=%u sda_pin=%u pulse_ticks=%u address=%u" => i2c_set_sw_bus);
fn i2c_set_sw_bus(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, scl_pin, sda_pin, pulse_ticks, address);
    let i = lookup(mcu, oid)?;
    let (scl, sda) = (scl_pin, sda_pin);
    mcu.gpio.setup_input(scl, Bias::PullUp)?;
    mcu.gpio.setup_input(sda, Bias::PullUp)?;
    mcu.objs.of::<I2cDev>()[i].bus = Bus::Software(SoftI2c {
        scl,
        sda,
        addr: ((address & 0x7f) << 1) as u8,
        ticks: pulse_ticks,
        spin: Spin::spent(),
    });
    Ok(())
}

crate::command!(I2C_TRANSFER = "i2c_transfer oid=%c write=%*s read_len=%u" => i2c_transfer);
fn i2c_transfer(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, write: buf, read_len);
    let i = lookup(mcu, oid)?;
    let rlen = (read_len as usize).min(MAX_RESPONSE);
    let mut rbuf = [0u8; MAX_RESPONSE];
    let status = if rlen > 0 {
        read(mcu, i, write, &mut rbuf[..rlen])?
    } else {
        self::write(mcu, i, write)?
    };
    let args = [
        Arg::Int(oid),
        Arg::Int(status as u32),
        Arg::Bytes(&rbuf[..rlen]),
    ];
    mcu.send(&I2C_RESPONSE, &args);
    Ok(())
}

crate::command!(I2C_WRITE = "i2c_write oid=%c data=%*s" => i2c_write);
fn i2c_write(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, data: buf);
    let i = lookup(mcu, oid)?;
    let status = write(mcu, i, data)?;
    status_error(status).map_or(Ok(()), Err)
}

crate::command!(I2C_READ = "i2c_read oid=%c reg=%*s read_len=%u" => i2c_read);
fn i2c_read(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, reg: buf, read_len);
    let i = lookup(mcu, oid)?;
    let rlen = (read_len as usize).min(MAX_RESPONSE);
    let mut rbuf = [0u8; MAX_RESPONSE];
    let status = read(mcu, i, reg, &mut rbuf[..rlen])?;
    if let Some(e) = status_error(status) {
        return Err(e);
    }
    mcu.send(
        &I2C_READ_RESPONSE,
        &[Arg::Int(oid), Arg::Bytes(&rbuf[..rlen])],
    );
    Ok(())
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[
        CONFIG_I2C,
        I2C_SET_BUS,
        I2C_SET_SW_BUS,
        I2C_TRANSFER,
        I2C_READ,
        I2C_WRITE,
    ],
    responses: &[&I2C_RESPONSE, &I2C_READ_RESPONSE],
    enumerations: &[
        ("i2c_bus", "i2c.0", EnumValue::Range(0, 15)),
        (
            "i2c_bus_status",
            "SUCCESS",
            EnumValue::Single(I2C_SUCCESS as i64),
        ),
        ("i2c_bus_status", "NACK", EnumValue::Single(I2C_NACK as i64)),
        (
            "i2c_bus_status",
            "BUS_TIMEOUT",
            EnumValue::Single(I2C_BUS_TIMEOUT as i64),
        ),
        (
            "i2c_bus_status",
            "START_NACK",
            EnumValue::Single(I2C_START_NACK as i64),
        ),
        (
            "i2c_bus_status",
            "START_READ_NACK",
            EnumValue::Single(I2C_START_READ_NACK as i64),
        ),
    ],
    static_strings: &[NACK.0, START_NACK.0, START_READ_NACK.0, TIMEOUT.0],
    ..Module::EMPTY
};

//! LDC1612 eddy-current sensor (the reference's sensor_ldc1612.c) on I2C,
//! optionally with its INTB line: a timer marks a sample pending every
//! `rest_ticks` (or when INTB is asserted); the task reads the status and
//! the channel 0 data registers and streams 4 big-endian bytes per sample
//! (0xffff00NN marks error NN), feeding an attached trigger_analog.

use klipper_protocol::dictionary::EnumValue;

use super::trigger_analog;
use crate::command::{Args, CmdResult, Module, Shutdown};
use crate::commands::i2c;
use crate::commands::sensor_bulk::{SensorBulk, BULK_DATA_SIZE};
use crate::hw::bus::I2C_SUCCESS;
use crate::hw::{Bias, GpioIn};
use crate::mcu::Mcu;
use crate::sched::TimerResult;

const LDC_PENDING: u8 = 1 << 0;
const LDC_HAVE_INTB: u8 = 1 << 1;

const SE_SENSOR_ERROR: u8 = 0;
const SE_I2C_STATUS: u8 = 1;
const SE_I2C_DATA: u8 = 2;
const SE_INVALID_DATA: u8 = 3;

pub const ENUMERATIONS: &[(&str, &str, EnumValue)] = crate::enumerations! {
    "ldc1612_error:" {
        "SENSOR_REPORTS_ERROR" = SE_SENSOR_ERROR, "I2C_STATUS_ERROR" = SE_I2C_STATUS,
        "I2C_DATA_ERROR" = SE_I2C_DATA, "INVALID_READ_DATA" = SE_INVALID_DATA,
    },
};

const REG_DATA0_MSB: u8 = 0x00;
const REG_DATA0_LSB: u8 = 0x01;
const REG_STATUS: u8 = 0x18;
const STATUS_UNREADCONV0: u16 = 1 << 3;
const BYTES_PER_SAMPLE: usize = 4;

#[derive(Default)]
pub struct Ldc1612 {
    oid: u8,
    rest_ticks: u32,
    i2c: usize,
    flags: u8,
    sb: SensorBulk,
    intb: Option<GpioIn>,
    pub ta: Option<usize>,
}

impl Ldc1612 {
    pub(super) fn clear_pending(&mut self) {
        self.flags &= !LDC_PENDING;
    }
}

fn intb_asserted(mcu: &mut Mcu, intb: Option<GpioIn>) -> bool {
    intb.is_some_and(|p| !mcu.gpio.read(p))
}

fn run_timer(mcu: &mut Mcu, i: u32, waketime: u32) -> Result<TimerResult, Shutdown> {
    let i = i as usize;
    let (flags, intb) = (
        mcu.objs.of::<Ldc1612>()[i].flags,
        mcu.objs.of::<Ldc1612>()[i].intb,
    );
    if flags & LDC_PENDING != 0 {
        let sb = &mut mcu.objs.of::<Ldc1612>()[i].sb;
        sb.possible_overflows = sb.possible_overflows.wrapping_add(1);
    }
    if flags & LDC_HAVE_INTB == 0 || intb_asserted(mcu, intb) {
        mcu.objs.of::<Ldc1612>()[i].flags |= LDC_PENDING;
        mcu.wake_task(&MODULE);
    }
    Ok(TimerResult::Reschedule(
        waketime.wrapping_add(mcu.objs.of::<Ldc1612>()[i].rest_ticks),
    ))
}

/// Read a 16-bit register; `None` on a bus error (a shutdown for the
/// software bus's own failures is raised by the caller's path).
fn read_reg(mcu: &mut Mcu, dev: usize, reg: u8, out: &mut [u8]) -> bool {
    match i2c::read(mcu, dev, &[reg], out) {
        Ok(s) => s == I2C_SUCCESS,
        Err(e) => {
            mcu.try_shutdown(e);
            false
        }
    }
}

fn query(mcu: &mut Mcu, i: usize) {
    let dev = mcu.objs.of::<Ldc1612>()[i].i2c;
    let mut st = [0u8; 2];
    let ok = read_reg(mcu, dev, REG_STATUS, &mut st);
    mcu.objs.of::<Ldc1612>()[i].flags &= !LDC_PENDING;
    let mut d = [0u8; 4];
    let mut error = None;
    if !ok {
        error = Some(SE_I2C_STATUS);
    } else {
        let status = u16::from_be_bytes(st);
        if status & STATUS_UNREADCONV0 == 0 {
            return;
        }
        let (a, b) = d.split_at_mut(2);
        let ok1 = read_reg(mcu, dev, REG_DATA0_MSB, a);
        let ok2 = read_reg(mcu, dev, REG_DATA0_LSB, b);
        if !(ok1 && ok2) {
            error = Some(SE_I2C_DATA);
        } else if d[0] == 0xff && d[1] == 0xff {
            error = Some(SE_INVALID_DATA);
        }
    }
    let ta = mcu.objs.of::<Ldc1612>()[i].ta;
    match error {
        Some(code) => {
            trigger_analog::note_error(mcu, ta, code);
            d = [0xff, 0xff, 0, code];
        }
        None => {
            let raw = u32::from_be_bytes(d);
            if raw & 0xe000_0000 != 0 {
                trigger_analog::note_error(mcu, ta, SE_SENSOR_ERROR);
            } else if let Some(ta) = ta {
                trigger_analog::update(mcu, ta, (raw & 0x0fff_ffff) as i32);
            }
        }
    }
    let l = &mut mcu.objs.of::<Ldc1612>()[i];
    l.sb.push(&d);
    if l.sb.data_count as usize + BYTES_PER_SAMPLE > BULK_DATA_SIZE {
        let (mut sb, oid) = (l.sb, l.oid);
        sb.report(mcu, oid);
        mcu.objs.of::<Ldc1612>()[i].sb = sb;
    }
}

/// Forget pending reads, so that no bus traffic follows the shutdown.
pub fn shutdown(mcu: &mut Mcu) {
    for l in mcu.objs.of::<Ldc1612>().iter_mut() {
        l.clear_pending();
    }
}

pub fn task(mcu: &mut Mcu) {
    for i in 0..mcu.objs.of::<Ldc1612>().len() {
        if mcu.objs.of::<Ldc1612>()[i].flags & LDC_PENDING != 0 {
            query(mcu, i);
        }
    }
}

fn new_ldc(mcu: &mut Mcu, oid: u32, i2c_oid: u32, intb: Option<GpioIn>) -> CmdResult {
    let dev = i2c::lookup(mcu, i2c_oid)?;
    mcu.oid_new::<Ldc1612>(oid)?;
    mcu.objs.push(Ldc1612 {
        oid: oid as u8,
        i2c: dev,
        flags: if intb.is_some() { LDC_HAVE_INTB } else { 0 },
        intb,
        ..Default::default()
    });
    Ok(())
}

crate::command!(CONFIG_LDC1612 = "config_ldc1612 oid=%c i2c_oid=%c" => config_ldc1612);
fn config_ldc1612(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, i2c_oid);
    new_ldc(mcu, oid, i2c_oid, None)
}

crate::command!(CONFIG_LDC1612_WITH_INTB = "config_ldc1612_with_intb oid=%c i2c_oid=%c intb_pin=%c" => config_ldc1612_with_intb);
fn config_ldc1612_with_intb(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, i2c_oid, intb_pin);
    i2c::lookup(mcu, i2c_oid)?;
    let pin = mcu.gpio.setup_input(intb_pin, Bias::PullUp)?;
    new_ldc(mcu, oid, i2c_oid, Some(pin))
}

crate::command!(LDC1612_ATTACH_TRIGGER_ANALOG = "ldc1612_attach_trigger_analog oid=%c trigger_analog_oid=%c" => ldc1612_attach_trigger_analog);
fn ldc1612_attach_trigger_analog(mcu: &mut Mcu, a: &Args) -> CmdResult {
    trigger_analog::attach::<Ldc1612>(mcu, a, |l| &mut l.ta)
}

crate::command!(QUERY_LDC1612 = "query_ldc1612 oid=%c rest_ticks=%u" => query_ldc1612);
fn query_ldc1612(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, rest_ticks);
    let (i, id) = mcu.oid_stop_timer::<Ldc1612>(oid, run_timer)?;
    let l = &mut mcu.objs.of::<Ldc1612>()[i];
    l.flags &= !LDC_PENDING;
    if rest_ticks == 0 {
        return Ok(());
    }
    l.rest_ticks = rest_ticks;
    l.sb.reset();
    let now = mcu.clock.now();
    let when = now.wrapping_add(l.rest_ticks);
    mcu.timers.add(id, when, now)
}

crate::command!(QUERY_STATUS_LDC1612 = "query_status_ldc1612 oid=%c" => query_status_ldc1612);
fn query_status_ldc1612(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid);
    let i = mcu.oid_lookup::<Ldc1612>(oid)?;
    let oid = oid as u8;
    let (dev, intb) = (
        mcu.objs.of::<Ldc1612>()[i].i2c,
        mcu.objs.of::<Ldc1612>()[i].intb,
    );
    if intb.is_some() {
        let time = mcu.clock.now();
        let p = intb_asserted(mcu, intb);
        let sb = mcu.objs.of::<Ldc1612>()[i].sb;
        let fifo = if p { BYTES_PER_SAMPLE as u32 } else { 0 };
        sb.status(mcu, oid, time, 0, fifo);
        return Ok(());
    }
    let time1 = mcu.clock.now();
    let mut st = [0u8; 2];
    let ok = match i2c::read(mcu, dev, &[REG_STATUS], &mut st) {
        Ok(s) => s == I2C_SUCCESS,
        Err(e) => return Err(e),
    };
    let time2 = mcu.clock.now();
    if !ok {
        // No answer: the host asks again.
        return Ok(());
    }
    let status = u16::from_be_bytes(st);
    let fifo = if status & STATUS_UNREADCONV0 != 0 {
        BYTES_PER_SAMPLE as u32
    } else {
        0
    };
    let sb = mcu.objs.of::<Ldc1612>()[i].sb;
    sb.status(mcu, oid, time1, time2.wrapping_sub(time1), fifo);
    Ok(())
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[
        CONFIG_LDC1612,
        CONFIG_LDC1612_WITH_INTB,
        LDC1612_ATTACH_TRIGGER_ANALOG,
        QUERY_LDC1612,
        QUERY_STATUS_LDC1612,
    ],
    enumerations: ENUMERATIONS,
    task: Some(task),
    shutdown: Some(shutdown),
    ..Module::EMPTY
};

//! HX711/HX717 load-cell ADCs (the reference's sensor_hx71x.c): a timer
//! polls DOUT every `rest_ticks`; when the chip has a sample the task
//! clocks out 24 bits plus 1-4 gain/channel pulses on SCLK, and streams
//! the signed counts (4 bytes, little endian) through sensor_bulk.

use super::trigger_analog;
use crate::command::{Args, CmdResult, Module, Shutdown};
use crate::commands::sensor_bulk::{SensorBulk, BULK_DATA_SIZE};
use crate::hw::{Bias, GpioIn, GpioOut};
use crate::mcu::Mcu;
use crate::sched::TimerResult;

const BAD_GAIN: Shutdown = Shutdown("HX71x gain/channel out of range 1-4");
pub const STATIC_STRINGS: &[&str] = &[BAD_GAIN.0];

const HX_PENDING: u8 = 1 << 0;
const HX_OVERFLOW: u8 = 1 << 1;

const BYTES_PER_SAMPLE: usize = 4;
const SAMPLE_ERROR_DESYNC: u32 = 1 << 31;
const SAMPLE_ERROR_READ_TOO_LONG: u32 = 1 << 30;
/// 200 ns at 50 MHz.
const MIN_PULSE_TICKS: u32 = 10;

pub struct Hx71x {
    oid: u8,
    gain_channel: u8,
    flags: u8,
    rest_ticks: u32,
    last_error: u32,
    dout: GpioIn,
    sclk: GpioOut,
    sb: SensorBulk,
    pub ta: Option<usize>,
}

fn delay(mcu: &Mcu) {
    crate::clock::spin_for(&mcu.clock, mcu.clock.now(), MIN_PULSE_TICKS);
}

fn raw_read(mcu: &mut Mcu, dout: GpioIn, sclk: GpioOut, bits: u32) -> u32 {
    let mut v = 0u32;
    for _ in 0..bits {
        mcu.gpio.write(sclk, true);
        delay(mcu);
        mcu.gpio.write(sclk, false);
        let bit = mcu.gpio.read(dout) as u32;
        delay(mcu);
        v = (v << 1) | bit;
    }
    v
}

fn run_timer(mcu: &mut Mcu, i: u32, waketime: u32) -> Result<TimerResult, Shutdown> {
    let i = i as usize;
    let dout = mcu.objs.of::<Hx71x>()[i].dout;
    let h = &mcu.objs.of::<Hx71x>()[i];
    let mut rest = h.rest_ticks;
    if h.flags & HX_PENDING != 0 {
        let h = &mut mcu.objs.of::<Hx71x>()[i];
        h.sb.possible_overflows = h.sb.possible_overflows.wrapping_add(1);
        h.flags = HX_PENDING | HX_OVERFLOW;
        rest = rest.wrapping_mul(4);
    } else if !mcu.gpio.read(dout) {
        mcu.objs.of::<Hx71x>()[i].flags = HX_PENDING;
        mcu.wake_task(&MODULE);
        rest = rest.wrapping_mul(8);
    }
    Ok(TimerResult::Reschedule(waketime.wrapping_add(rest)))
}

fn read_adc(mcu: &mut Mcu, i: usize) {
    let (dout, sclk, gc) = {
        let h = &mcu.objs.of::<Hx71x>()[i];
        (h.dout, h.sclk, h.gain_channel)
    };
    let adc = raw_read(mcu, dout, sclk, 24 + gc as u32);
    let h = &mut mcu.objs.of::<Hx71x>()[i];
    let flags = std::mem::take(&mut h.flags);
    let mut counts = adc >> gc;
    if counts & 0x80_0000 != 0 {
        counts |= 0xff00_0000;
    }
    let extras = (1u32 << gc) - 1;
    if adc & extras != extras {
        h.last_error = SAMPLE_ERROR_DESYNC;
    } else if flags & HX_OVERFLOW != 0 {
        h.last_error = SAMPLE_ERROR_READ_TOO_LONG;
    }
    if h.last_error != 0 {
        counts = h.last_error;
    } else if let Some(ta) = h.ta {
        trigger_analog::update(mcu, ta, counts as i32);
    }
    let h = &mut mcu.objs.of::<Hx71x>()[i];
    h.sb.push(&counts.to_le_bytes());
    if h.sb.data_count as usize + BYTES_PER_SAMPLE > BULK_DATA_SIZE {
        let (mut sb, oid) = (h.sb, h.oid);
        sb.report(mcu, oid);
        mcu.objs.of::<Hx71x>()[i].sb = sb;
    }
}

pub fn task(mcu: &mut Mcu) {
    for i in 0..mcu.objs.of::<Hx71x>().len() {
        if mcu.objs.of::<Hx71x>()[i].flags != 0 {
            read_adc(mcu, i);
        }
    }
}

crate::command!(CONFIG_HX71X = "config_hx71x oid=%c gain_channel=%c dout_pin=%u sclk_pin=%u" => config_hx71x);
fn config_hx71x(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, gain_channel, dout_pin, sclk_pin);
    let gc = gain_channel as u8;
    if !(1..=4).contains(&gc) {
        return Err(BAD_GAIN);
    }
    let dout = mcu.gpio.setup_input(dout_pin, Bias::PullUp)?;
    let sclk = mcu.gpio.setup_output(sclk_pin, false)?;
    // Power the chip down until sampling starts.
    mcu.gpio.write(sclk, true);
    mcu.oid_new::<Hx71x>(oid)?;
    mcu.objs.push(Hx71x {
        oid: oid as u8,
        gain_channel: gc,
        flags: 0,
        rest_ticks: 0,
        last_error: 0,
        dout,
        sclk,
        sb: SensorBulk::default(),
        ta: None,
    });
    Ok(())
}

crate::command!(HX71X_ATTACH_TRIGGER_ANALOG = "hx71x_attach_trigger_analog oid=%c trigger_analog_oid=%c" => hx71x_attach_trigger_analog);
fn hx71x_attach_trigger_analog(mcu: &mut Mcu, a: &Args) -> CmdResult {
    trigger_analog::attach::<Hx71x>(mcu, a, |h| &mut h.ta)
}

crate::command!(QUERY_HX71X = "query_hx71x oid=%c rest_ticks=%u" => query_hx71x);
fn query_hx71x(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, rest_ticks);
    let (i, id) = mcu.oid_stop_timer::<Hx71x>(oid, run_timer)?;
    let h = &mut mcu.objs.of::<Hx71x>()[i];
    h.flags = 0;
    h.last_error = 0;
    h.rest_ticks = rest_ticks;
    let sclk = h.sclk;
    if h.rest_ticks == 0 {
        mcu.gpio.write(sclk, true);
        return Ok(());
    }
    mcu.gpio.write(sclk, false);
    let h = &mut mcu.objs.of::<Hx71x>()[i];
    h.sb.reset();
    let now = mcu.clock.now();
    let when = now.wrapping_add(h.rest_ticks);
    mcu.timers.add(id, when, now)
}

crate::command!(QUERY_HX71X_STATUS = "query_hx71x_status oid=%c" => query_hx71x_status);
fn query_hx71x_status(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid);
    let i = mcu.oid_lookup::<Hx71x>(oid)?;
    let start = mcu.clock.now();
    let dout = mcu.objs.of::<Hx71x>()[i].dout;
    let ready = !mcu.gpio.read(dout);
    let sb = mcu.objs.of::<Hx71x>()[i].sb;
    let pending = if ready { BYTES_PER_SAMPLE as u32 } else { 0 };
    sb.status(mcu, oid as u8, start, 0, pending);
    Ok(())
}

/// Power the chips down.
pub fn shutdown(mcu: &mut Mcu) {
    for k in 0..mcu.objs.of::<Hx71x>().len() {
        let sclk = mcu.objs.of::<Hx71x>()[k].sclk;
        mcu.objs.of::<Hx71x>()[k].flags = 0;
        mcu.gpio.write(sclk, true);
    }
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[
        CONFIG_HX71X,
        HX71X_ATTACH_TRIGGER_ANALOG,
        QUERY_HX71X,
        QUERY_HX71X_STATUS,
    ],
    static_strings: STATIC_STRINGS,
    task: Some(task),
    shutdown: Some(shutdown),
    ..Module::EMPTY
};

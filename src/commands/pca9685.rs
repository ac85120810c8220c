//! PCA9685 PWM boards over I2C (the reference's linux/pca9685.c):
//! `config_pca9685`, `queue_pca9685_out`, `set_pca9685_out`.

use crate::command::{Args, CmdResult, Constant, Module, Shutdown};
use crate::hw::bus::{I2cHandle, I2C_SUCCESS};
use crate::mcu::Mcu;
use crate::mcu::TimerId;
use crate::moveq::{TimedReasons, TimedValues};
use crate::sched::TimerResult;

const MISSED_EVENT: Shutdown = Shutdown("Missed scheduling of next pca9685 event");
const EXCEEDS_MAX_DURATION: Shutdown = Shutdown("Scheduled pca9685 event will exceed max_duration");
const INVALID: Shutdown = Shutdown("Invalid pca9685 channel or value");
const INVALID_VALUE: Shutdown = Shutdown("Invalid pca9685 value");
const SAME_CYCLE: Shutdown = Shutdown("All PCA9685 channels must have the same cycle_ticks");
const INIT_FAILED: Shutdown = Shutdown("Unable to open and init PCA9685 device");
const UPDATE_FAILED: Shutdown = Shutdown("Unable to update PCA9685 value");

const VALUE_MAX: u32 = 4096;
const CHANNEL_MAX: u32 = 15;
/// Writing to this channel sets all of them.
const CHANNEL_ALL: u8 = 61;
const MODE1: u8 = 0x00;
const PRESCALE: u8 = 0xfe;

/// An initialised PCA9685 chip.
pub struct Pca9685Chip {
    bus: u32,
    addr: u8,
    cycle_ticks: u32,
    i2c: I2cHandle,
}

pub struct Pca9685Out {
    chip: usize,
    channel: u8,
    values: TimedValues,
}

const REASONS: TimedReasons = TimedReasons {
    missed: MISSED_EVENT,
    exceeds: EXCEEDS_MAX_DURATION,
};

fn write_channel(mcu: &mut Mcu, h: I2cHandle, channel: u8, value: u32) -> bool {
    let (full_on, v) = if value >= VALUE_MAX {
        (0x10, 0)
    } else if value == 0 {
        // Full off.
        (0x00, 0x1000)
    } else {
        (0x00, value)
    };
    let msg = [channel * 4 + 0x06, 0x00, full_on, v as u8, (v >> 8) as u8];
    mcu.i2c.write(h, &msg) == I2C_SUCCESS
}

fn update(mcu: &mut Mcu, h: I2cHandle, channel: u8, value: u32) {
    if !write_channel(mcu, h, channel, value) {
        elog!("klipper_mcu: PCA9685: write to channel {channel} failed");
        mcu.try_shutdown(UPDATE_FAILED);
    }
}

/// The chip at (bus, addr), initialised on first use.
fn chip(mcu: &mut Mcu, bus: u32, addr: u8, cycle_ticks: u32) -> Result<usize, Shutdown> {
    if let Some(i) = mcu
        .objs
        .of::<Pca9685Chip>()
        .iter()
        .position(|c| c.bus == bus && c.addr == addr)
    {
        if mcu.objs.of::<Pca9685Chip>()[i].cycle_ticks != cycle_ticks {
            return Err(SAME_CYCLE);
        }
        return Ok(i);
    }
    let h = mcu.i2c.setup(bus, addr).map_err(|_| INIT_FAILED)?;
    // Sleep, set the prescaler for the cycle time (25 MHz oscillator),
    // wake.
    // As the reference's unsigned arithmetic: a cycle too short for the
    // chip wraps below zero and ends at the slowest prescaler.
    let prescale = (((25 * cycle_ticks as u64 + 4096 * 50 / 2) / (4096 * 50)) as u32)
        .wrapping_sub(1)
        .clamp(3, 0xff) as u8;
    for msg in [[MODE1, 0x31], [PRESCALE, prescale], [MODE1, 0x21]] {
        if mcu.i2c.write(h, &msg) != I2C_SUCCESS {
            elog!("klipper_mcu: PCA9685 at i2c.{bus} address {addr:#04x} does not answer");
            return Err(INIT_FAILED);
        }
    }
    // The oscillator needs 500 us after waking (configuration time).
    std::thread::sleep(std::time::Duration::from_micros(500));
    if !write_channel(mcu, h, CHANNEL_ALL, 0) {
        return Err(INIT_FAILED);
    }
    mcu.objs.push(Pca9685Chip {
        bus,
        addr,
        cycle_ticks,
        i2c: h,
    });
    Ok(mcu.objs.of::<Pca9685Chip>().len() - 1)
}

fn run_timer(mcu: &mut Mcu, i: u32, waketime: u32) -> Result<TimerResult, Shutdown> {
    let i = i as usize;
    let p = &mut mcu.objs.of::<Pca9685Out>()[i];
    let (value, next) = p.values.pop(&mut mcu.moves, waketime, &REASONS)?;
    let (chip, channel) = (p.chip, p.channel);
    let h = mcu.objs.of::<Pca9685Chip>()[chip].i2c;
    update(mcu, h, channel, value);
    Ok(next.map_or(TimerResult::Done, TimerResult::Reschedule))
}

crate::command!(CONFIG_PCA9685 = "config_pca9685 oid=%c bus=%c addr=%c channel=%c cycle_ticks=%u value=%hu default_value=%hu max_duration=%u" => config_pca9685);
fn config_pca9685(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, bus, addr, channel, cycle_ticks, value, default_value, max_duration);
    let (bus, addr, channel) = (bus & 0xff, addr as u8, channel & 0xff);
    let (value, default_value) = (value & 0xffff, default_value & 0xffff);
    if channel > CHANNEL_MAX || value > VALUE_MAX || default_value > VALUE_MAX {
        return Err(INVALID);
    }
    let c = chip(mcu, bus, addr, cycle_ticks)?;
    let h = mcu.objs.of::<Pca9685Chip>()[c].i2c;
    if value != 0 {
        update(mcu, h, channel as u8, value);
    }
    mcu.oid_new::<Pca9685Out>(oid)?;
    mcu.objs.push(Pca9685Out {
        chip: c,
        channel: channel as u8,
        values: TimedValues::new(default_value, max_duration),
    });
    Ok(())
}

crate::command!(QUEUE_PCA9685_OUT = "queue_pca9685_out oid=%c clock=%u value=%hu" => queue_pca9685_out);
fn queue_pca9685_out(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, clock, value);
    let i = mcu.oid_lookup::<Pca9685Out>(oid)?;
    let (when, value) = (clock, value & 0xffff);
    if value > VALUE_MAX {
        return Err(INVALID_VALUE);
    }
    let id = TimerId::new(run_timer, i as u32);
    let due = mcu.timers.waketime_of(id);
    if mcu.objs.of::<Pca9685Out>()[i]
        .values
        .push(&mut mcu.moves, when, value, due, &REASONS)?
    {
        mcu.timers.remove(id);
        mcu.add_timer(id, when)?;
    }
    Ok(())
}

crate::command!(SET_PCA9685_OUT = "set_pca9685_out bus=%c addr=%c channel=%c cycle_ticks=%u value=%hu" => set_pca9685_out);
fn set_pca9685_out(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => bus, addr, channel, cycle_ticks, value);
    let (bus, addr, channel, value) = (bus & 0xff, addr as u8, channel & 0xff, value & 0xffff);
    if channel > CHANNEL_MAX || value > VALUE_MAX {
        return Err(INVALID);
    }
    let c = chip(mcu, bus, addr, cycle_ticks)?;
    let h = mcu.objs.of::<Pca9685Chip>()[c].i2c;
    update(mcu, h, channel as u8, value);
    Ok(())
}

pub fn shutdown(mcu: &mut Mcu) {
    for c in 0..mcu.objs.of::<Pca9685Chip>().len() {
        let h = mcu.objs.of::<Pca9685Chip>()[c].i2c;
        write_channel(mcu, h, CHANNEL_ALL, 0);
    }
    for i in 0..mcu.objs.of::<Pca9685Out>().len() {
        let p = &mut mcu.objs.of::<Pca9685Out>()[i];
        p.values.clear(&mut mcu.moves);
        let (chip, channel, default) = (p.chip, p.channel, p.values.default_value);
        let h = mcu.objs.of::<Pca9685Chip>()[chip].i2c;
        if default != 0 {
            write_channel(mcu, h, channel, default);
        }
    }
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[CONFIG_PCA9685, QUEUE_PCA9685_OUT, SET_PCA9685_OUT],
    constants: &[("PCA9685_MAX", Constant::Int(VALUE_MAX as i64))],
    static_strings: &[
        MISSED_EVENT.0,
        EXCEEDS_MAX_DURATION.0,
        INVALID.0,
        INVALID_VALUE.0,
        SAME_CYCLE.0,
        INIT_FAILED.0,
        UPDATE_FAILED.0,
    ],
    shutdown: Some(shutdown),
    ..Module::EMPTY
};

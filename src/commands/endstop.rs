//! Endstops (the reference's endstop.c): while homing, sample a pin every
//! `rest_ticks`; once it reads the wanted value `sample_count` times in a
//! row (`sample_ticks` apart), trigger the trsync.

use klipper_protocol::format::Arg;

use crate::command::{Args, CmdResult, Module, Response, Shutdown};
use crate::commands::trsync;
use crate::hw::{Bias, GpioIn};
use crate::mcu::Mcu;
use crate::sched::TimerResult;

static ENDSTOP_STATE: Response =
    Response::new("endstop_state oid=%c homing=%c next_clock=%u pin_value=%c");

const ESF_PIN_HIGH: u8 = 1 << 0;
const ESF_HOMING: u8 = 1 << 1;

pub struct Endstop {
    pin: GpioIn,
    rest_time: u32,
    sample_time: u32,
    nextwake: u32,
    trsync: usize,
    flags: u8,
    sample_count: u8,
    trigger_count: u8,
    trigger_reason: u8,
    /// Checking a run of samples (after a first match).
    oversampling: bool,
}

fn run_timer(mcu: &mut Mcu, i: u32, waketime: u32) -> Result<TimerResult, Shutdown> {
    let i = i as usize;
    let pin = mcu.objs.of::<Endstop>()[i].pin;
    let val = mcu.gpio.read(pin);
    let e = &mut mcu.objs.of::<Endstop>()[i];
    let matches = val == (e.flags & ESF_PIN_HIGH != 0);
    if !e.oversampling {
        let nextwake = waketime.wrapping_add(e.rest_time);
        if !matches {
            return Ok(TimerResult::Reschedule(nextwake));
        }
        e.nextwake = nextwake;
        e.oversampling = true;
    } else if !matches {
        // The run broke: back to sampling at the rest interval.
        e.oversampling = false;
        e.trigger_count = e.sample_count;
        return Ok(TimerResult::Reschedule(e.nextwake));
    }
    let count = e.trigger_count.wrapping_sub(1);
    if count == 0 {
        let (t, reason) = (e.trsync, e.trigger_reason);
        trsync::do_trigger(mcu, t, reason);
        return Ok(TimerResult::Done);
    }
    e.trigger_count = count;
    Ok(TimerResult::Reschedule(
        waketime.wrapping_add(e.sample_time),
    ))
}

crate::command!(CONFIG_ENDSTOP = "config_endstop oid=%c pin=%c pull_up=%c" => config_endstop);
fn config_endstop(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, pin, pull_up);
    let pin = mcu.gpio.setup_input(pin, Bias::from_arg(pull_up))?;
    mcu.oid_new::<Endstop>(oid)?;
    mcu.objs.push(Endstop {
        pin,
        rest_time: 0,
        sample_time: 0,
        nextwake: 0,
        trsync: 0,
        flags: 0,
        sample_count: 0,
        trigger_count: 0,
        trigger_reason: 0,
        oversampling: false,
    });
    Ok(())
}

crate::command!(ENDSTOP_HOME = "endstop_home oid=%c clock=%u sample_ticks=%u sample_count=%c rest_ticks=%u pin_value=%c trsync_oid=%c trigger_reason=%c" => endstop_home);
fn endstop_home(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, clock, sample_ticks, sample_count, rest_ticks, pin_value, trsync_oid, trigger_reason);
    let (i, id) = mcu.oid_stop_timer::<Endstop>(oid, run_timer)?;
    let sample_count = sample_count as u8;
    if sample_count == 0 {
        // Homing off.
        mcu.objs.of::<Endstop>()[i].flags = 0;
        return Ok(());
    }
    let t = trsync::oid_lookup(mcu, trsync_oid)?;
    let e = &mut mcu.objs.of::<Endstop>()[i];
    e.sample_time = sample_ticks;
    e.sample_count = sample_count;
    e.rest_time = rest_ticks;
    e.oversampling = false;
    e.trigger_count = sample_count;
    e.flags = ESF_HOMING | if pin_value != 0 { ESF_PIN_HIGH } else { 0 };
    e.trsync = t;
    e.trigger_reason = trigger_reason as u8;
    mcu.add_timer(id, clock)
}

crate::command!(ENDSTOP_QUERY_STATE = "endstop_query_state oid=%c" => endstop_query_state);
fn endstop_query_state(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid);
    let i = mcu.oid_lookup::<Endstop>(oid)?;
    let pin = mcu.objs.of::<Endstop>()[i].pin;
    let val = mcu.gpio.read(pin);
    let e = &mcu.objs.of::<Endstop>()[i];
    let args = [
        Arg::Int(oid),
        Arg::Int((e.flags & ESF_HOMING != 0) as u32),
        Arg::Int(e.nextwake),
        Arg::Int(val as u32),
    ];
    mcu.send(&ENDSTOP_STATE, &args);
    Ok(())
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[CONFIG_ENDSTOP, ENDSTOP_HOME, ENDSTOP_QUERY_STATE],
    responses: &[&ENDSTOP_STATE],
    ..Module::EMPTY
};

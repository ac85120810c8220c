//! `trigger_analog` (the reference's trigger_analog.c): raw samples from a
//! sensor are range-checked, filtered by an `sos_filter` and compared with
//! a trigger value; a trigger (or an error) triggers a trsync. A monitor
//! timer ends homing with an error when the sensor stops delivering.

use klipper_protocol::dictionary::EnumValue;
use klipper_protocol::format::Arg;

use super::sos_filter;
use crate::command::{Args, CmdResult, Module, Response, Shutdown};
use crate::commands::trsync;
use crate::mcu::Mcu;
use crate::mcu::TimerId;
use crate::sched::TimerResult;

pub static TRIGGER_ANALOG_STATE: Response =
    Response::new("trigger_analog_state oid=%c homing=%c homing_clock=%u");

const TA_AWAIT_HOMING: u8 = 1 << 1;
const TA_CAN_TRIGGER: u8 = 1 << 2;

// Trigger types.
const TT_ABS_GE: u8 = 0;
const TT_GT: u8 = 1;
const TT_DIFF_PEAK_GT: u8 = 2;

// Errors, added to the host's error_reason.
pub const TE_RAW_RANGE: u8 = 0;
pub const TE_OVERFLOW: u8 = 1;
pub const TE_MONITOR: u8 = 2;
pub const TE_SENSOR_SPECIFIC: u8 = 3;

pub const ENUMERATIONS: &[(&str, &str, EnumValue)] = crate::enumerations! {
    "trigger_analog_type" {
        "abs_ge" = TT_ABS_GE, "gt" = TT_GT, "diff_peak_gt" = TT_DIFF_PEAK_GT,
    },
    "trigger_analog_error:" {
        "RAW_RANGE" = TE_RAW_RANGE, "OVERFLOW" = TE_OVERFLOW, "MONITOR" = TE_MONITOR,
        "SENSOR_SPECIFIC" = TE_SENSOR_SPECIFIC,
    },
};

#[derive(Debug, Clone, Default)]
pub struct TriggerAnalog {
    raw_min: i32,
    raw_max: i32,
    /// The sos_filter (index in the probe group's state).
    sf: usize,
    trigger_value: i32,
    trigger_peak: i32,
    trigger_type: u8,
    flags: u8,
    trigger_reason: u8,
    error_reason: u8,
    ts: Option<usize>,
    homing_clock: u32,
    monitor_max: u8,
    monitor_count: u8,
    monitor_ticks: u32,
}

/// The trigger_analog an oid names.
pub fn lookup(mcu: &Mcu, oid: u32) -> Result<usize, Shutdown> {
    mcu.oid_lookup::<TriggerAnalog>(oid)
}

fn trigger_ts(mcu: &mut Mcu, ts: Option<usize>, reason: u8) {
    if let Some(t) = ts {
        trsync::do_trigger(mcu, t, reason);
    }
}

/// The monitor timer: end homing when no sample arrived for
/// `monitor_max` periods.
fn run_timer(mcu: &mut Mcu, i: u32, waketime: u32) -> Result<TimerResult, Shutdown> {
    let i = i as usize;
    let ta = &mut mcu.objs.of::<TriggerAnalog>()[i];
    if ta.flags & TA_CAN_TRIGGER == 0 {
        return Ok(TimerResult::Done);
    }
    if ta.monitor_count > ta.monitor_max {
        let (ts, reason) = (ta.ts, ta.error_reason.wrapping_add(TE_MONITOR));
        trigger_ts(mcu, ts, reason);
        return Ok(TimerResult::Done);
    }
    ta.monitor_count = ta.monitor_count.wrapping_add(1);
    Ok(TimerResult::Reschedule(
        waketime.wrapping_add(ta.monitor_ticks),
    ))
}

fn check_trigger(ta: &mut TriggerAnalog, value: i32) -> bool {
    match ta.trigger_type {
        TT_ABS_GE => value.unsigned_abs() >= ta.trigger_value as u32,
        TT_GT => value > ta.trigger_value,
        TT_DIFF_PEAK_GT => {
            if value > ta.trigger_peak {
                ta.trigger_peak = value;
                return false;
            }
            let delta = (ta.trigger_peak as u32).wrapping_sub(value as u32);
            delta > ta.trigger_value as u32
        }
        _ => false,
    }
}

fn cancel_homing(mcu: &mut Mcu, i: usize, code: u8) {
    let ta = &mut mcu.objs.of::<TriggerAnalog>()[i];
    if ta.flags & TA_CAN_TRIGGER == 0 {
        return;
    }
    ta.flags = 0;
    let (ts, reason) = (ta.ts, ta.error_reason.wrapping_add(code));
    trigger_ts(mcu, ts, reason);
}

/// A sensor reports its own error (`sensor_code`, its enumeration).
pub fn note_error(mcu: &mut Mcu, ta: Option<usize>, sensor_code: u8) {
    if let Some(i) = ta {
        cancel_homing(mcu, i, sensor_code.wrapping_add(TE_SENSOR_SPECIFIC));
    }
}

/// A new raw sample for trigger_analog `i`.
pub fn update(mcu: &mut Mcu, i: usize, sample: i32) {
    let Some(ta) = mcu.objs.of::<TriggerAnalog>().get(i) else {
        return;
    };
    let mut flags = ta.flags;
    if flags & TA_CAN_TRIGGER == 0 {
        return;
    }
    let time = mcu.clock.now();
    if flags & TA_AWAIT_HOMING != 0 && crate::clock::is_before(time, ta.homing_clock) {
        return;
    }
    flags &= !TA_AWAIT_HOMING;
    let sf = ta.sf;
    let (raw_min, raw_max) = (ta.raw_min, ta.raw_max);
    mcu.objs.of::<TriggerAnalog>()[i].monitor_count = 0;
    if sample < raw_min || sample > raw_max {
        cancel_homing(mcu, i, TE_RAW_RANGE);
        return;
    }
    let Ok(filtered) = mcu
        .objs
        .of::<crate::commands::probe::sos_filter::SosFilter>()[sf]
        .apply(sample)
    else {
        cancel_homing(mcu, i, TE_OVERFLOW);
        return;
    };
    let ta = &mut mcu.objs.of::<TriggerAnalog>()[i];
    if check_trigger(ta, filtered) {
        flags = 0;
        ta.homing_clock = time;
        ta.flags = flags;
        let (ts, reason) = (ta.ts, ta.trigger_reason);
        trigger_ts(mcu, ts, reason);
        return;
    }
    ta.flags = flags;
}

crate::command!(CONFIG_TRIGGER_ANALOG = "config_trigger_analog oid=%c sos_filter_oid=%c" => config_trigger_analog);
fn config_trigger_analog(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, sos_filter_oid);
    let sf = sos_filter::lookup(mcu, sos_filter_oid)?;
    mcu.oid_new::<TriggerAnalog>(oid)?;
    mcu.objs.push(TriggerAnalog {
        sf,
        ..Default::default()
    });
    Ok(())
}

crate::command!(TRIGGER_ANALOG_SET_RAW_RANGE = "trigger_analog_set_raw_range oid=%c raw_min=%i raw_max=%i" => trigger_analog_set_raw_range);
fn trigger_analog_set_raw_range(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, raw_min, raw_max);
    let i = lookup(mcu, oid)?;
    let ta = &mut mcu.objs.of::<TriggerAnalog>()[i];
    ta.raw_min = raw_min as i32;
    ta.raw_max = raw_max as i32;
    Ok(())
}

crate::command!(TRIGGER_ANALOG_SET_TRIGGER = "trigger_analog_set_trigger oid=%c trigger_analog_type=%c trigger_value=%i" => trigger_analog_set_trigger);
fn trigger_analog_set_trigger(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, trigger_analog_type, trigger_value);
    let i = lookup(mcu, oid)?;
    let ta = &mut mcu.objs.of::<TriggerAnalog>()[i];
    ta.trigger_type = trigger_analog_type as u8;
    ta.trigger_value = trigger_value as i32;
    Ok(())
}

crate::command!(TRIGGER_ANALOG_HOME = "trigger_analog_home oid=%c trsync_oid=%c trigger_reason=%c error_reason=%c clock=%u monitor_ticks=%u monitor_max=%u" => trigger_analog_home);
fn trigger_analog_home(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, trsync_oid, trigger_reason, error_reason, clock, monitor_ticks, monitor_max);
    let i = lookup(mcu, oid)?;
    let id = TimerId::new(run_timer, i as u32);
    mcu.timers.remove(id);
    mcu.objs.of::<TriggerAnalog>()[i].monitor_ticks = monitor_ticks;
    if monitor_ticks == 0 {
        let ta = &mut mcu.objs.of::<TriggerAnalog>()[i];
        ta.flags = 0;
        ta.ts = None;
        return Ok(());
    }
    let ts = trsync::oid_lookup(mcu, trsync_oid)?;
    let ta = &mut mcu.objs.of::<TriggerAnalog>()[i];
    ta.ts = Some(ts);
    ta.trigger_reason = trigger_reason as u8;
    ta.error_reason = error_reason as u8;
    ta.homing_clock = clock;
    ta.monitor_max = monitor_max as u8;
    ta.monitor_count = 0;
    ta.flags = TA_AWAIT_HOMING | TA_CAN_TRIGGER;
    ta.trigger_peak = i32::MIN;
    mcu.add_timer(id, clock)
}

crate::command!(TRIGGER_ANALOG_QUERY_STATE = "trigger_analog_query_state oid=%c" => trigger_analog_query_state);
fn trigger_analog_query_state(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid);
    let i = lookup(mcu, oid)?;
    let ta = &mcu.objs.of::<TriggerAnalog>()[i];
    let args = [
        Arg::Int(oid),
        Arg::Int((ta.flags & TA_CAN_TRIGGER != 0) as u32),
        Arg::Int(ta.homing_clock),
    ];
    mcu.send(&TRIGGER_ANALOG_STATE, &args);
    Ok(())
}

crate::command!(ANALOG_IN_ATTACH_TRIGGER_ANALOG = "analog_in_attach_trigger_analog oid=%c trigger_analog_oid=%c" => analog_in_attach_trigger_analog);
/// `analog_in_attach_trigger_analog`: feed an analog input's sums to a
/// trigger_analog (the input lives in `adc.rs`).
fn analog_in_attach_trigger_analog(mcu: &mut Mcu, a: &Args) -> CmdResult {
    attach::<crate::commands::adc::AnalogIn>(mcu, a, |ai| &mut ai.trigger_analog)
}

/// `<sensor>_attach_trigger_analog oid=%c trigger_analog_oid=%c`: the
/// sensor `T` that `oid` names feeds its readings to the trigger_analog;
/// `slot` is the sensor's field that keeps it.
pub fn attach<T: 'static>(
    mcu: &mut Mcu,
    a: &Args,
    slot: fn(&mut T) -> &mut Option<usize>,
) -> CmdResult {
    crate::args!(a => oid, trigger_analog_oid);
    let i = mcu.oid_lookup::<T>(oid)?;
    let ta = lookup(mcu, trigger_analog_oid)?;
    *slot(&mut mcu.objs.of::<T>()[i]) = Some(ta);
    Ok(())
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[
        CONFIG_TRIGGER_ANALOG,
        TRIGGER_ANALOG_SET_RAW_RANGE,
        TRIGGER_ANALOG_SET_TRIGGER,
        TRIGGER_ANALOG_HOME,
        TRIGGER_ANALOG_QUERY_STATE,
        ANALOG_IN_ATTACH_TRIGGER_ANALOG,
    ],
    responses: &[&TRIGGER_ANALOG_STATE],
    enumerations: ENUMERATIONS,
    static_strings: sos_filter::STATIC_STRINGS,
    ..Module::EMPTY
};

//! Hardware PWM (the reference's pwmcmds.c with linux/hard_pwm.c):
//! `config_pwm_out`, `queue_pwm_out`, `set_pwm_out` on `pwmchipK/pwmN`
//! pins, through sysfs.

use crate::command::{Args, CmdResult, Constant, Module, Shutdown};
use crate::hw::sysfs::{PwmChannel, PWM_MAX};
use crate::mcu::Mcu;
use crate::mcu::TimerId;
use crate::moveq::{TimedReasons, TimedValues};
use crate::pins::{PWM_BASE, PWM_CHIPS, PWM_PER_CHIP};
use crate::sched::TimerResult;

const MISSED_EVENT: Shutdown = Shutdown("Missed scheduling of next hard pwm event");
const EXCEEDS_MAX_DURATION: Shutdown = Shutdown("Scheduled pwm event will exceed max_duration");
const NOT_PWM_PIN: Shutdown = Shutdown("Not a valid PWM pin");

pub struct PwmOut {
    channel: usize,
    values: TimedValues,
}

const REASONS: TimedReasons = TimedReasons {
    missed: MISSED_EVENT,
    exceeds: EXCEEDS_MAX_DURATION,
};

fn timer_id(i: usize) -> TimerId {
    TimerId::new(run_timer, i as u32)
}

/// The channel for `pin`, opened once and kept (set_pwm_out reuses it);
/// a new period reopens it.
fn channel(mcu: &mut Mcu, pin: u32, cycle_ticks: u32, value: u32) -> Result<usize, Shutdown> {
    let known = mcu
        .objs
        .of::<crate::hw::sysfs::PwmChannel>()
        .iter()
        .position(|c| c.pin == pin);
    if let Some(i) = known
        .filter(|&i| mcu.objs.of::<crate::hw::sysfs::PwmChannel>()[i].cycle_ticks() == cycle_ticks)
    {
        mcu.objs.of::<crate::hw::sysfs::PwmChannel>()[i].write(value);
        return Ok(i);
    }
    let n = pin.wrapping_sub(PWM_BASE);
    if pin < PWM_BASE || n >= PWM_CHIPS * PWM_PER_CHIP {
        return Err(NOT_PWM_PIN);
    }
    let ch = PwmChannel::open(
        &mcu.sysfs_root,
        pin,
        n / PWM_PER_CHIP,
        n % PWM_PER_CHIP,
        cycle_ticks,
        value,
    )?;
    match known {
        Some(i) => {
            mcu.objs.of::<crate::hw::sysfs::PwmChannel>()[i] = ch;
            Ok(i)
        }
        None => {
            mcu.objs.push(ch);
            Ok(mcu.objs.of::<crate::hw::sysfs::PwmChannel>().len() - 1)
        }
    }
}

fn run_timer(mcu: &mut Mcu, i: u32, waketime: u32) -> Result<TimerResult, Shutdown> {
    let i = i as usize;
    let p = &mut mcu.objs.of::<PwmOut>()[i];
    let (value, next) = p.values.pop(&mut mcu.moves, waketime, &REASONS)?;
    let channel = p.channel;
    mcu.objs.of::<crate::hw::sysfs::PwmChannel>()[channel].write(value);
    Ok(next.map_or(TimerResult::Done, TimerResult::Reschedule))
}

crate::command!(CONFIG_PWM_OUT = "config_pwm_out oid=%c pin=%u cycle_ticks=%u value=%hu default_value=%hu max_duration=%u" => config_pwm_out);
fn config_pwm_out(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, pin, cycle_ticks, value, default_value, max_duration);
    let channel = channel(mcu, pin, cycle_ticks, value & 0xffff)?;
    mcu.oid_new::<PwmOut>(oid)?;
    mcu.objs.push(PwmOut {
        channel,
        values: TimedValues::new(default_value & 0xffff, max_duration),
    });
    Ok(())
}

crate::command!(QUEUE_PWM_OUT = "queue_pwm_out oid=%c clock=%u value=%hu" => queue_pwm_out);
fn queue_pwm_out(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, clock, value);
    let i = mcu.oid_lookup::<PwmOut>(oid)?;
    let (id, when) = (timer_id(i), clock);
    let due = mcu.timers.waketime_of(id);
    if mcu.objs.of::<PwmOut>()[i].values.push(
        &mut mcu.moves,
        when,
        value & 0xffff,
        due,
        &REASONS,
    )? {
        mcu.timers.remove(id);
        mcu.add_timer(id, when)?;
    }
    Ok(())
}

crate::command!(SET_PWM_OUT = "set_pwm_out pin=%u cycle_ticks=%u value=%hu" => set_pwm_out);
fn set_pwm_out(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => pin, cycle_ticks, value);
    channel(mcu, pin, cycle_ticks, value & 0xffff).map(|_| ())
}

pub fn shutdown(mcu: &mut Mcu) {
    for i in 0..mcu.objs.of::<PwmOut>().len() {
        let p = &mut mcu.objs.of::<PwmOut>()[i];
        let (channel, value) = (p.channel, p.values.default_value);
        p.values.clear(&mut mcu.moves);
        mcu.objs.of::<crate::hw::sysfs::PwmChannel>()[channel].write(value);
    }
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[CONFIG_PWM_OUT, QUEUE_PWM_OUT, SET_PWM_OUT],
    constants: &[("PWM_MAX", Constant::Int(PWM_MAX as i64))],
    static_strings: &[MISSED_EVENT.0, EXCEEDS_MAX_DURATION.0, NOT_PWM_PIN.0],
    shutdown: Some(shutdown),
    ..Module::EMPTY
};

//! Hardware PWM (the reference's pwmcmds.c with linux/hard_pwm.c):
//! `config_pwm_out`, `queue_pwm_out`, `set_pwm_out` on `pwmchipK/pwmN`
//! pins, through sysfs.

use crate::command::{Args, CmdResult, Command, Constant, Module, Shutdown};
use crate::hw::sysfs::{PwmChannel, PWM_MAX};
use crate::mcu::{Mcu, ObjKind};
use crate::moveq::{TimedReasons, TimedValues};
use crate::pins::{PWM_BASE, PWM_CHIPS, PWM_PER_CHIP};
use crate::sched::{TimerId, TimerResult};

const MISSED_EVENT: Shutdown = Shutdown("Missed scheduling of next hard pwm event");
const EXCEEDS_MAX_DURATION: Shutdown = Shutdown("Scheduled pwm event will exceed max_duration");
const NOT_PWM_PIN: Shutdown = Shutdown("Not a valid PWM pin");

pub const TIMER_KIND: u32 = 8 << 24;

pub struct PwmOut {
    channel: usize,
    values: TimedValues,
}

const REASONS: TimedReasons = TimedReasons {
    missed: MISSED_EVENT,
    exceeds: EXCEEDS_MAX_DURATION,
};

fn timer_id(i: usize) -> TimerId {
    TimerId(TIMER_KIND | i as u32)
}

/// The channel for `pin`, opened once and kept (set_pwm_out reuses it);
/// a new period reopens it.
fn channel(mcu: &mut Mcu, pin: u32, cycle_ticks: u32, value: u32) -> Result<usize, Shutdown> {
    let known = mcu.pwm_channels.iter().position(|c| c.pin == pin);
    if let Some(i) = known.filter(|&i| mcu.pwm_channels[i].cycle_ticks() == cycle_ticks) {
        mcu.pwm_channels[i].write(value);
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
            mcu.pwm_channels[i] = ch;
            Ok(i)
        }
        None => {
            mcu.pwm_channels.push(ch);
            Ok(mcu.pwm_channels.len() - 1)
        }
    }
}

pub fn run_timer(mcu: &mut Mcu, i: usize, waketime: u32) -> Result<TimerResult, Shutdown> {
    let p = &mut mcu.pwm_outs[i];
    let (value, next) = p.values.pop(&mut mcu.moves, waketime, &REASONS)?;
    mcu.pwm_channels[p.channel].write(value);
    Ok(next.map_or(TimerResult::Done, TimerResult::Reschedule))
}

fn config_pwm_out(mcu: &mut Mcu, a: &Args) -> CmdResult {
    let channel = channel(mcu, a.get(1), a.get(2), a.get(3) & 0xffff)?;
    let index = mcu.pwm_outs.len() as u16;
    mcu.oid_alloc(a.get(0), ObjKind::PwmOut, index)?;
    mcu.pwm_outs.push(PwmOut {
        channel,
        values: TimedValues::new(a.get(4) & 0xffff, a.get(5)),
    });
    Ok(())
}

fn queue_pwm_out(mcu: &mut Mcu, a: &Args) -> CmdResult {
    let i = mcu.oid_lookup(a.get(0), ObjKind::PwmOut)? as usize;
    let (id, when) = (timer_id(i), a.get(1));
    let due = mcu.timers.waketime_of(id);
    if mcu.pwm_outs[i]
        .values
        .push(&mut mcu.moves, when, a.get(2) & 0xffff, due, &REASONS)?
    {
        mcu.timers.remove(id);
        let now = mcu.clock.now();
        mcu.timers.add(id, when, now)?;
    }
    Ok(())
}

fn set_pwm_out(mcu: &mut Mcu, a: &Args) -> CmdResult {
    channel(mcu, a.get(0), a.get(1), a.get(2) & 0xffff).map(|_| ())
}

pub fn shutdown(mcu: &mut Mcu) {
    for p in mcu.pwm_outs.iter_mut() {
        mcu.pwm_channels[p.channel].write(p.values.default_value);
        p.values.clear(&mut mcu.moves);
    }
}

static COMMANDS: [Command; 3] = [
    Command::new(
        "config_pwm_out oid=%c pin=%u cycle_ticks=%u value=%hu default_value=%hu max_duration=%u",
        0,
        config_pwm_out,
    ),
    Command::new("queue_pwm_out oid=%c clock=%u value=%hu", 0, queue_pwm_out),
    Command::new(
        "set_pwm_out pin=%u cycle_ticks=%u value=%hu",
        0,
        set_pwm_out,
    ),
];

pub static MODULE: Module = Module {
    commands: &COMMANDS,
    responses: &[],
    constants: &[("PWM_MAX", Constant::Int(PWM_MAX as i64))],
    enumerations: &[],
    static_strings: &[MISSED_EVENT.0, EXCEEDS_MAX_DURATION.0, NOT_PWM_PIN.0],
};

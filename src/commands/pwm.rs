//! Hardware PWM (the reference's pwmcmds.c with linux/hard_pwm.c):
//! `config_pwm_out`, `queue_pwm_out`, `set_pwm_out` on `pwmchipK/pwmN`
//! pins, through sysfs.

use crate::clock::is_before;
use crate::command::{Args, CmdResult, Command, Constant, Module, Shutdown};
use crate::hw::sysfs::{PwmChannel, PWM_MAX};
use crate::mcu::{Mcu, ObjKind};
use crate::moveq::{Move, MoveQueue};
use crate::pins::{PWM_BASE, PWM_CHIPS, PWM_PER_CHIP};
use crate::sched::{TimerId, TimerResult};

const MISSED_EVENT: Shutdown = Shutdown("Missed scheduling of next hard pwm event");
const EXCEEDS_MAX_DURATION: Shutdown = Shutdown("Scheduled pwm event will exceed max_duration");
const NOT_PWM_PIN: Shutdown = Shutdown("Not a valid PWM pin");

pub const TIMER_KIND: u32 = 8 << 24;

pub struct PwmOut {
    channel: usize,
    max_duration: u32,
    default_value: u32,
    mq: MoveQueue,
    /// The safety timeout is running (no update queued).
    ending: bool,
}

fn timer_id(i: usize) -> TimerId {
    TimerId(TIMER_KIND | i as u32)
}

/// The channel for `pin`, opened once and kept (set_pwm_out reuses it).
fn channel(mcu: &mut Mcu, pin: u32, cycle_ticks: u32, value: u32) -> Result<usize, Shutdown> {
    if let Some(i) = mcu
        .pwm_channels
        .iter()
        .position(|c| c.pin == pin && c.cycle_ticks() == cycle_ticks)
    {
        mcu.pwm_channels[i].write(value);
        return Ok(i);
    }
    let n = pin.wrapping_sub(PWM_BASE);
    if pin < PWM_BASE || n >= PWM_CHIPS * PWM_PER_CHIP {
        return Err(NOT_PWM_PIN);
    }
    // A new period: drop an earlier opening of this pin first.
    if let Some(i) = mcu.pwm_channels.iter().position(|c| c.pin == pin) {
        let ch = PwmChannel::open(
            &mcu.sysfs_root,
            pin,
            n / PWM_PER_CHIP,
            n % PWM_PER_CHIP,
            cycle_ticks,
            value,
        )?;
        mcu.pwm_channels[i] = ch;
        return Ok(i);
    }
    let ch = PwmChannel::open(
        &mcu.sysfs_root,
        pin,
        n / PWM_PER_CHIP,
        n % PWM_PER_CHIP,
        cycle_ticks,
        value,
    )?;
    mcu.pwm_channels.push(ch);
    Ok(mcu.pwm_channels.len() - 1)
}

pub fn run_timer(mcu: &mut Mcu, i: usize, waketime: u32) -> Result<TimerResult, Shutdown> {
    if mcu.pwm_outs[i].ending {
        return Err(MISSED_EVENT);
    }
    let mut q = mcu.pwm_outs[i].mq;
    let Some(m) = mcu.moves.pop(&mut q) else {
        return Ok(TimerResult::Done);
    };
    let next = mcu.moves.first(&q);
    let p = &mut mcu.pwm_outs[i];
    p.mq = q;
    let value = m.b;
    mcu.pwm_channels[p.channel].write(value);
    let timed = value != p.default_value && p.max_duration != 0;
    match next {
        None => {
            if !timed {
                return Ok(TimerResult::Done);
            }
            p.ending = true;
            Ok(TimerResult::Reschedule(
                waketime.wrapping_add(p.max_duration),
            ))
        }
        Some(n) => {
            if timed && is_before(waketime.wrapping_add(p.max_duration), n.a) {
                return Err(EXCEEDS_MAX_DURATION);
            }
            Ok(TimerResult::Reschedule(n.a))
        }
    }
}

fn config_pwm_out(mcu: &mut Mcu, a: &Args) -> CmdResult {
    let channel = channel(mcu, a.get(1), a.get(2), a.get(3) & 0xffff)?;
    let index = mcu.pwm_outs.len() as u16;
    mcu.oid_alloc(a.get(0), ObjKind::PwmOut, index)?;
    mcu.pwm_outs.push(PwmOut {
        channel,
        max_duration: a.get(5),
        default_value: a.get(4) & 0xffff,
        mq: MoveQueue::default(),
        ending: false,
    });
    Ok(())
}

fn queue_pwm_out(mcu: &mut Mcu, a: &Args) -> CmdResult {
    let i = mcu.oid_lookup(a.get(0), ObjKind::PwmOut)? as usize;
    let when = a.get(1);
    let mut q = mcu.pwm_outs[i].mq;
    let first = mcu.moves.push(
        &mut q,
        Move {
            a: when,
            b: a.get(2) & 0xffff,
            c: 0,
        },
    )?;
    mcu.pwm_outs[i].mq = q;
    if !first {
        return Ok(());
    }
    let id = timer_id(i);
    let ending_at = if mcu.pwm_outs[i].ending {
        mcu.timers.waketime_of(id)
    } else {
        None
    };
    mcu.timers.remove(id);
    if let Some(end) = ending_at {
        if is_before(end, when) {
            return Err(EXCEEDS_MAX_DURATION);
        }
    }
    mcu.pwm_outs[i].ending = false;
    let now = mcu.clock.now();
    mcu.timers.add(id, when, now)
}

fn set_pwm_out(mcu: &mut Mcu, a: &Args) -> CmdResult {
    channel(mcu, a.get(0), a.get(1), a.get(2) & 0xffff).map(|_| ())
}

pub fn shutdown(mcu: &mut Mcu) {
    for p in mcu.pwm_outs.iter_mut() {
        mcu.pwm_channels[p.channel].write(p.default_value);
        p.ending = false;
        let mut q = p.mq;
        mcu.moves.clear(&mut q);
        p.mq = q;
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

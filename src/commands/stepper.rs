//! Steppers (the reference's stepper.c): timed step pulses from a queue of
//! `queue_step` moves, direction changes, position reports, and stopping
//! when a trsync triggers.
//!
//! This is the reference's "fully scheduled" stepping: without
//! `invert_step=-1`, a step is two timer events (step, then unstep at least
//! `step_pulse_ticks` later); with it (`STEPPER_STEP_BOTH_EDGE`), every
//! toggle of the step line is a step.

use klipper_protocol::format::Arg;

use crate::clock::{from_us, is_before, Spin};
use crate::command::{Args, CmdResult, Constant, Module, Response, Shutdown};
use crate::commands::trsync;
use crate::hw::GpioOut;
use crate::mcu::Mcu;
use crate::mcu::TimerId;
use crate::moveq::{Move, MoveQueue};
use crate::sched::TimerResult;

static STEPPER_POSITION: Response = Response::new("stepper_position oid=%c pos=%i");

const TOO_FAR_IN_PAST: Shutdown = Shutdown("Stepper too far in past");
const INVALID_COUNT: Shutdown = Shutdown("Invalid count parameter");
const RESET_WHILE_ACTIVE: Shutdown = Shutdown("Can't reset time when stepper active");

const POSITION_BIAS: u32 = 0x4000_0000;

const SF_LAST_DIR: u8 = 1 << 0;
const SF_NEXT_DIR: u8 = 1 << 1;
const SF_INVERT_STEP: u8 = 1 << 2;
const SF_NEED_RESET: u8 = 1 << 3;
const SF_SINGLE_SCHED: u8 = 1 << 4;

/// Move flag: the direction changes before this move.
const MF_DIR: u32 = 1;

pub struct Stepper {
    interval: u32,
    add: u32,
    count: u32,
    next_step_time: u32,
    step_pulse_ticks: u32,
    step_pin: GpioOut,
    dir_pin: GpioOut,
    step_level: bool,
    dir_level: bool,
    position: u32,
    mq: MoveQueue,
    flags: u8,
    /// The timer's wake time (valid while it is scheduled).
    waketime: u32,
}

fn timer_id(i: usize) -> TimerId {
    TimerId::new(step_event, i as u32)
}

fn toggle_dir(mcu: &mut Mcu, i: usize) {
    let s = &mut mcu.objs.of::<Stepper>()[i];
    s.dir_level = !s.dir_level;
    mcu.gpio.write(s.dir_pin, s.dir_level);
}

/// Load the next queued move. Its wake time is left in `waketime`.
fn load_next(mcu: &mut Mcu, i: usize) -> Result<TimerResult, Shutdown> {
    let mut q = mcu.objs.of::<Stepper>()[i].mq;
    let Some(m) = mcu.moves.pop(&mut q) else {
        mcu.objs.of::<Stepper>()[i].count = 0;
        return Ok(TimerResult::Done);
    };
    let s = &mut mcu.objs.of::<Stepper>()[i];
    s.mq = q;
    let (interval, count, add) = (m.a, m.b & 0xffff, (m.b >> 16) as u16 as i16 as i32 as u32);
    let need_dir_change = m.c & MF_DIR != 0;
    // The position counts every step of the move now, so a position
    // query mid-move can subtract the steps not yet taken.
    let pos = if need_dir_change {
        s.position.wrapping_neg()
    } else {
        s.position
    };
    s.position = pos.wrapping_add(count);
    s.add = add;
    s.interval = interval.wrapping_add(add);
    let was_active = s.count != 0;
    let min_next_time = s.waketime;
    s.next_step_time = s.next_step_time.wrapping_add(interval);
    s.waketime = s.next_step_time;
    s.count = if s.flags & SF_SINGLE_SCHED != 0 {
        count
    } else {
        count * 2
    };
    if was_active && is_before(s.next_step_time, min_next_time) {
        // Stepping and the next step lands before the last unstep is done.
        let diff = s.next_step_time.wrapping_sub(min_next_time) as i32;
        if diff < -(from_us(1000) as i32) {
            return Err(TOO_FAR_IN_PAST);
        }
        s.waketime = min_next_time;
    }
    if was_active && need_dir_change {
        // Keep the minimum time between a step edge and a direction change.
        if s.flags & SF_SINGLE_SCHED != 0 {
            // Host-given (step_pulse_ticks): bounded like every spin.
            Spin::start(&mcu.clock).until(&mcu.clock, min_next_time);
        }
        toggle_dir(mcu, i);
        let min_next = mcu
            .clock
            .now()
            .wrapping_add(mcu.objs.of::<Stepper>()[i].step_pulse_ticks);
        let s = &mut mcu.objs.of::<Stepper>()[i];
        if is_before(s.waketime, min_next) {
            s.waketime = min_next;
        }
        return Ok(TimerResult::Reschedule(s.waketime));
    }
    if need_dir_change {
        toggle_dir(mcu, i);
    }
    Ok(TimerResult::Reschedule(
        mcu.objs.of::<Stepper>()[i].waketime,
    ))
}

/// A step (or unstep) event: stepper `i`'s timer.
pub fn step_event(mcu: &mut Mcu, i: u32, waketime: u32) -> Result<TimerResult, Shutdown> {
    step_event_inline(mcu, i, waketime)
}

/// [`step_event`], for the timer loop to inline (it calls this when the
/// timer is `step_event`: the reference's CONFIG_INLINE_STEPPER_HACK).
#[inline(always)]
pub fn step_event_inline(mcu: &mut Mcu, i: u32, _waketime: u32) -> Result<TimerResult, Shutdown> {
    let i = i as usize;
    // The hottest path of the loop: one table lookup for the whole event.
    let Mcu {
        objs, gpio, clock, ..
    } = mcu;
    let s = &mut objs.of::<Stepper>()[i];
    s.step_level = !s.step_level;
    gpio.write(s.step_pin, s.step_level);
    let now = clock.now();
    let min_next_time = now.wrapping_add(s.step_pulse_ticks);
    let count = s.count.wrapping_sub(1);
    if count & 1 != 0 && s.flags & SF_SINGLE_SCHED == 0 {
        // Unstep next, as soon as the pulse has been long enough.
        s.count = count;
        s.waketime = min_next_time;
        return Ok(TimerResult::Reschedule(min_next_time));
    }
    if count != 0 {
        s.next_step_time = s.next_step_time.wrapping_add(s.interval);
        s.interval = s.interval.wrapping_add(s.add);
        s.count = count;
        s.waketime = if is_before(s.next_step_time, min_next_time) {
            min_next_time
        } else {
            s.next_step_time
        };
        return Ok(TimerResult::Reschedule(s.waketime));
    }
    s.waketime = min_next_time;
    load_next(mcu, i)
}

crate::command!(CONFIG_STEPPER = "config_stepper oid=%c step_pin=%c dir_pin=%c invert_step=%c step_pulse_ticks=%u" => config_stepper);
fn config_stepper(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, step_pin, dir_pin, invert_step, step_pulse_ticks);
    let invert_step = invert_step as u8 as i8;
    let flags = match invert_step {
        v if v > 0 => SF_INVERT_STEP,
        v if v < 0 => SF_SINGLE_SCHED,
        _ => 0,
    };
    let step_level = flags & SF_INVERT_STEP != 0;
    let step_pin = mcu.gpio.setup_output(step_pin, step_level)?;
    let dir_pin = mcu.gpio.setup_output(dir_pin, false)?;
    mcu.oid_new::<Stepper>(oid)?;
    mcu.objs.push(Stepper {
        interval: 0,
        add: 0,
        count: 0,
        next_step_time: 0,
        step_pulse_ticks,
        step_pin,
        dir_pin,
        step_level,
        dir_level: false,
        position: POSITION_BIAS.wrapping_neg(),
        mq: MoveQueue::default(),
        flags,
        waketime: 0,
    });
    Ok(())
}

crate::command!(QUEUE_STEP = "queue_step oid=%c interval=%u count=%hu add=%hi" => queue_step);
fn queue_step(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, interval, count, add);
    let i = mcu.oid_lookup::<Stepper>(oid)?;
    let count = count & 0xffff;
    if count == 0 {
        return Err(INVALID_COUNT);
    }
    let mut m = Move {
        a: interval,
        b: count | ((add & 0xffff) << 16),
        c: 0,
    };
    let s = &mcu.objs.of::<Stepper>()[i];
    let mut flags = s.flags;
    if (flags & SF_LAST_DIR != 0) != (flags & SF_NEXT_DIR != 0) {
        flags ^= SF_LAST_DIR;
        m.c |= MF_DIR;
    }
    if s.count == 0 && flags & SF_NEED_RESET != 0 {
        // Stopped by a trsync: moves are dropped until reset_step_clock.
        return Ok(());
    }
    let active = s.count != 0;
    let mut q = s.mq;
    mcu.moves.push(&mut q, m)?;
    let s = &mut mcu.objs.of::<Stepper>()[i];
    s.mq = q;
    s.flags = flags;
    if !active {
        load_next(mcu, i)?;
        let now = mcu.clock.now();
        let when = mcu.objs.of::<Stepper>()[i].waketime;
        mcu.timers.add(timer_id(i), when, now)?;
    }
    Ok(())
}

crate::command!(SET_NEXT_STEP_DIR = "set_next_step_dir oid=%c dir=%c" => set_next_step_dir);
fn set_next_step_dir(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, dir);
    let i = mcu.oid_lookup::<Stepper>(oid)?;
    let s = &mut mcu.objs.of::<Stepper>()[i];
    s.flags = (s.flags & !SF_NEXT_DIR) | if dir != 0 { SF_NEXT_DIR } else { 0 };
    Ok(())
}

crate::command!(RESET_STEP_CLOCK = "reset_step_clock oid=%c clock=%u" => reset_step_clock);
fn reset_step_clock(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, clock);
    let i = mcu.oid_lookup::<Stepper>(oid)?;
    let s = &mut mcu.objs.of::<Stepper>()[i];
    if s.count != 0 {
        return Err(RESET_WHILE_ACTIVE);
    }
    s.next_step_time = clock;
    s.waketime = clock;
    s.flags &= !SF_NEED_RESET;
    Ok(())
}

fn position(s: &Stepper) -> u32 {
    let pending = if s.flags & SF_SINGLE_SCHED != 0 {
        s.count
    } else {
        s.count / 2
    };
    let p = s.position.wrapping_sub(pending);
    // The top bit marks a reversed direction.
    if p & 0x8000_0000 != 0 {
        p.wrapping_neg()
    } else {
        p
    }
}

crate::command!(STEPPER_GET_POSITION = "stepper_get_position oid=%c" => stepper_get_position);
fn stepper_get_position(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid);
    let i = mcu.oid_lookup::<Stepper>(oid)?;
    let pos = position(&mcu.objs.of::<Stepper>()[i]).wrapping_sub(POSITION_BIAS);
    mcu.send(&STEPPER_POSITION, &[Arg::Int(oid), Arg::Int(pos)]);
    Ok(())
}

/// Stop stepper `i` at once (trsync trigger, shutdown): drop its queue and
/// wait for a `reset_step_clock`.
pub fn stop(mcu: &mut Mcu, i: usize) {
    mcu.timers.remove(timer_id(i));
    let mut q = mcu.objs.of::<Stepper>()[i].mq;
    mcu.moves.clear(&mut q);
    let s = &mut mcu.objs.of::<Stepper>()[i];
    s.mq = q;
    s.next_step_time = 0;
    s.waketime = 0;
    s.position = position(s).wrapping_neg();
    s.count = 0;
    s.flags = (s.flags & (SF_INVERT_STEP | SF_SINGLE_SCHED)) | SF_NEED_RESET;
    s.dir_level = false;
    mcu.gpio.write(s.dir_pin, false);
    if s.flags & SF_SINGLE_SCHED == 0 {
        // Return the step line to its idle level.
        s.step_level = s.flags & SF_INVERT_STEP != 0;
        mcu.gpio.write(s.step_pin, s.step_level);
    }
}

crate::command!(STEPPER_STOP_ON_TRIGGER = "stepper_stop_on_trigger oid=%c trsync_oid=%c" => stepper_stop_on_trigger);
fn stepper_stop_on_trigger(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, trsync_oid);
    let i = mcu.oid_lookup::<Stepper>(oid)?;
    let t = trsync::oid_lookup(mcu, trsync_oid)?;
    trsync::add_signal(mcu, t, i as u16)
}

pub fn shutdown(mcu: &mut Mcu) {
    for i in 0..mcu.objs.of::<Stepper>().len() {
        stop(mcu, i);
    }
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[
        CONFIG_STEPPER,
        QUEUE_STEP,
        SET_NEXT_STEP_DIR,
        RESET_STEP_CLOCK,
        STEPPER_GET_POSITION,
        STEPPER_STOP_ON_TRIGGER,
    ],
    responses: &[&STEPPER_POSITION],
    constants: &[("STEPPER_STEP_BOTH_EDGE", Constant::Int(1))],
    static_strings: &[TOO_FAR_IN_PAST.0, INVALID_COUNT.0, RESET_WHILE_ACTIVE.0],
    shutdown: Some(shutdown),
    ..Module::EMPTY
};

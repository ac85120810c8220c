//! Digital outputs and software PWM (the reference's gpiocmds.c):
//! `config_digital_out`, `queue_digital_out`, `update_digital_out`,
//! `set_digital_out`, `set_digital_out_pwm_cycle`.

use crate::clock::is_before;
use crate::command::{Args, CmdResult, Module, Shutdown};
use crate::hw::GpioOut;
use crate::mcu::Mcu;
use crate::mcu::TimerId;
use crate::moveq::{Move, MoveQueue};
use crate::sched::TimerResult;

const MISSED_EVENT: Shutdown = Shutdown("Missed scheduling of next digital out event");
const EXCEEDS_MAX_DURATION: Shutdown =
    Shutdown("Scheduled digital out event will exceed max_duration");
const CYCLE_WHILE_PENDING: Shutdown =
    Shutdown("Can not set soft pwm cycle ticks while updates pending");
const UPDATE_WITH_QUEUE: Shutdown = Shutdown("update_digital_out not valid with active queue");

const DF_ON: u8 = 1 << 0;
const DF_TOGGLING: u8 = 1 << 1;
const DF_CHECK_END: u8 = 1 << 2;
const DF_DEFAULT_ON: u8 = 1 << 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Apply the next queued setting.
    Load,
    /// Toggle the pin (software PWM).
    Toggle,
}

pub struct DigitalOut {
    pin: GpioOut,
    on_duration: u32,
    off_duration: u32,
    end_time: u32,
    max_duration: u32,
    cycle_time: u32,
    mq: MoveQueue,
    flags: u8,
    next: Next,
    waketime: u32,
}

fn timer_id(index: u16) -> TimerId {
    TimerId::new(run_timer, index as u32)
}

/// Run digital output `index`'s timer, due at `waketime`.
fn run_timer(mcu: &mut Mcu, index: u32, waketime: u32) -> Result<TimerResult, Shutdown> {
    let i = index as usize;
    match mcu.objs.of::<DigitalOut>()[i].next {
        Next::Toggle => Ok(toggle_event(mcu, i, waketime)),
        Next::Load => load_event(mcu, i, waketime),
    }
}

fn toggle_event(mcu: &mut Mcu, i: usize, waketime: u32) -> TimerResult {
    let d = &mut mcu.objs.of::<DigitalOut>()[i];
    d.flags ^= DF_ON;
    let on = d.flags & DF_ON != 0;
    mcu.gpio.write(d.pin, on);
    let mut wake = waketime.wrapping_add(if on { d.on_duration } else { d.off_duration });
    if d.flags & DF_CHECK_END != 0 && !is_before(wake, d.end_time) {
        // End of this pulse train: the next event loads new settings.
        d.next = Next::Load;
        wake = d.end_time;
    }
    d.waketime = wake;
    TimerResult::Reschedule(wake)
}

fn load_event(mcu: &mut Mcu, i: usize, waketime: u32) -> Result<TimerResult, Shutdown> {
    let mut q = mcu.objs.of::<DigitalOut>()[i].mq;
    let m = mcu.moves.pop(&mut q).ok_or(MISSED_EVENT)?;
    let following = mcu.moves.first(&q);
    let d = &mut mcu.objs.of::<DigitalOut>()[i];
    d.mq = q;
    let on_duration = m.b;
    let mut flags = if on_duration != 0 { DF_ON } else { 0 };
    mcu.gpio.write(d.pin, flags != 0);

    let mut end_time = 0;
    if flags == 0 || on_duration >= d.cycle_time {
        // Steady on or off: only a change away from the default is timed.
        let default_on = d.flags & DF_DEFAULT_ON != 0;
        if (flags != 0) != default_on && d.max_duration != 0 {
            end_time = waketime.wrapping_add(d.max_duration);
            flags |= DF_CHECK_END;
        }
    } else {
        flags |= DF_TOGGLING;
        if d.max_duration != 0 {
            end_time = waketime.wrapping_add(d.max_duration);
            flags |= DF_CHECK_END;
        }
    }
    if let Some(nm) = following {
        if flags & DF_CHECK_END != 0 && is_before(end_time, nm.a) {
            return Err(EXCEEDS_MAX_DURATION);
        }
        end_time = nm.a;
        flags |= DF_CHECK_END;
    }
    d.end_time = end_time;
    d.flags = flags | (d.flags & DF_DEFAULT_ON);

    if flags & DF_TOGGLING == 0 {
        if flags & DF_CHECK_END == 0 {
            return Ok(TimerResult::Done);
        }
        d.waketime = end_time;
        return Ok(TimerResult::Reschedule(end_time));
    }
    let wake = waketime.wrapping_add(on_duration);
    if flags & DF_CHECK_END != 0 && !is_before(wake, end_time) {
        d.waketime = end_time;
        return Ok(TimerResult::Reschedule(end_time));
    }
    d.next = Next::Toggle;
    d.waketime = wake;
    d.on_duration = on_duration;
    d.off_duration = d.cycle_time.wrapping_sub(on_duration);
    Ok(TimerResult::Reschedule(wake))
}

crate::command!(CONFIG_DIGITAL_OUT = "config_digital_out oid=%c pin=%u value=%c default_value=%c max_duration=%u" => config_digital_out);
fn config_digital_out(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, pin, value, default_value, max_duration);
    let value = value != 0;
    let pin = mcu.gpio.setup_output(pin, value)?;
    mcu.oid_new::<DigitalOut>(oid)?;
    mcu.objs.push(DigitalOut {
        pin,
        on_duration: 0,
        off_duration: 0,
        end_time: 0,
        max_duration,
        cycle_time: 0,
        mq: MoveQueue::default(),
        flags: (if value { DF_ON } else { 0 })
            | (if default_value != 0 { DF_DEFAULT_ON } else { 0 }),
        next: Next::Load,
        waketime: 0,
    });
    Ok(())
}

crate::command!(SET_DIGITAL_OUT_PWM_CYCLE = "set_digital_out_pwm_cycle oid=%c cycle_ticks=%u" => set_digital_out_pwm_cycle);
fn set_digital_out_pwm_cycle(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, cycle_ticks);
    let i = mcu.oid_lookup::<DigitalOut>(oid)?;
    let d = &mut mcu.objs.of::<DigitalOut>()[i];
    if !d.mq.is_empty() {
        return Err(CYCLE_WHILE_PENDING);
    }
    d.cycle_time = cycle_ticks;
    Ok(())
}

crate::command!(QUEUE_DIGITAL_OUT = "queue_digital_out oid=%c clock=%u on_ticks=%u" => queue_digital_out);
fn queue_digital_out(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, clock, on_ticks);
    let i = mcu.oid_lookup::<DigitalOut>(oid)?;
    let time = clock;
    let mut q = mcu.objs.of::<DigitalOut>()[i].mq;
    let first = mcu.moves.push(
        &mut q,
        Move {
            a: time,
            b: on_ticks,
            c: 0,
        },
    )?;
    mcu.objs.of::<DigitalOut>()[i].mq = q;
    if !first {
        return Ok(());
    }
    let now = mcu.clock.now();
    let d = &mut mcu.objs.of::<DigitalOut>()[i];
    let flags = d.flags;
    if flags & DF_CHECK_END != 0 && is_before(d.end_time, time) {
        return Err(EXCEEDS_MAX_DURATION);
    }
    d.end_time = time;
    d.flags = flags | DF_CHECK_END;
    if flags & DF_TOGGLING != 0 && is_before(d.waketime, time) {
        // The toggle timer will load the new setting when it gets there.
        return Ok(());
    }
    d.next = Next::Load;
    d.waketime = time;
    mcu.timers.remove(timer_id(i as u16));
    mcu.timers.add(timer_id(i as u16), time, now)
}

crate::command!(UPDATE_DIGITAL_OUT = "update_digital_out oid=%c value=%c" => update_digital_out);
fn update_digital_out(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, value);
    let i = mcu.oid_lookup::<DigitalOut>(oid)?;
    mcu.timers.remove(timer_id(i as u16));
    let now = mcu.clock.now();
    let d = &mut mcu.objs.of::<DigitalOut>()[i];
    if !d.mq.is_empty() {
        return Err(UPDATE_WITH_QUEUE);
    }
    let on = value != 0;
    let on_flag = if on { DF_ON } else { 0 };
    let default_flag = d.flags & DF_DEFAULT_ON;
    mcu.gpio.write(d.pin, on);
    if on != (default_flag != 0) && d.max_duration != 0 {
        let t = now.wrapping_add(d.max_duration);
        d.end_time = t;
        d.waketime = t;
        d.next = Next::Load;
        d.flags = default_flag | on_flag | DF_CHECK_END;
        mcu.timers.add(timer_id(i as u16), t, now)
    } else {
        d.flags = default_flag | on_flag;
        Ok(())
    }
}

crate::command!(SET_DIGITAL_OUT = "set_digital_out pin=%u value=%c" => set_digital_out);
fn set_digital_out(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => pin, value);
    mcu.gpio.setup_output(pin, value != 0).map(|_| ())
}

/// Every output back to its default; queued changes dropped.
pub fn shutdown(mcu: &mut Mcu) {
    for d in mcu.objs.of::<DigitalOut>().iter_mut() {
        let default_on = d.flags & DF_DEFAULT_ON != 0;
        mcu.gpio.write(d.pin, default_on);
        d.flags = if default_on { DF_ON | DF_DEFAULT_ON } else { 0 };
        d.next = Next::Load;
        let mut q = d.mq;
        mcu.moves.clear(&mut q);
        d.mq = q;
    }
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[
        CONFIG_DIGITAL_OUT,
        SET_DIGITAL_OUT_PWM_CYCLE,
        QUEUE_DIGITAL_OUT,
        UPDATE_DIGITAL_OUT,
        SET_DIGITAL_OUT,
    ],
    static_strings: &[
        MISSED_EVENT.0,
        EXCEEDS_MAX_DURATION.0,
        CYCLE_WHILE_PENDING.0,
        UPDATE_WITH_QUEUE.0,
        crate::moveq::MOVE_QUEUE_OVERFLOW.0,
    ],
    shutdown: Some(shutdown),
    ..Module::EMPTY
};

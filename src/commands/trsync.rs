//! Trigger synchronisation (the reference's trsync.c): a trsync collects
//! "stop" signals (steppers) that all fire when it is triggered, by an
//! endstop, by the host, or by its timeout.

use klipper_protocol::format::Arg;

use crate::command::{Args, CmdResult, Module, Response, Shutdown};
use crate::commands::stepper;
use crate::mcu::Mcu;
use crate::mcu::TimerId;
use crate::sched::TimerResult;

static TRSYNC_STATE: Response =
    Response::new("trsync_state oid=%c can_trigger=%c trigger_reason=%c clock=%u");

pub const SIGNAL_ACTIVE: Shutdown = Shutdown("Can't add signal that is already active");

const TSF_CAN_TRIGGER: u8 = 1 << 0;
const TSF_REPORT: u8 = 1 << 2;

/// Most steppers one trsync stops (a printer has far fewer).
const MAX_SIGNALS: usize = 32;

#[derive(Default)]
pub struct Trsync {
    oid: u8,
    report_ticks: u32,
    report_time: u32,
    /// Steppers (by index) to stop on trigger.
    signals: heapless::Vec<u16, MAX_SIGNALS>,
    flags: u8,
    trigger_reason: u8,
    expire_reason: u8,
}

/// The trsync an oid names (for other families' commands).
pub fn oid_lookup(mcu: &Mcu, oid: u32) -> Result<usize, Shutdown> {
    mcu.oid_lookup::<Trsync>(oid)
}

/// Trigger trsync `i`: stop its steppers and schedule a report.
pub fn do_trigger(mcu: &mut Mcu, i: usize, reason: u8) {
    let t = &mut mcu.objs.of::<Trsync>()[i];
    if t.flags & TSF_CAN_TRIGGER == 0 {
        return;
    }
    t.trigger_reason = reason;
    t.flags = (t.flags & !TSF_CAN_TRIGGER) | TSF_REPORT;
    let signals = std::mem::take(&mut t.signals);
    for s in signals {
        stepper::stop(mcu, s as usize);
    }
    mcu.wake_task(&MODULE);
}

/// Register stepper `s` to stop when trsync `i` triggers.
pub fn add_signal(mcu: &mut Mcu, i: usize, s: u16) -> CmdResult {
    if mcu
        .objs
        .of::<Trsync>()
        .iter()
        .any(|t| t.signals.contains(&s))
    {
        return Err(SIGNAL_ACTIVE);
    }
    mcu.objs.of::<Trsync>()[i]
        .signals
        .push(s)
        .map_err(|_| SIGNAL_ACTIVE)
}

/// The timeout: trigger with the expire reason.
fn expire_event(mcu: &mut Mcu, i: u32, _waketime: u32) -> Result<TimerResult, Shutdown> {
    let i = i as usize;
    let reason = mcu.objs.of::<Trsync>()[i].expire_reason;
    do_trigger(mcu, i, reason);
    Ok(TimerResult::Done)
}

/// The periodic report.
fn report_event(mcu: &mut Mcu, i: u32, waketime: u32) -> Result<TimerResult, Shutdown> {
    let t = &mut mcu.objs.of::<Trsync>()[i as usize];
    t.flags |= TSF_REPORT;
    t.report_time = waketime.wrapping_add(t.report_ticks);
    let next = t.report_time;
    mcu.wake_task(&MODULE);
    Ok(TimerResult::Reschedule(next))
}

fn clear(mcu: &mut Mcu, i: usize) {
    mcu.timers.remove(TimerId::new(report_event, i as u32));
    mcu.timers.remove(TimerId::new(expire_event, i as u32));
    let t = &mut mcu.objs.of::<Trsync>()[i];
    t.signals.clear();
    t.flags = 0;
    t.trigger_reason = 0;
    t.expire_reason = 0;
}

crate::command!(CONFIG_TRSYNC = "config_trsync oid=%c" => config_trsync);
fn config_trsync(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid);
    mcu.oid_new::<Trsync>(oid)?;
    mcu.objs.push(Trsync {
        oid: oid as u8,
        signals: heapless::Vec::new(),
        ..Default::default()
    });
    Ok(())
}

crate::command!(TRSYNC_START = "trsync_start oid=%c report_clock=%u report_ticks=%u expire_reason=%c" => trsync_start);
fn trsync_start(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, report_clock, report_ticks, expire_reason);
    let i = mcu.oid_lookup::<Trsync>(oid)?;
    clear(mcu, i);
    let now = mcu.clock.now();
    let t = &mut mcu.objs.of::<Trsync>()[i];
    t.flags = TSF_CAN_TRIGGER;
    t.report_time = report_clock;
    t.report_ticks = report_ticks;
    t.expire_reason = expire_reason as u8;
    if t.report_ticks != 0 {
        let when = t.report_time;
        mcu.timers
            .add(TimerId::new(report_event, i as u32), when, now)?;
    }
    Ok(())
}

crate::command!(TRSYNC_SET_TIMEOUT = "trsync_set_timeout oid=%c clock=%u" => trsync_set_timeout);
fn trsync_set_timeout(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, clock);
    let i = mcu.oid_lookup::<Trsync>(oid)?;
    if mcu.objs.of::<Trsync>()[i].flags & TSF_CAN_TRIGGER != 0 {
        let id = TimerId::new(expire_event, i as u32);
        mcu.timers.remove(id);
        mcu.add_timer(id, clock)?;
    }
    Ok(())
}

crate::command!(TRSYNC_TRIGGER = "trsync_trigger oid=%c reason=%c" => trsync_trigger);
fn trsync_trigger(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, reason);
    let i = mcu.oid_lookup::<Trsync>(oid)?;
    do_trigger(mcu, i, reason as u8);
    mcu.timers.remove(TimerId::new(report_event, i as u32));
    mcu.timers.remove(TimerId::new(expire_event, i as u32));
    let t = &mut mcu.objs.of::<Trsync>()[i];
    t.flags = 0;
    let args = [
        Arg::Int(t.oid as u32),
        Arg::Int(0),
        Arg::Int(t.trigger_reason as u32),
        Arg::Int(0),
    ];
    mcu.send(&TRSYNC_STATE, &args);
    Ok(())
}

/// Send the reports the timers and triggers asked for.
pub fn task(mcu: &mut Mcu) {
    for i in 0..mcu.objs.of::<Trsync>().len() {
        let t = &mut mcu.objs.of::<Trsync>()[i];
        if t.flags & TSF_REPORT == 0 {
            continue;
        }
        let flags = t.flags;
        t.flags &= !TSF_REPORT;
        let args = [
            Arg::Int(t.oid as u32),
            Arg::Int((flags & TSF_CAN_TRIGGER != 0) as u32),
            Arg::Int(t.trigger_reason as u32),
            Arg::Int(mcu.clock.now()),
        ];
        mcu.send(&TRSYNC_STATE, &args);
    }
}

pub fn shutdown(mcu: &mut Mcu) {
    for i in 0..mcu.objs.of::<Trsync>().len() {
        clear(mcu, i);
    }
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[
        CONFIG_TRSYNC,
        TRSYNC_START,
        TRSYNC_SET_TIMEOUT,
        TRSYNC_TRIGGER,
    ],
    responses: &[&TRSYNC_STATE],
    static_strings: &[SIGNAL_ACTIVE.0],
    task: Some(task),
    shutdown: Some(shutdown),
    ..Module::EMPTY
};

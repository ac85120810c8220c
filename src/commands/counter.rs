//! Pulse counters (the reference's pulse_counter.c): poll an input, count
//! its changes, report the count every `sample_ticks`.

use klipper_protocol::format::Arg;

use crate::clock::is_before;
use crate::command::{Args, CmdResult, Module, Response, Shutdown};
use crate::hw::{Bias, GpioIn};
use crate::mcu::Mcu;
use crate::sched::TimerResult;

static COUNTER_STATE: Response =
    Response::new("counter_state oid=%c next_clock=%u count=%u count_clock=%u");

pub struct Counter {
    oid: u8,
    pin: GpioIn,
    poll_ticks: u32,
    sample_ticks: u32,
    next_sample_time: u32,
    count: u32,
    last_count_time: u32,
    /// The timer's next wake time (reported as next_clock).
    waketime: u32,
    pending: bool,
}

fn run_timer(mcu: &mut Mcu, i: u32, waketime: u32) -> Result<TimerResult, Shutdown> {
    let i = i as usize;
    let pin = mcu.objs.of::<Counter>()[i].pin;
    let value = mcu.gpio.read(pin);
    let c = &mut mcu.objs.of::<Counter>()[i];
    // The count's lowest bit always equals the last level read.
    if (c.count & 1 != 0) != value {
        c.count = c.count.wrapping_add(1);
        c.last_count_time = waketime;
    }
    let mut wake = false;
    if is_before(c.next_sample_time, waketime) {
        c.pending = true;
        c.next_sample_time = waketime.wrapping_add(c.sample_ticks);
        wake = true;
    }
    c.waketime = waketime.wrapping_add(c.poll_ticks);
    let next = c.waketime;
    if wake {
        mcu.wake_task(&MODULE);
    }
    Ok(TimerResult::Reschedule(next))
}

crate::command!(CONFIG_COUNTER = "config_counter oid=%c pin=%u pull_up=%c" => config_counter);
fn config_counter(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, pin, pull_up);
    let pin = mcu.gpio.setup_input(pin, Bias::from_arg(pull_up))?;
    mcu.oid_new::<Counter>(oid)?;
    mcu.objs.push(Counter {
        oid: oid as u8,
        pin,
        poll_ticks: 0,
        sample_ticks: 0,
        next_sample_time: 0,
        count: 0,
        last_count_time: 0,
        waketime: 0,
        pending: false,
    });
    Ok(())
}

crate::command!(QUERY_COUNTER = "query_counter oid=%c clock=%u poll_ticks=%u sample_ticks=%u" => query_counter);
fn query_counter(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, clock, poll_ticks, sample_ticks);
    let (i, id) = mcu.oid_stop_timer::<Counter>(oid, run_timer)?;
    let c = &mut mcu.objs.of::<Counter>()[i];
    c.waketime = clock;
    c.poll_ticks = poll_ticks;
    c.sample_ticks = sample_ticks;
    // Sample at once.
    c.next_sample_time = c.waketime;
    mcu.add_timer(id, clock)
}

pub fn task(mcu: &mut Mcu) {
    for i in 0..mcu.objs.of::<Counter>().len() {
        let c = &mut mcu.objs.of::<Counter>()[i];
        if !c.pending {
            continue;
        }
        c.pending = false;
        let args = [
            Arg::Int(c.oid as u32),
            Arg::Int(c.waketime),
            Arg::Int(c.count),
            Arg::Int(c.last_count_time),
        ];
        mcu.send(&COUNTER_STATE, &args);
    }
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[CONFIG_COUNTER, QUERY_COUNTER],
    responses: &[&COUNTER_STATE],
    task: Some(task),
    ..Module::EMPTY
};

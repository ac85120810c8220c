//! Analog inputs (the reference's adccmds.c with linux/analog.c): sample an
//! IIO input `sample_count` times `sample_ticks` apart every `rest_ticks`,
//! report the sums, and shut down when they leave the allowed range.

use klipper_protocol::format::Arg;

use crate::command::{Args, CmdResult, Constant, Module, Response, Shutdown};
use crate::hw::sysfs::AdcChannel;
use crate::mcu::Mcu;
use crate::mcu::TimerId;
use crate::pins::{ANALOG_BASE, ANALOG_COUNT};
use crate::sched::TimerResult;

static ANALOG_IN_STATE: Response = Response::new("analog_in_state oid=%c next_clock=%u values=%*s");

const OUT_OF_RANGE: Shutdown = Shutdown("ADC out of range");
const BAD_BYTES_PER_REPORT: Shutdown = Shutdown("Invalid analog_in bytes_per_report");
const NOT_ADC_PIN: Shutdown = Shutdown("Not a valid ADC pin");

pub const ADC_MAX: i64 = 4095;

pub struct AnalogIn {
    oid: u8,
    chan: AdcChannel,
    rest_time: u32,
    sample_time: u32,
    next_begin_time: u32,
    value: u16,
    min_value: u16,
    max_value: u16,
    invalid_count: u8,
    range_check_count: u8,
    state: u8,
    sample_count: u8,
    bytes_per_report: u8,
    data_count: u8,
    data: [u8; 48],
    /// The trigger_analog fed by this input (`analog_in_attach_trigger_analog`,
    /// in the probe group), as an index in the probe group's state.
    pub trigger_analog: Option<usize>,
    /// Configured by the older `query_analog_in` (Kalico dialect): report
    /// each sum alone, in the older `analog_in_state ... value=%hu`.
    legacy: bool,
}

fn run_timer(mcu: &mut Mcu, i: u32, waketime: u32) -> Result<TimerResult, Shutdown> {
    let i = i as usize;
    let value = mcu.objs.of::<AnalogIn>()[i].chan.read();
    let value = match value {
        Ok(v) => v,
        Err(e) => {
            mcu.try_shutdown(e);
            0
        }
    };
    let a = &mut mcu.objs.of::<AnalogIn>()[i];
    if a.state >= a.sample_count {
        a.state = 0;
        a.value = value;
    } else {
        a.value = a.value.wrapping_add(value);
    }
    a.state += 1;
    if a.state < a.sample_count {
        return Ok(TimerResult::Reschedule(
            waketime.wrapping_add(a.sample_time),
        ));
    }
    if a.value >= a.min_value && a.value <= a.max_value {
        a.invalid_count = 0;
    } else {
        a.invalid_count += 1;
        if a.invalid_count >= a.range_check_count {
            a.invalid_count = 0;
            // The shutdown hook below schedules the next sample.
            mcu.try_shutdown(OUT_OF_RANGE);
            return Ok(TimerResult::Done);
        }
    }
    a.next_begin_time = a.next_begin_time.wrapping_add(a.rest_time);
    let next = a.next_begin_time;
    mcu.wake_task(&MODULE);
    Ok(TimerResult::Reschedule(next))
}

crate::command!(CONFIG_ANALOG_IN = "config_analog_in oid=%c pin=%u" => config_analog_in);
fn config_analog_in(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, pin);
    if !(ANALOG_BASE..ANALOG_BASE + ANALOG_COUNT).contains(&pin) {
        return Err(NOT_ADC_PIN);
    }
    let chan = AdcChannel::open(&mcu.sysfs_root, pin - ANALOG_BASE)?;
    mcu.oid_new::<AnalogIn>(oid)?;
    mcu.objs.push(AnalogIn {
        oid: oid as u8,
        chan,
        rest_time: 0,
        sample_time: 0,
        next_begin_time: 0,
        value: 0,
        min_value: 0,
        max_value: 0,
        invalid_count: 0,
        range_check_count: 0,
        state: 1,
        sample_count: 0,
        bytes_per_report: 0,
        data_count: 0,
        data: [0; 48],
        trigger_analog: None,
        legacy: false,
    });
    Ok(())
}

crate::command!(CMD_QUERY_ANALOG_IN = "query_analog_in oid=%c clock=%u sample_ticks=%u sample_count=%c rest_ticks=%u bytes_per_report=%c min_value=%hu max_value=%hu range_check_count=%c" => query_analog_in);
fn query_analog_in(mcu: &mut Mcu, a: &Args) -> CmdResult {
    let s = |k: usize| a.get(k);
    query(
        mcu,
        [s(0), s(1), s(2), s(3), s(4), s(5), s(6), s(7), s(8)],
        false,
    )
}

crate::command!(QUERY_ANALOG_IN = "query_analog_in oid=%c clock=%u sample_ticks=%u sample_count=%c rest_ticks=%u min_value=%hu max_value=%hu range_check_count=%c" => query_analog_in_legacy);
/// The older form, without `bytes_per_report` (one sum per report).
fn query_analog_in_legacy(mcu: &mut Mcu, a: &Args) -> CmdResult {
    let s = |k: usize| a.get(k);
    query(
        mcu,
        [s(0), s(1), s(2), s(3), s(4), 2, s(5), s(6), s(7)],
        true,
    )
}

fn query(mcu: &mut Mcu, args: [u32; 9], legacy: bool) -> CmdResult {
    let a = Slots(args);
    let i = mcu.oid_lookup::<AnalogIn>(a.get(0))?;
    mcu.objs.of::<AnalogIn>()[i].legacy = legacy;
    let id = TimerId::new(run_timer, i as u32);
    mcu.timers.remove(id);
    let x = &mut mcu.objs.of::<AnalogIn>()[i];
    x.next_begin_time = a.get(1);
    x.sample_time = a.get(2);
    x.sample_count = a.get(3) as u8;
    x.state = x.sample_count.wrapping_add(1);
    x.rest_time = a.get(4);
    x.bytes_per_report = a.get(5) as u8;
    x.data_count = 0;
    x.min_value = a.get(6) as u16;
    x.max_value = a.get(7) as u16;
    x.range_check_count = a.get(8) as u8;
    if x.sample_count == 0 {
        return Ok(());
    }
    if x.bytes_per_report as usize > x.data.len() {
        return Err(BAD_BYTES_PER_REPORT);
    }
    let when = x.next_begin_time;
    mcu.add_timer(id, when)
}

/// Sampling goes on while shut down, as in the reference, so the host
/// still sees temperatures.
pub fn shutdown(mcu: &mut Mcu) {
    for i in 0..mcu.objs.of::<AnalogIn>().len() {
        let a = &mut mcu.objs.of::<AnalogIn>()[i];
        a.trigger_analog = None;
        if a.sample_count == 0 {
            continue;
        }
        a.state = a.sample_count.wrapping_add(1);
        a.next_begin_time = a.next_begin_time.wrapping_add(a.rest_time);
        let next = a.next_begin_time;
        mcu.timers.insert(TimerId::new(run_timer, i as u32), next);
    }
}

struct Slots([u32; 9]);

impl Slots {
    fn get(&self, i: usize) -> u32 {
        self.0[i]
    }
}

pub fn task(mcu: &mut Mcu) {
    for i in 0..mcu.objs.of::<AnalogIn>().len() {
        let a = &mut mcu.objs.of::<AnalogIn>()[i];
        if a.state != a.sample_count {
            continue;
        }
        a.state = a.state.wrapping_add(1);
        if let Some(ta) = a.trigger_analog {
            let value = a.value as i32;
            crate::commands::probe::trigger_analog_update(mcu, ta, value);
        }
        let a = &mut mcu.objs.of::<AnalogIn>()[i];
        if a.legacy {
            let args = [
                Arg::Int(a.oid as u32),
                Arg::Int(a.next_begin_time),
                Arg::Int(a.value as u32),
            ];
            mcu.send(&ANALOG_IN_STATE_LEGACY, &args);
            continue;
        }
        let d = a.data_count as usize;
        a.data[d] = a.value as u8;
        a.data[d + 1] = (a.value >> 8) as u8;
        a.data_count += 2;
        if a.data_count as usize + 2 > a.bytes_per_report as usize {
            let (oid, next, n, data) = (a.oid, a.next_begin_time, a.data_count as usize, a.data);
            a.data_count = 0;
            mcu.send(
                &ANALOG_IN_STATE,
                &[Arg::Int(oid as u32), Arg::Int(next), Arg::Bytes(&data[..n])],
            );
        }
    }
}

static ANALOG_IN_STATE_LEGACY: Response =
    Response::new("analog_in_state oid=%c next_clock=%u value=%hu");

/// Kalico 2026.10's forms (see `commands::dialect_overrides`).
pub static KALICO: Module<Mcu> = Module {
    commands: &[QUERY_ANALOG_IN],
    responses: &[&ANALOG_IN_STATE_LEGACY],
    ..Module::EMPTY
};

pub static MODULE: Module<Mcu> = Module {
    commands: &[CONFIG_ANALOG_IN, CMD_QUERY_ANALOG_IN],
    responses: &[&ANALOG_IN_STATE],
    constants: &[("ADC_MAX", Constant::Int(ADC_MAX))],
    static_strings: &[OUT_OF_RANGE.0, BAD_BYTES_PER_REPORT.0, NOT_ADC_PIN.0],
    task: Some(task),
    shutdown: Some(shutdown),
    ..Module::EMPTY
};

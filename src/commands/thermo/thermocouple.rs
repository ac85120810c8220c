//! Thermocouple and RTD amplifiers on SPI (the reference's thermocouple.c):
//! MAX31855, MAX31856, MAX31865 and MAX6675. A timer marks each sensor due
//! every `rest_ticks`; the task reads it, sends `thermocouple_result`, and
//! shuts down after `max_invalid_count` faulty or out-of-range readings in
//! a row.

use klipper_protocol::format::Arg;

use crate::command::{Args, CmdResult, Module, Response, Shutdown};
use crate::commands::spi;
use crate::mcu::Mcu;
use crate::mcu::TimerId;
use crate::sched::TimerResult;

static THERMOCOUPLE_RESULT: Response =
    Response::new("thermocouple_result oid=%c next_clock=%u value=%u fault=%c");

const INVALID_TYPE: Shutdown = Shutdown("Invalid thermocouple chip type");
const READER_FAULT: Shutdown = Shutdown("Thermocouple reader fault");

const CHIP_MAX31855: u8 = 0;
const CHIP_MAX31856: u8 = 1;
const CHIP_MAX31865: u8 = 2;
const CHIP_MAX6675: u8 = 3;

const MAX31856_LTCBH_REG: u8 = 0x0C;
const MAX31856_SR_REG: u8 = 0x0F;
const MAX31865_RTDMSB_REG: u8 = 0x01;
const MAX31865_FAULTSTAT_REG: u8 = 0x07;

#[derive(Default)]
pub struct Thermocouple {
    oid: u8,
    spi: usize,
    chip_type: u8,
    /// The timer's next wake time (the `next_clock` reported).
    waketime: u32,
    rest_time: u32,
    min_value: u32,
    max_value: u32,
    max_invalid: u8,
    invalid_count: u8,
    pending: bool,
}

fn timer_id(i: usize) -> TimerId {
    TimerId::new(run_timer, i as u32)
}

/// The sampling timer: mark the sensor due and wake the task.
fn run_timer(mcu: &mut Mcu, i: u32, _waketime: u32) -> Result<TimerResult, Shutdown> {
    let i = i as usize;
    let Some(t) = mcu.objs.of::<Thermocouple>().get_mut(i) else {
        return Ok(TimerResult::Done);
    };
    t.pending = true;
    t.waketime = t.waketime.wrapping_add(t.rest_time);
    let next = t.waketime;
    mcu.wake_task(&MODULE);
    Ok(TimerResult::Reschedule(next))
}

crate::command!(CONFIG_THERMOCOUPLE = "config_thermocouple oid=%c spi_oid=%c thermocouple_type=%c" => config_thermocouple);
fn config_thermocouple(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, spi_oid, thermocouple_type);
    let chip_type = thermocouple_type;
    if chip_type > CHIP_MAX6675 as u32 {
        return Err(INVALID_TYPE);
    }
    mcu.oid_new::<Thermocouple>(oid)?;
    let spi = spi::lookup(mcu, spi_oid)?;
    mcu.objs.push(Thermocouple {
        oid: oid as u8,
        spi,
        chip_type: chip_type as u8,
        ..Default::default()
    });
    Ok(())
}

crate::command!(QUERY_THERMOCOUPLE = "query_thermocouple oid=%c clock=%u rest_ticks=%u min_value=%u max_value=%u max_invalid_count=%c" => query_thermocouple);
fn query_thermocouple(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, clock, rest_ticks, min_value, max_value, max_invalid_count);
    let i = mcu.oid_lookup::<Thermocouple>(oid)?;
    mcu.timers.remove(timer_id(i));
    let t = &mut mcu.objs.of::<Thermocouple>()[i];
    t.waketime = clock;
    t.rest_time = rest_ticks;
    if t.rest_time == 0 {
        return Ok(());
    }
    t.min_value = min_value;
    t.max_value = max_value;
    t.max_invalid = max_invalid_count as u8;
    t.invalid_count = 0;
    let when = t.waketime;
    mcu.add_timer(timer_id(i), when)
}

/// Report one reading and check it; `Err` when the MCU shut down.
fn respond(mcu: &mut Mcu, i: usize, next: u32, value: u32, fault: u8) -> Result<(), ()> {
    let oid = mcu.objs.of::<Thermocouple>()[i].oid;
    mcu.send(
        &THERMOCOUPLE_RESULT,
        &[
            Arg::Int(oid as u32),
            Arg::Int(next),
            Arg::Int(value),
            Arg::Int(fault as u32),
        ],
    );
    let t = &mut mcu.objs.of::<Thermocouple>()[i];
    if fault != 0 || value < t.min_value || value > t.max_value {
        t.invalid_count = t.invalid_count.wrapping_add(1);
        if t.invalid_count < t.max_invalid {
            return Ok(());
        }
        if !mcu.is_shutdown() {
            // The reference's shutdown leaves the task here.
            mcu.shutdown(READER_FAULT);
            return Err(());
        }
    }
    mcu.objs.of::<Thermocouple>()[i].invalid_count = 0;
    Ok(())
}

/// Exchange `data` with sensor `i`'s SPI device; a bus failure shuts down.
fn xfer(mcu: &mut Mcu, i: usize, data: &mut [u8]) -> Result<(), ()> {
    let spi = mcu.objs.of::<Thermocouple>()[i].spi;
    spi::transfer(mcu, spi, true, data).map_err(|e| mcu.try_shutdown(e))
}

fn read(mcu: &mut Mcu, i: usize, next: u32) -> Result<(), ()> {
    match mcu.objs.of::<Thermocouple>()[i].chip_type {
        CHIP_MAX31855 => {
            let mut msg = [0u8; 4];
            xfer(mcu, i, &mut msg)?;
            let value = u32::from_be_bytes(msg);
            respond(mcu, i, next, value, (value & 0x07) as u8)
        }
        CHIP_MAX31856 => {
            let mut msg = [MAX31856_LTCBH_REG, 0, 0, 0];
            xfer(mcu, i, &mut msg)?;
            let value = u32::from_be_bytes(msg) & 0x00ff_ffff;
            let mut sr = [MAX31856_SR_REG, 0];
            xfer(mcu, i, &mut sr)?;
            respond(mcu, i, next, value, sr[1])
        }
        CHIP_MAX31865 => {
            let mut msg = [MAX31865_RTDMSB_REG, 0, 0];
            xfer(mcu, i, &mut msg)?;
            let value = u16::from_be_bytes([msg[1], msg[2]]) as u32;
            let mut fs = [MAX31865_FAULTSTAT_REG, 0];
            xfer(mcu, i, &mut fs)?;
            let fault = (fs[1] & !0x03) | (value & 0x0001) as u8;
            respond(mcu, i, next, value, fault)
        }
        CHIP_MAX6675 => {
            let mut msg = [0u8; 2];
            xfer(mcu, i, &mut msg)?;
            let value = u16::from_be_bytes(msg) as u32;
            respond(mcu, i, next, value, (value & 0x06) as u8)
        }
        _ => Ok(()),
    }
}

/// Read every sensor that is due and report it.
pub fn task(mcu: &mut Mcu) {
    for i in 0..mcu.objs.of::<Thermocouple>().len() {
        let t = &mut mcu.objs.of::<Thermocouple>()[i];
        if !t.pending {
            continue;
        }
        t.pending = false;
        let next = t.waketime;
        if read(mcu, i, next).is_err() {
            return;
        }
    }
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[CONFIG_THERMOCOUPLE, QUERY_THERMOCOUPLE],
    responses: &[&THERMOCOUPLE_RESULT],
    enumerations: crate::enumerations! {
        "thermocouple_type" {
            "MAX31855" = CHIP_MAX31855, "MAX31856" = CHIP_MAX31856, "MAX31865" = CHIP_MAX31865,
            "MAX6675" = CHIP_MAX6675,
        },
    },
    static_strings: &[INVALID_TYPE.0, READER_FAULT.0],
    task: Some(task),
    ..Module::EMPTY
};

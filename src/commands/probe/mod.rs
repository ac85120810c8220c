//! Probing: `trigger_analog` and `sos_filter`, and the sensors that feed
//! them: HX71x load-cell ADCs (GPIO), ADS1220 and ADS131M0x (SPI), LDC1612
//! (I2C, with or without INTB), plus `analog_in_attach_trigger_analog`.
//!
//! Group conventions: see `crate::commands::accel`. Object kinds:
//! Ext(64) sos_filter, 65 trigger_analog, 66 hx71x, 67 ads1220,
//! 68 ads131m0x, 69 ldc1612. Timer kinds: 48 trigger_analog monitor,
//! 49 hx71x, 50 ads1220, 51 ads131m0x, 52 ldc1612.

pub mod ads1220;
pub mod hx71x;
pub mod ldc1612;
pub mod sos_filter;
pub mod trigger_analog;

use crate::command::{Module, Shutdown};
use crate::mcu::Mcu;
use crate::sched::{TimerId, TimerResult};

/// This group's objects.
#[derive(Default)]
pub struct State {
    pub sos_filters: Vec<sos_filter::SosFilter>,
    pub trigger_analogs: Vec<trigger_analog::TriggerAnalog>,
    pub hx71xs: Vec<hx71x::Hx71x>,
    pub ads1220s: Vec<ads1220::SpiAdc>,
    pub ads131m0xs: Vec<ads1220::SpiAdc>,
    pub ldc1612s: Vec<ldc1612::Ldc1612>,
}

static TRIGGER: Module = Module {
    commands: &trigger_analog::COMMANDS,
    responses: &[&trigger_analog::TRIGGER_ANALOG_STATE],
    constants: &[],
    enumerations: trigger_analog::ENUMERATIONS,
    static_strings: sos_filter::STATIC_STRINGS,
};

static SOS: Module = Module {
    commands: &sos_filter::COMMANDS,
    responses: &[],
    constants: &[],
    enumerations: &[],
    static_strings: &[],
};

static HX71X: Module = Module {
    commands: &hx71x::COMMANDS,
    responses: &[],
    constants: &[],
    enumerations: &[],
    static_strings: hx71x::STATIC_STRINGS,
};

static ADS: Module = Module {
    commands: &ads1220::COMMANDS,
    responses: &[],
    constants: &[],
    enumerations: ads1220::ENUMERATIONS,
    static_strings: ads1220::STATIC_STRINGS,
};

static LDC1612: Module = Module {
    commands: &ldc1612::COMMANDS,
    responses: &[],
    constants: &[],
    enumerations: ldc1612::ENUMERATIONS,
    static_strings: &[],
};

pub fn modules() -> Vec<&'static Module> {
    vec![&SOS, &TRIGGER, &HX71X, &ADS, &LDC1612]
}

/// Run this group's timer `id` (kind 48-63), due at `waketime`.
pub fn run_timer(mcu: &mut Mcu, id: TimerId, waketime: u32) -> Result<TimerResult, Shutdown> {
    let i = (id.0 & 0xffff) as usize;
    Ok(match id.0 & 0xff00_0000 {
        trigger_analog::TIMER_KIND => trigger_analog::run_timer(mcu, i, waketime),
        hx71x::TIMER_KIND => hx71x::run_timer(mcu, i, waketime),
        ads1220::ADS1220_TIMER => ads1220::run_timer(mcu, false, i, waketime),
        ads1220::ADS131_TIMER => ads1220::run_timer(mcu, true, i, waketime),
        ldc1612::TIMER_KIND => ldc1612::run_timer(mcu, i, waketime),
        _ => TimerResult::Done,
    })
}

pub fn task(mcu: &mut Mcu) {
    hx71x::task(mcu);
    ads1220::task(mcu);
    ldc1612::task(mcu);
}

pub fn shutdown(mcu: &mut Mcu) {
    hx71x::shutdown(mcu);
    for d in mcu.probe.ads1220s.iter_mut() {
        d.pending = false;
    }
    for d in mcu.probe.ads131m0xs.iter_mut() {
        d.pending = false;
    }
    for l in mcu.probe.ldc1612s.iter_mut() {
        l.clear_pending();
    }
}

/// Feed a value to trigger_analog `ta` (an index in this group's state),
/// as `analog_in` and the probe sensors do.
pub fn trigger_analog_update(mcu: &mut Mcu, ta: usize, value: i32) {
    trigger_analog::update(mcu, ta, value);
}

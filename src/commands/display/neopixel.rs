//! WS2812-type "neopixel" LEDs, bit-banged on a GPIO line (the
//! reference's neopixel.c): `config_neopixel`, `neopixel_update`,
//! `neopixel_send` → `neopixel_result`.
//!
//! Each bit is a high pulse: at least 800 ns for a one, about 200 ns for
//! a zero, bits at least 1250 ns apart. A Linux process cannot keep
//! interrupts away, so the timing is checked as the bits go out: as the
//! reference does, a bit that starts `bit_max_ticks` or more after the
//! previous one (the LEDs would take the gap for a reset) ends the
//! transfer with `success=0`; and, beyond the reference, so does a zero
//! bit whose high pulse may have lasted 500 ns or more (the LEDs would
//! read a one). The host retries; what it never gets is `success=1` for
//! data the LEDs may have read wrong.

use klipper_protocol::format::Arg;

// The WS2812 timings are the program's constants, not the host's, so
// they wait with the unbounded `spin_for`.
use crate::clock::{spin_for, Clock, Spin};
use crate::command::{Args, CmdResult, Module, Response, Shutdown};
use crate::hw::{Gpio, GpioOut};
use crate::mcu::Mcu;

static NEOPIXEL_RESULT: Response = Response::new("neopixel_result oid=%c success=%c");

const INVALID_DATA_SIZE: Shutdown = Shutdown("Invalid neopixel data_size");
const INVALID_UPDATE: Shutdown = Shutdown("Invalid neopixel update command");

/// Nanoseconds to ticks, rounded up (neopixel.c's `nsecs_to_ticks`).
const fn ns_to_ticks_up(ns: u32) -> u32 {
    let per = 1_000_000_000 / crate::clock::CLOCK_FREQ;
    ns.div_ceil(per)
}

/// Shortest high pulse a one bit needs.
const PULSE_LONG_TICKS: u32 = ns_to_ticks_up(800);
/// Shortest level any change needs.
const EDGE_MIN_TICKS: u32 = ns_to_ticks_up(200);
/// Shortest time from one bit's start to the next.
const BIT_MIN_TICKS: u32 = ns_to_ticks_up(1250);
/// A zero bit's high pulse must stay below this.
const ZERO_MAX_TICKS: u32 = ns_to_ticks_up(500);

pub struct Neopixel {
    pin: GpioOut,
    bit_max_ticks: u32,
    last_req_time: u32,
    reset_min_ticks: u32,
    data: Box<[u8]>,
}

impl Neopixel {
    /// Send the buffer; false if the timing could not be kept.
    fn send_data(&mut self, gpio: &mut dyn Gpio, clock: &Clock) -> bool {
        // The line is low (idle). Write it low once more before timing
        // anything, so the write path is warm when the bits go out: after
        // an idle spell the first writes run on cold caches and TLBs
        // (in the tests' VM, 3 to 9 us for the first bit's write). With
        // sends 50 ms apart, a quarter to a half of the test runs failed
        // every send without this (a bit gap too long); with it, none
        // did. It costs no edge, and the reset time is running anyway.
        gpio.write(self.pin, false);
        // The reset time since the last request must have passed.
        Spin::start(clock).since(clock, self.last_req_time, self.reset_min_ticks);
        let (pin, bit_max) = (self.pin, self.bit_max_ticks);
        let mut last_start = clock.now();
        let mut ok = true;
        'out: for &byte in self.data.iter() {
            for k in (0..8).rev() {
                let start = spin_for(clock, last_start, BIT_MIN_TICKS);
                gpio.write(pin, true);
                if byte >> k & 1 != 0 {
                    if start.wrapping_sub(last_start) >= bit_max {
                        ok = false;
                        break 'out;
                    }
                    // Timed from after the rising edge: a stall between
                    // reading `start` and the write (a page fault, the
                    // process descheduled) must not shorten the pulse.
                    let rise = clock.now();
                    let now = spin_for(clock, rise, PULSE_LONG_TICKS);
                    gpio.write(pin, false);
                    spin_for(clock, now, EDGE_MIN_TICKS);
                } else {
                    spin_for(clock, start, EDGE_MIN_TICKS);
                    gpio.write(pin, false);
                    let end = clock.now();
                    if start.wrapping_sub(last_start) >= bit_max
                        || end.wrapping_sub(start) >= ZERO_MAX_TICKS
                    {
                        ok = false;
                        break 'out;
                    }
                }
                last_start = start;
            }
        }
        if !ok {
            gpio.write(pin, false);
        }
        self.last_req_time = clock.now();
        ok
    }
}

crate::command!(CONFIG_NEOPIXEL = "config_neopixel oid=%c pin=%u data_size=%hu bit_max_ticks=%u reset_min_ticks=%u" => config_neopixel);
fn config_neopixel(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, pin, data_size, bit_max_ticks, reset_min_ticks);
    let pin = mcu.gpio.setup_output(pin, false)?;
    // A %hu, as the reference reads it: the raw 32 bits could ask for
    // gigabytes (found by the dispatch fuzz target).
    let data_size = data_size as u16;
    if data_size & 0x8000 != 0 {
        return Err(INVALID_DATA_SIZE);
    }
    mcu.oid_new::<Neopixel>(oid)?;
    mcu.objs.push(Neopixel {
        pin,
        bit_max_ticks,
        last_req_time: 0,
        reset_min_ticks,
        data: vec![0; data_size as usize].into_boxed_slice(),
    });
    Ok(())
}

crate::command!(NEOPIXEL_UPDATE = "neopixel_update oid=%c pos=%hu data=%*s" => neopixel_update);
fn neopixel_update(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, pos, data: buf);
    let i = mcu.oid_lookup::<Neopixel>(oid)?;
    let pos = pos as usize;
    let n = &mut mcu.objs.of::<Neopixel>()[i];
    if pos & 0x8000 != 0 || pos + data.len() > n.data.len() {
        return Err(INVALID_UPDATE);
    }
    n.data[pos..pos + data.len()].copy_from_slice(data);
    Ok(())
}

crate::command!(NEOPIXEL_SEND = "neopixel_send oid=%c" => neopixel_send);
fn neopixel_send(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid);
    let i = mcu.oid_lookup::<Neopixel>(oid)?;
    let Mcu {
        gpio, objs, clock, ..
    } = mcu;
    let ok = objs.of::<Neopixel>()[i].send_data(gpio.as_mut(), clock);
    mcu.send(&NEOPIXEL_RESULT, &[Arg::Int(oid), Arg::Int(ok as u32)]);
    Ok(())
}

/// The data line low.
pub fn shutdown(mcu: &mut Mcu) {
    for n in mcu.objs.of::<Neopixel>().iter() {
        mcu.gpio.write(n.pin, false);
    }
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[CONFIG_NEOPIXEL, NEOPIXEL_UPDATE, NEOPIXEL_SEND],
    responses: &[&NEOPIXEL_RESULT],
    static_strings: &[INVALID_DATA_SIZE.0, INVALID_UPDATE.0],
    shutdown: Some(shutdown),
    ..Module::EMPTY
};

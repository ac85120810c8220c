//! Single-wire UART to Trinamic stepper drivers, bit-banged on GPIO (the
//! reference's tmcuart.c): `config_tmcuart`, `tmcuart_send` →
//! `tmcuart_response`.
//!
//! The host sends whole UART frames (start bit, 8 data bits LSB first,
//! stop bit) packed LSB first; a timer toggles the tx line at each bit
//! change, `bit_time` apart, starting 200 us after the request. A request
//! that starts with a TMC sync nibble is sent with the reference's baud
//! correction: the lateness of the first and fifth edge adjusts the bit
//! time, as the driver's own baud detection will see it. When a reply is
//! wanted, the rx line (the same line, turned to an input, in single-wire
//! mode) is sampled once per bit time from 4 bit times after the
//! request: the first low sample after a high one starts the reply, of
//! which `read` bytes' worth of bits are kept (64 samples without a start
//! bit give an empty reply).
//!
//! Bit edges need microsecond timing (klippy asks for 40000 baud: 25 us
//! bits), finer than the loop's wake-up from sleep. So each event's timer
//! is set [`LEAD_TICKS`] early and the event busy-waits for its true time
//! (kept in `waketime`): the loop still runs other timers and input
//! between bits, and no wait lasts longer than the lead.

use klipper_protocol::format::Arg;

use crate::clock::{from_us, is_before};
use crate::command::{Args, CmdResult, Module, Response, Shutdown};
use crate::hw::{Bias, GpioIn, GpioOut};
use crate::mcu::Mcu;
use crate::mcu::TimerId;
use crate::sched::TimerResult;

static TMCUART_RESPONSE: Response = Response::new("tmcuart_response oid=%c read=%*s");

const DATA_TOO_LARGE: Shutdown = Shutdown("tmcuart data too large");

const TU_LINE_HIGH: u8 = 1 << 0;
const TU_ACTIVE: u8 = 1 << 1;
const TU_READ_SYNC: u8 = 1 << 2;
const TU_REPORT: u8 = 1 << 3;
const TU_PULLUP: u8 = 1 << 4;
const TU_SINGLE_WIRE: u8 = 1 << 5;

const DATA_SIZE: usize = 10;

/// How early an event's timer is set before its true time.
pub const LEAD_TICKS: u32 = from_us(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    SendSync,
    Send,
    SendFinish,
    ReadSync,
    Read,
}

pub struct TmcUart {
    oid: u8,
    tx: GpioOut,
    rx: GpioIn,
    rx_pin: u32,
    tx_pin: u32,
    bias: Bias,
    flags: u8,
    pos: u8,
    read_count: u8,
    write_count: u8,
    cfg_bit_time: u32,
    bit_time: u32,
    data: [u8; DATA_SIZE],
    event: Event,
    waketime: u32,
}

fn timer_id(index: usize) -> TimerId {
    TimerId::new(run_timer, index as u32)
}

impl TmcUart {
    fn bit(&self, pos: u8) -> u8 {
        (self.data[(pos >> 3) as usize] >> (pos & 7)) & 1
    }
}

/// Return the line to idle (high; an output again in single-wire mode).
fn reset_line(mcu: &mut Mcu, i: usize) -> Result<(), Shutdown> {
    let t = &mut mcu.objs.of::<TmcUart>()[i];
    t.flags = (t.flags & (TU_PULLUP | TU_SINGLE_WIRE)) | TU_LINE_HIGH;
    if t.flags & TU_SINGLE_WIRE != 0 {
        t.tx = mcu.gpio.setup_output(t.tx_pin, true)?;
    } else {
        mcu.gpio.write(t.tx, true);
    }
    Ok(())
}

fn finalize(mcu: &mut Mcu, i: usize) -> Result<TimerResult, Shutdown> {
    reset_line(mcu, i)?;
    mcu.objs.of::<TmcUart>()[i].flags |= TU_REPORT;
    mcu.wake_task(&MODULE);
    Ok(TimerResult::Done)
}

/// Toggle the tx line.
fn toggle(mcu: &mut Mcu, i: usize) -> u8 {
    let t = &mut mcu.objs.of::<TmcUart>()[i];
    t.flags ^= TU_LINE_HIGH;
    let high = t.flags & TU_LINE_HIGH;
    mcu.gpio.write(t.tx, high != 0);
    high
}

/// Run tmcuart `index`'s timer (set [`LEAD_TICKS`] before the event).
fn run_timer(mcu: &mut Mcu, index: u32, _waketime: u32) -> Result<TimerResult, Shutdown> {
    let index = index as usize;
    let Some(t) = mcu.objs.of::<TmcUart>().get(index) else {
        return Ok(TimerResult::Done);
    };
    let (event, due) = (t.event, t.waketime);
    // At most LEAD_TICKS (plus what the loop spent on other timers).
    while is_before(mcu.clock.now(), due) {
        std::hint::spin_loop();
    }
    let r = match event {
        Event::SendSync => Ok(send_sync_event(mcu, index)),
        Event::Send => Ok(send_event(mcu, index)),
        Event::SendFinish => send_finish_event(mcu, index),
        Event::ReadSync => read_sync_event(mcu, index),
        Event::Read => read_event(mcu, index),
    };
    match r {
        Ok(TimerResult::Reschedule(t)) => Ok(TimerResult::Reschedule(t.wrapping_sub(LEAD_TICKS))),
        other => other,
    }
}

/// The sync nibble's edges: measure how late they came and fit the bit
/// time to what the driver will have seen.
fn send_sync_event(mcu: &mut Mcu, i: usize) -> TimerResult {
    toggle(mcu, i);
    let cur = mcu.clock.now();
    let t = &mut mcu.objs.of::<TmcUart>()[i];
    t.pos += 1;
    if t.pos == 1 {
        // First edge: keep its lateness for later.
        t.bit_time = cur.wrapping_sub(t.waketime);
    } else if t.pos >= 5 {
        let offset = cur.wrapping_sub(t.waketime);
        let diff = offset.wrapping_sub(t.bit_time) as i32;
        // DIV_ROUND_CLOSEST(diff, 4)
        let adj = if diff >= 0 {
            (diff + 2) / 4
        } else {
            (diff - 2) / 4
        };
        t.bit_time = t.cfg_bit_time.wrapping_add(adj as u32);
        t.event = Event::Send;
        t.waketime = t
            .waketime
            .wrapping_add(diff as u32)
            .wrapping_add(t.bit_time);
        return TimerResult::Reschedule(t.waketime);
    }
    t.waketime = t.waketime.wrapping_add(t.cfg_bit_time);
    TimerResult::Reschedule(t.waketime)
}

fn send_event(mcu: &mut Mcu, i: usize) -> TimerResult {
    let line = toggle(mcu, i);
    let t = &mut mcu.objs.of::<TmcUart>()[i];
    let mut next = t.bit_time;
    let mut pos = t.pos;
    loop {
        pos = pos.wrapping_add(1);
        if pos >= t.write_count {
            t.event = Event::SendFinish;
            t.waketime = t.waketime.wrapping_add(next);
            return TimerResult::Reschedule(t.waketime);
        }
        if t.bit(pos) != line {
            break;
        }
        next = next.wrapping_add(t.bit_time);
    }
    t.pos = pos;
    t.waketime = t.waketime.wrapping_add(next);
    TimerResult::Reschedule(t.waketime)
}

fn send_finish_event(mcu: &mut Mcu, i: usize) -> Result<TimerResult, Shutdown> {
    if mcu.objs.of::<TmcUart>()[i].read_count == 0 {
        // Transmit only: done.
        return finalize(mcu, i);
    }
    let t = &mut mcu.objs.of::<TmcUart>()[i];
    if t.flags & TU_SINGLE_WIRE != 0 {
        t.rx = mcu.gpio.setup_input(t.rx_pin, t.bias)?;
    }
    t.pos = 0;
    t.event = Event::ReadSync;
    t.waketime = t.waketime.wrapping_add(t.bit_time.wrapping_mul(4));
    Ok(TimerResult::Reschedule(t.waketime))
}

fn read_sync_event(mcu: &mut Mcu, i: usize) -> Result<TimerResult, Shutdown> {
    let v = mcu.gpio.read(mcu.objs.of::<TmcUart>()[i].rx);
    let t = &mut mcu.objs.of::<TmcUart>()[i];
    if v {
        t.flags |= TU_READ_SYNC;
    } else if t.flags & TU_READ_SYNC != 0 {
        // Synchronised: this sample is the start bit.
        t.pos = 0;
        t.event = Event::Read;
        return store_bit(mcu, i, v);
    }
    let pos = t.pos;
    t.pos = pos.wrapping_add(1);
    if pos >= 64 {
        // No reply.
        t.read_count = 0;
        return finalize(mcu, i);
    }
    t.waketime = t.waketime.wrapping_add(t.bit_time);
    Ok(TimerResult::Reschedule(t.waketime))
}

fn read_event(mcu: &mut Mcu, i: usize) -> Result<TimerResult, Shutdown> {
    let v = mcu.gpio.read(mcu.objs.of::<TmcUart>()[i].rx);
    store_bit(mcu, i, v)
}

fn store_bit(mcu: &mut Mcu, i: usize, v: bool) -> Result<TimerResult, Shutdown> {
    let t = &mut mcu.objs.of::<TmcUart>()[i];
    let pos = t.pos;
    let mask = 1u8 << (pos & 7);
    let byte = &mut t.data[(pos >> 3) as usize];
    if v {
        *byte |= mask;
    } else {
        *byte &= !mask;
    }
    let pos = pos + 1;
    if pos >= t.read_count {
        return finalize(mcu, i);
    }
    t.pos = pos;
    t.waketime = t.waketime.wrapping_add(t.bit_time);
    Ok(TimerResult::Reschedule(t.waketime))
}

crate::command!(CONFIG_TMCUART = "config_tmcuart oid=%c rx_pin=%u pull_up=%c tx_pin=%u bit_time=%u" => config_tmcuart);
fn config_tmcuart(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, rx_pin, pull_up, tx_pin, bit_time);
    let (rx_pin, pull_up, tx_pin) = (rx_pin, pull_up, tx_pin);
    // The reference asks for a pull-up on any non-zero value.
    let bias = if pull_up != 0 {
        Bias::PullUp
    } else {
        Bias::AsIs
    };
    let rx = mcu.gpio.setup_input(rx_pin, bias)?;
    let tx = mcu.gpio.setup_output(tx_pin, true)?;
    mcu.oid_new::<TmcUart>(oid)?;
    let mut flags = TU_LINE_HIGH;
    if pull_up != 0 {
        flags |= TU_PULLUP;
    }
    if rx_pin == tx_pin {
        flags |= TU_SINGLE_WIRE;
    }
    mcu.objs.push(TmcUart {
        oid: oid as u8,
        tx,
        rx,
        rx_pin,
        tx_pin,
        bias,
        flags,
        pos: 0,
        read_count: 0,
        write_count: 0,
        cfg_bit_time: bit_time,
        bit_time,
        data: [0; DATA_SIZE],
        event: Event::Send,
        waketime: 0,
    });
    Ok(())
}

crate::command!(TMCUART_SEND = "tmcuart_send oid=%c write=%*s read=%c" => tmcuart_send);
fn tmcuart_send(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, write: buf, read);
    let i = mcu.oid_lookup::<TmcUart>(oid)?;
    let t = &mut mcu.objs.of::<TmcUart>()[i];
    if t.flags & TU_ACTIVE != 0 {
        // Busy: drop the request silently (the host retransmits).
        return Ok(());
    }
    let read_len = read;
    if write.len() > DATA_SIZE || read_len as usize > DATA_SIZE {
        return Err(DATA_TOO_LARGE);
    }
    t.data[..write.len()].copy_from_slice(write);
    t.pos = 0;
    t.flags = (t.flags & (TU_LINE_HIGH | TU_PULLUP | TU_SINGLE_WIRE)) | TU_ACTIVE;
    t.write_count = (write.len() * 8) as u8;
    t.read_count = (read_len * 8) as u8;
    if !write.is_empty() && t.data[0] & 0x3f == 0x2a {
        t.event = Event::SendSync;
    } else {
        t.bit_time = t.cfg_bit_time;
        t.event = Event::Send;
    }
    let now = mcu.clock.now();
    t.waketime = now.wrapping_add(from_us(200));
    let w = t.waketime.wrapping_sub(LEAD_TICKS);
    mcu.timers.add(timer_id(i), w, now)
}

/// Send the replies of finished transfers.
pub fn task(mcu: &mut Mcu) {
    for i in 0..mcu.objs.of::<TmcUart>().len() {
        let t = &mut mcu.objs.of::<TmcUart>()[i];
        if t.flags & TU_REPORT == 0 {
            continue;
        }
        t.flags &= !TU_REPORT;
        let (oid, n, data) = (t.oid, (t.read_count / 8) as usize, t.data);
        mcu.send(
            &TMCUART_RESPONSE,
            &[Arg::Int(oid as u32), Arg::Bytes(&data[..n])],
        );
    }
}

/// Lines back to idle; transfers in progress are abandoned (their timers
/// are already gone).
pub fn shutdown(mcu: &mut Mcu) {
    for i in 0..mcu.objs.of::<TmcUart>().len() {
        // Nothing more can be done about a line that cannot be requested.
        let _ = reset_line(mcu, i);
    }
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[CONFIG_TMCUART, TMCUART_SEND],
    responses: &[&TMCUART_RESPONSE],
    static_strings: &[DATA_TOO_LARGE.0],
    task: Some(task),
    shutdown: Some(shutdown),
    ..Module::EMPTY
};

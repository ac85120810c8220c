//! Buttons (the reference's buttons.c): up to 8 inputs sampled together,
//! debounced over two samples, changes reported to the host with
//! retransmission until acknowledged.

use klipper_protocol::format::Arg;

use crate::command::{Args, CmdResult, Module, Response, Shutdown};
use crate::hw::{Bias, GpioIn};
use crate::mcu::Mcu;
use crate::sched::TimerResult;

static BUTTONS_STATE: Response = Response::new("buttons_state oid=%c ack_count=%c state=%*s");

const MAX_BUTTONS: Shutdown = Shutdown("Max of 8 buttons");
const PAST_MAXIMUM: Shutdown = Shutdown("Set button past maximum button count");
const INVALID_RETRANSMIT: Shutdown = Shutdown("Invalid buttons retransmit count");

const BF_NO_RETRANSMIT: u8 = 0x80;
const BF_PENDING: u8 = 0xff;
const BF_ACKED: u8 = 0xfe;

#[derive(Default)]
pub struct Buttons {
    oid: u8,
    rest_ticks: u32,
    pressed: u8,
    last_pressed: u8,
    report_count: u8,
    reports: [u8; 8],
    ack_count: u8,
    retransmit_state: u8,
    retransmit_count: u8,
    pins: [Option<GpioIn>; 8],
    button_count: u8,
}

fn run_timer(mcu: &mut Mcu, i: u32, waketime: u32) -> Result<TimerResult, Shutdown> {
    let i = i as usize;
    let mut status = 0u8;
    for (bit, pin) in mcu.objs.of::<Buttons>()[i].pins.iter().enumerate() {
        if let Some(p) = pin {
            if mcu.gpio.read(*p) {
                status |= 1 << bit;
            }
        }
    }
    let b = &mut mcu.objs.of::<Buttons>()[i];
    let diff = status ^ b.pressed;
    let mut wake = false;
    if diff != 0 {
        // Report only bits that read the same twice in a row.
        let debounced = !(status ^ b.last_pressed);
        if diff & debounced != 0 {
            b.pressed = (b.pressed & !debounced) | (status & debounced);
            if (b.report_count as usize) < b.reports.len() {
                b.reports[b.report_count as usize] = b.pressed;
                b.report_count += 1;
                b.retransmit_state = BF_PENDING;
                wake = true;
            }
        }
    }
    b.last_pressed = status;
    let state = b.retransmit_state;
    if state & BF_NO_RETRANSMIT == 0 {
        // Counts down to 0x7f, where the top bit says "retransmit".
        let state = state.wrapping_sub(1);
        if state & BF_NO_RETRANSMIT != 0 {
            // Not acknowledged in time: send again.
            wake = true;
        }
        b.retransmit_state = state;
    }
    let next = waketime.wrapping_add(b.rest_ticks);
    if wake {
        mcu.wake_task(&MODULE);
    }
    Ok(TimerResult::Reschedule(next))
}

crate::command!(CONFIG_BUTTONS = "config_buttons oid=%c button_count=%c" => config_buttons);
fn config_buttons(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, button_count);
    let count = button_count as u8;
    if count > 8 {
        return Err(MAX_BUTTONS);
    }
    mcu.oid_new::<Buttons>(oid)?;
    mcu.objs.push(Buttons {
        oid: oid as u8,
        button_count: count,
        ..Default::default()
    });
    Ok(())
}

crate::command!(BUTTONS_ADD = "buttons_add oid=%c pos=%c pin=%u pull_up=%c" => buttons_add);
fn buttons_add(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, pos, pin, pull_up);
    let i = mcu.oid_lookup::<Buttons>(oid)?;
    let pos = pos as u8;
    if pos >= mcu.objs.of::<Buttons>()[i].button_count {
        return Err(PAST_MAXIMUM);
    }
    let pin = mcu.gpio.setup_input(pin, Bias::from_arg(pull_up))?;
    mcu.objs.of::<Buttons>()[i].pins[pos as usize] = Some(pin);
    Ok(())
}

crate::command!(BUTTONS_QUERY = "buttons_query oid=%c clock=%u rest_ticks=%u retransmit_count=%c invert=%c" => buttons_query);
fn buttons_query(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, clock, rest_ticks, retransmit_count, invert);
    let (i, id) = mcu.oid_stop_timer::<Buttons>(oid, run_timer)?;
    let b = &mut mcu.objs.of::<Buttons>()[i];
    b.rest_ticks = rest_ticks;
    b.pressed = invert as u8;
    b.last_pressed = b.pressed;
    b.ack_count = 0;
    b.report_count = 0;
    b.retransmit_state = BF_ACKED;
    b.retransmit_count = retransmit_count as u8;
    if b.retransmit_count >= BF_NO_RETRANSMIT {
        return Err(INVALID_RETRANSMIT);
    }
    if b.rest_ticks == 0 {
        return Ok(());
    }
    mcu.add_timer(id, clock)
}

crate::command!(BUTTONS_ACK = "buttons_ack oid=%c count=%c" => buttons_ack);
fn buttons_ack(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, count);
    let i = mcu.oid_lookup::<Buttons>(oid)?;
    let count = count as u8;
    let b = &mut mcu.objs.of::<Buttons>()[i];
    b.ack_count = b.ack_count.wrapping_add(count);
    if count >= b.report_count {
        b.report_count = 0;
        b.retransmit_state = BF_ACKED;
    } else {
        let pending = (b.report_count - count) as usize;
        b.reports
            .copy_within(count as usize..count as usize + pending, 0);
        b.report_count = pending as u8;
    }
    Ok(())
}

pub fn task(mcu: &mut Mcu) {
    for i in 0..mcu.objs.of::<Buttons>().len() {
        let b = &mut mcu.objs.of::<Buttons>()[i];
        if b.retransmit_state != BF_PENDING || b.report_count == 0 {
            continue;
        }
        b.retransmit_state = b.retransmit_count;
        let (oid, ack, n, reports) = (b.oid, b.ack_count, b.report_count as usize, b.reports);
        mcu.send(
            &BUTTONS_STATE,
            &[
                Arg::Int(oid as u32),
                Arg::Int(ack as u32),
                Arg::Bytes(&reports[..n]),
            ],
        );
    }
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[CONFIG_BUTTONS, BUTTONS_ADD, BUTTONS_QUERY, BUTTONS_ACK],
    responses: &[&BUTTONS_STATE],
    static_strings: &[MAX_BUTTONS.0, PAST_MAXIMUM.0, INVALID_RETRANSMIT.0],
    task: Some(task),
    ..Module::EMPTY
};

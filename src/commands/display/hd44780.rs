//! HD44780 character LCDs on a 4-bit parallel bus (the reference's
//! lcd_hd44780.c): `config_hd44780`, `hd44780_send_cmds`,
//! `hd44780_send_data`.
//!
//! Each byte goes out as two nibbles, high first: E rises, the data lines
//! that differ from the previous nibble change, 230 ns later E falls (the
//! chip latches). Consecutive bytes are at least `delay_ticks` apart,
//! counted from the end of one byte to the start of the next.

use super::{ndelay, ns_to_ticks};
use crate::clock::{Clock, Spin};
use crate::command::{Args, CmdResult, Module};
use crate::hw::{Gpio, GpioOut};
use crate::mcu::Mcu;

pub struct Hd44780 {
    last_cmd_time: u32,
    cmd_wait_ticks: u32,
    /// The data lines' state, in the high nibble (as the reference).
    last: u8,
    rs: GpioOut,
    e: GpioOut,
    d: [GpioOut; 4],
}

const E_HIGH_TICKS: u32 = ns_to_ticks(230);
const NIBBLE_GAP_TICKS: u32 = ns_to_ticks(500 - 230);

impl Hd44780 {
    /// Send 4 bits: `toggle`'s high nibble says which data lines change.
    fn xmit_bits(&self, gpio: &mut dyn Gpio, clock: &Clock, toggle: u8, state: u8) {
        gpio.write(self.e, true);
        for (k, &d) in self.d.iter().enumerate() {
            let bit = 0x10 << k;
            if toggle & bit != 0 {
                gpio.write(d, state & bit != 0);
            }
        }
        ndelay(clock, E_HIGH_TICKS);
        gpio.write(self.e, false);
    }

    fn xmit_byte(&mut self, gpio: &mut dyn Gpio, clock: &Clock, data: u8) {
        self.xmit_bits(gpio, clock, self.last ^ data, data);
        let low = data << 4;
        ndelay(clock, NIBBLE_GAP_TICKS);
        self.xmit_bits(gpio, clock, data ^ low, low);
        self.last = low;
    }

    fn xmit(&mut self, gpio: &mut dyn Gpio, clock: &Clock, data: &[u8]) {
        let mut last_cmd_time = self.last_cmd_time;
        let spin = Spin::start(clock);
        for &b in data {
            spin.since(clock, last_cmd_time, self.cmd_wait_ticks);
            self.xmit_byte(gpio, clock, b);
            last_cmd_time = clock.now();
        }
        self.last_cmd_time = last_cmd_time;
    }
}

crate::command!(CONFIG_HD44780 = "config_hd44780 oid=%c rs_pin=%u e_pin=%u d4_pin=%u d5_pin=%u d6_pin=%u d7_pin=%u delay_ticks=%u" => config_hd44780);
fn config_hd44780(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, rs_pin, e_pin, d4_pin, d5_pin, d6_pin, d7_pin, delay_ticks);
    let rs = mcu.gpio.setup_output(rs_pin, false)?;
    let e = mcu.gpio.setup_output(e_pin, false)?;
    let mut d = [GpioOut { pin: 0 }; 4];
    for (k, slot) in d.iter_mut().enumerate() {
        *slot = mcu.gpio.setup_output(a.get(3 + k), false)?;
    }
    mcu.oid_new::<Hd44780>(oid)?;
    mcu.objs.push(Hd44780 {
        last_cmd_time: 0,
        // Linux has no strict timing: the host's delay, uncalibrated.
        cmd_wait_ticks: delay_ticks,
        last: 0,
        rs,
        e,
        d,
    });
    Ok(())
}

fn send(mcu: &mut Mcu, oid: u32, data: &[u8], rs: bool) -> CmdResult {
    let i = mcu.oid_lookup::<Hd44780>(oid)?;
    let Mcu {
        gpio, objs, clock, ..
    } = mcu;
    let h = &mut objs.of::<Hd44780>()[i];
    gpio.write(h.rs, rs);
    h.xmit(gpio.as_mut(), clock, data);
    Ok(())
}

crate::command!(HD44780_SEND_CMDS = "hd44780_send_cmds oid=%c cmds=%*s" => hd44780_send_cmds);
fn hd44780_send_cmds(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, cmds: buf);
    send(mcu, oid, cmds, false)
}

crate::command!(HD44780_SEND_DATA = "hd44780_send_data oid=%c data=%*s" => hd44780_send_data);
fn hd44780_send_data(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, data: buf);
    send(mcu, oid, data, true)
}

/// Every line low.
pub fn shutdown(mcu: &mut Mcu) {
    for h in mcu.objs.of::<Hd44780>().iter_mut() {
        mcu.gpio.write(h.rs, false);
        mcu.gpio.write(h.e, false);
        for &d in &h.d {
            mcu.gpio.write(d, false);
        }
        h.last = 0;
    }
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[CONFIG_HD44780, HD44780_SEND_CMDS, HD44780_SEND_DATA],
    shutdown: Some(shutdown),
    ..Module::EMPTY
};

//! ST7920 graphic LCDs on their serial interface (the reference's
//! lcd_st7920.c): `config_st7920`, `st7920_send_cmds`, `st7920_send_data`.
//!
//! CS is held high; each bit is put on SID, and SCLK pulses (200 ns low,
//! 200 ns high), most significant bit first. A transfer starts with a
//! sync byte (0xF8 commands, 0xFA data); each byte then goes as two bytes
//! carrying its high and low nibble. The second half of each byte waits
//! until the delay since the previous byte has passed (`sync_delay_ticks`
//! for a transfer's first byte, `cmd_delay_ticks` for the others).

use super::{ndelay, ns_to_ticks};
use crate::clock::{Clock, Spin};
use crate::command::{Args, CmdResult, Module};
use crate::hw::{Gpio, GpioOut};
use crate::mcu::Mcu;

const SYNC_CMD: u8 = 0xf8;
const SYNC_DATA: u8 = 0xfa;
const HALF_BIT_TICKS: u32 = ns_to_ticks(200);

pub struct St7920 {
    last_cmd_time: u32,
    sync_wait_ticks: u32,
    cmd_wait_ticks: u32,
    sclk: GpioOut,
    sid: GpioOut,
    /// The level last written to SID.
    sid_state: bool,
}

impl St7920 {
    fn xmit_byte(&mut self, gpio: &mut dyn Gpio, clock: &Clock, data: u8) {
        for k in (0..8).rev() {
            let bit = data >> k & 1 != 0;
            if bit != self.sid_state {
                gpio.write(self.sid, bit);
                self.sid_state = bit;
            }
            ndelay(clock, HALF_BIT_TICKS);
            gpio.write(self.sclk, true);
            ndelay(clock, HALF_BIT_TICKS);
            gpio.write(self.sclk, false);
        }
    }

    fn xmit(&mut self, gpio: &mut dyn Gpio, clock: &Clock, data: &[u8]) {
        let mut last_cmd_time = self.last_cmd_time;
        let mut wait_ticks = self.sync_wait_ticks;
        let spin = Spin::start(clock);
        for &b in data {
            self.xmit_byte(gpio, clock, b & 0xf0);
            // The transfer cannot complete until the delay has passed.
            spin.since(clock, last_cmd_time, wait_ticks);
            self.xmit_byte(gpio, clock, b << 4);
            last_cmd_time = clock.now();
            wait_ticks = self.cmd_wait_ticks;
        }
        self.last_cmd_time = last_cmd_time;
    }
}

crate::command!(CONFIG_ST7920 = "config_st7920 oid=%c cs_pin=%u sclk_pin=%u sid_pin=%u sync_delay_ticks=%u cmd_delay_ticks=%u" => config_st7920);
fn config_st7920(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, cs_pin, sclk_pin, sid_pin, sync_delay_ticks, cmd_delay_ticks);
    let sclk = mcu.gpio.setup_output(sclk_pin, false)?;
    let sid = mcu.gpio.setup_output(sid_pin, false)?;
    mcu.gpio.setup_output(cs_pin, true)?;
    mcu.oid_new::<St7920>(oid)?;
    mcu.objs.push(St7920 {
        last_cmd_time: 0,
        // Linux has no strict timing: the host's delays, uncalibrated.
        sync_wait_ticks: sync_delay_ticks,
        cmd_wait_ticks: cmd_delay_ticks,
        sclk,
        sid,
        sid_state: false,
    });
    Ok(())
}

fn send(mcu: &mut Mcu, oid: u32, data: &[u8], sync: u8) -> CmdResult {
    let i = mcu.oid_lookup::<St7920>(oid)?;
    let Mcu {
        gpio, objs, clock, ..
    } = mcu;
    let s = &mut objs.of::<St7920>()[i];
    s.xmit_byte(gpio.as_mut(), clock, sync);
    s.xmit(gpio.as_mut(), clock, data);
    Ok(())
}

crate::command!(ST7920_SEND_CMDS = "st7920_send_cmds oid=%c cmds=%*s" => st7920_send_cmds);
fn st7920_send_cmds(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, cmds: buf);
    send(mcu, oid, cmds, SYNC_CMD)
}

crate::command!(ST7920_SEND_DATA = "st7920_send_data oid=%c data=%*s" => st7920_send_data);
fn st7920_send_data(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, data: buf);
    send(mcu, oid, data, SYNC_DATA)
}

/// SCLK and SID low.
pub fn shutdown(mcu: &mut Mcu) {
    for s in mcu.objs.of::<St7920>().iter_mut() {
        mcu.gpio.write(s.sclk, false);
        mcu.gpio.write(s.sid, false);
        s.sid_state = false;
    }
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[CONFIG_ST7920, ST7920_SEND_CMDS, ST7920_SEND_DATA],
    shutdown: Some(shutdown),
    ..Module::EMPTY
};

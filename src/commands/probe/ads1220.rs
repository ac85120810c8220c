//! ADS1220 (the reference's sensor_ads1220.c) and ADS131M0x (its
//! sensor_ads131m0x.c) load-cell ADCs on SPI: a timer polls the DRDY line
//! every `rest_ticks`; the task reads one conversion and streams it as a
//! signed 32-bit little-endian value through sensor_bulk, feeding an
//! attached trigger_analog. The ADS131M0x frame carries a status word, one
//! word per channel and a CRC; a bad CRC or a chip reset is reported as a
//! sample `code << 24` and a trigger_analog error.

use klipper_protocol::dictionary::EnumValue;

use super::trigger_analog;
use klipper_protocol::crc::crc16_ccitt;

use crate::command::{Args, CmdResult, Module, Shutdown};
use crate::commands::sensor_bulk::{SensorBulk, BULK_DATA_SIZE};
use crate::commands::spi;
use crate::hw::{Bias, GpioIn};
use crate::mcu::Mcu;
use crate::mcu::TimerId;
use crate::sched::TimerResult;

const BAD_CHANNELS: Shutdown = Shutdown("Invalid ads131m0x channels configuration");
pub const STATIC_STRINGS: &[&str] = &[BAD_CHANNELS.0];

const SE_ERROR_CRC: u8 = 1;
const SE_ERROR_RESET: u8 = 2;

pub const ENUMERATIONS: &[(&str, &str, EnumValue)] = crate::enumerations! {
    "ads131m0x_error:" {
        "SENSOR_ERROR_CRC" = SE_ERROR_CRC, "SENSOR_ERROR_RESET" = SE_ERROR_RESET,
    },
};

const BYTES_PER_SAMPLE: usize = 4;
const WORD: usize = 3;
const MAX_CHANNELS: u8 = 4;
/// Bit 10 of the 16-bit status word, in its first byte.
const STATUS_RESET_BIT: u8 = 1 << 2;

/// One SPI ADC of either kind.
pub struct SpiAdc {
    oid: u8,
    /// An ADS131M0x (else an ADS1220).
    ads131: bool,
    rest_ticks: u32,
    data_ready: GpioIn,
    spi: usize,
    pub(super) pending: bool,
    was_reset: bool,
    /// ADS131M0x: the channel reported and the channels in a frame
    /// (0 for the ADS1220).
    channel: u8,
    num_channels: u8,
    sb: SensorBulk,
    pub ta: Option<usize>,
}

/// Both kinds share a table; an oid names one kind (`SpiAdc::ads131`).
fn adcs(mcu: &mut Mcu) -> &mut [SpiAdc] {
    mcu.objs.of::<SpiAdc>()
}

fn run_timer(mcu: &mut Mcu, i: u32, waketime: u32) -> Result<TimerResult, Shutdown> {
    let i = i as usize;
    let (pending, drdy, mut rest) = {
        let d = &adcs(mcu)[i];
        (d.pending, d.data_ready, d.rest_ticks)
    };
    if pending {
        let d = &mut adcs(mcu)[i];
        d.sb.possible_overflows = d.sb.possible_overflows.wrapping_add(1);
        rest = rest.wrapping_mul(4);
    } else if !mcu.gpio.read(drdy) {
        adcs(mcu)[i].pending = true;
        mcu.wake_task(&MODULE);
        rest = rest.wrapping_mul(8);
    }
    Ok(TimerResult::Reschedule(waketime.wrapping_add(rest)))
}

fn append(mcu: &mut Mcu, i: usize, value: u32) {
    let d = &mut adcs(mcu)[i];
    d.sb.push(&value.to_le_bytes());
    if d.sb.data_count as usize + BYTES_PER_SAMPLE > BULK_DATA_SIZE {
        let (mut sb, oid) = (d.sb, d.oid);
        sb.report(mcu, oid);
        adcs(mcu)[i].sb = sb;
    }
}

fn sign_extend24(b: &[u8]) -> u32 {
    let mut v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
    if v & 0x80_0000 != 0 {
        v |= 0xff00_0000;
    }
    v
}

fn read_adc(mcu: &mut Mcu, ads131: bool, i: usize) {
    let (dev, ch, nch) = {
        let d = &adcs(mcu)[i];
        (d.spi, d.channel, d.num_channels)
    };
    let mut msg = [0u8; (2 + MAX_CHANNELS as usize) * WORD];
    let size = if ads131 { (2 + nch as usize) * WORD } else { 3 };
    let r = spi::transfer(mcu, dev, true, &mut msg[..size]);
    adcs(mcu)[i].pending = false;
    if let Err(e) = r {
        mcu.try_shutdown(e);
        return;
    }
    let ta = adcs(mcu)[i].ta;
    if !ads131 {
        let counts = sign_extend24(&msg[..3]);
        if let Some(ta) = ta {
            trigger_analog::update(mcu, ta, counts as i32);
        }
        append(mcu, i, counts);
        return;
    }
    let crc_at = size - WORD;
    let error = if crc16_ccitt(&msg[..crc_at]) != u16::from_be_bytes([msg[crc_at], msg[crc_at + 1]])
    {
        Some(SE_ERROR_CRC)
    } else {
        let d = &mut adcs(mcu)[i];
        if msg[0] & STATUS_RESET_BIT != 0 {
            d.was_reset = true;
        }
        d.was_reset.then_some(SE_ERROR_RESET)
    };
    if let Some(code) = error {
        trigger_analog::note_error(mcu, ta, code);
        append(mcu, i, (code as u32) << 24);
        return;
    }
    let off = WORD + ch as usize * WORD;
    let raw = sign_extend24(&msg[off..off + 3]);
    if let Some(ta) = ta {
        trigger_analog::update(mcu, ta, raw as i32);
    }
    append(mcu, i, raw);
}

/// Forget pending reads, so that no bus traffic follows the shutdown.
pub fn shutdown(mcu: &mut Mcu) {
    for d in adcs(mcu).iter_mut() {
        d.pending = false;
    }
}

pub fn task(mcu: &mut Mcu) {
    for ads131 in [false, true] {
        for i in 0..adcs(mcu).len() {
            if adcs(mcu)[i].pending && adcs(mcu)[i].ads131 == ads131 {
                read_adc(mcu, ads131, i);
            }
        }
    }
}

fn new_adc(
    mcu: &mut Mcu,
    ads131: bool,
    oid: u32,
    spi_oid: u32,
    ch: u8,
    nch: u8,
    pin: u32,
) -> CmdResult {
    let dev = spi::lookup(mcu, spi_oid)?;
    if ads131 && (!(2..=MAX_CHANNELS).contains(&nch) || ch >= nch) {
        return Err(BAD_CHANNELS);
    }
    let data_ready = mcu.gpio.setup_input(pin, Bias::AsIs)?;
    mcu.oid_new::<SpiAdc>(oid)?;
    mcu.objs.push(SpiAdc {
        oid: oid as u8,
        ads131,
        rest_ticks: 0,
        data_ready,
        spi: dev,
        pending: false,
        was_reset: false,
        channel: ch,
        num_channels: nch,
        sb: SensorBulk::default(),
        ta: None,
    });
    Ok(())
}

crate::command!(CONFIG_ADS1220 = "config_ads1220 oid=%c spi_oid=%c data_ready_pin=%u" => config_ads1220);
fn config_ads1220(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, spi_oid, data_ready_pin);
    new_adc(mcu, false, oid, spi_oid, 0, 0, data_ready_pin)
}

crate::command!(CONFIG_ADS131M0X = "config_ads131m0x oid=%c spi_oid=%c channel=%c num_channels=%c data_ready_pin=%u" => config_ads131m0x);
fn config_ads131m0x(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, spi_oid, channel, num_channels, data_ready_pin);
    new_adc(
        mcu,
        true,
        oid,
        spi_oid,
        channel as u8,
        num_channels as u8,
        data_ready_pin,
    )
}

fn lookup(mcu: &Mcu, ads131: bool, oid: u32) -> Result<usize, Shutdown> {
    let i = mcu.oid_lookup::<SpiAdc>(oid)?;
    match mcu.objs.get::<SpiAdc>().get(i) {
        Some(d) if d.ads131 == ads131 => Ok(i),
        _ => Err(crate::mcu::INVALID_OID_TYPE),
    }
}

fn attach(mcu: &mut Mcu, ads131: bool, a: &Args) -> CmdResult {
    crate::args!(a => oid, trigger_analog_oid);
    let i = lookup(mcu, ads131, oid)?;
    let ta = trigger_analog::lookup(mcu, trigger_analog_oid)?;
    adcs(mcu)[i].ta = Some(ta);
    Ok(())
}

fn query(mcu: &mut Mcu, ads131: bool, a: &Args) -> CmdResult {
    crate::args!(a => oid, rest_ticks);
    let i = lookup(mcu, ads131, oid)?;
    let id = TimerId::new(run_timer, i as u32);
    mcu.timers.remove(id);
    let d = &mut adcs(mcu)[i];
    d.pending = false;
    d.rest_ticks = rest_ticks;
    if d.rest_ticks == 0 {
        return Ok(());
    }
    d.was_reset = false;
    d.sb.reset();
    let rest = d.rest_ticks;
    let now = mcu.clock.now();
    mcu.timers.add(id, now.wrapping_add(rest), now)
}

fn status(mcu: &mut Mcu, ads131: bool, a: &Args) -> CmdResult {
    crate::args!(a => oid);
    let i = lookup(mcu, ads131, oid)?;
    let start = mcu.clock.now();
    let drdy = adcs(mcu)[i].data_ready;
    let ready = !mcu.gpio.read(drdy);
    let sb = adcs(mcu)[i].sb;
    let pending = if ready { BYTES_PER_SAMPLE as u32 } else { 0 };
    sb.status(mcu, oid as u8, start, 0, pending);
    Ok(())
}

crate::command!(ADS1220_ATTACH_TRIGGER_ANALOG = "ads1220_attach_trigger_analog oid=%c trigger_analog_oid=%c" => ads1220_attach_trigger_analog);
fn ads1220_attach_trigger_analog(mcu: &mut Mcu, a: &Args) -> CmdResult {
    attach(mcu, false, a)
}
crate::command!(ADS131M0X_ATTACH_TRIGGER_ANALOG = "ads131m0x_attach_trigger_analog oid=%c trigger_analog_oid=%c" => ads131m0x_attach_trigger_analog);
fn ads131m0x_attach_trigger_analog(mcu: &mut Mcu, a: &Args) -> CmdResult {
    attach(mcu, true, a)
}
crate::command!(QUERY_ADS1220 = "query_ads1220 oid=%c rest_ticks=%u" => query_ads1220);
fn query_ads1220(mcu: &mut Mcu, a: &Args) -> CmdResult {
    query(mcu, false, a)
}
crate::command!(QUERY_ADS131M0X = "query_ads131m0x oid=%c rest_ticks=%u" => query_ads131m0x);
fn query_ads131m0x(mcu: &mut Mcu, a: &Args) -> CmdResult {
    query(mcu, true, a)
}
crate::command!(QUERY_ADS1220_STATUS = "query_ads1220_status oid=%c" => query_ads1220_status);
fn query_ads1220_status(mcu: &mut Mcu, a: &Args) -> CmdResult {
    status(mcu, false, a)
}
crate::command!(QUERY_ADS131M0X_STATUS = "query_ads131m0x_status oid=%c" => query_ads131m0x_status);
fn query_ads131m0x_status(mcu: &mut Mcu, a: &Args) -> CmdResult {
    status(mcu, true, a)
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[
        CONFIG_ADS1220,
        ADS1220_ATTACH_TRIGGER_ANALOG,
        QUERY_ADS1220,
        QUERY_ADS1220_STATUS,
        CONFIG_ADS131M0X,
        ADS131M0X_ATTACH_TRIGGER_ANALOG,
        QUERY_ADS131M0X,
        QUERY_ADS131M0X_STATUS,
    ],
    enumerations: ENUMERATIONS,
    static_strings: STATIC_STRINGS,
    task: Some(task),
    shutdown: Some(shutdown),
    ..Module::EMPTY
};

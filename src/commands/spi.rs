//! SPI devices (the reference's spicmds.c and spi_software.c): hardware
//! buses through the board's [`Spi`](crate::hw::bus::Spi), or software SPI
//! bit-banged on GPIO lines; chip select on a GPIO line; a message sent on
//! shutdown.

use klipper_protocol::dictionary::EnumValue;
use klipper_protocol::format::Arg;

use crate::clock::Spin;
use crate::command::{Args, CmdResult, Module, Response, Shutdown};
use crate::hw::bus::SpiHandle;
use crate::hw::{Bias, GpioIn, GpioOut};
use crate::mcu::Mcu;

static SPI_TRANSFER_RESPONSE: Response = Response::new("spi_transfer_response oid=%c response=%*s");

const INVALID_CONFIG: Shutdown = Shutdown("Invalid spi config");

/// A software SPI bus on GPIO lines.
#[derive(Clone, Copy)]
pub struct SoftSpi {
    miso: GpioIn,
    mosi: GpioOut,
    sclk: GpioOut,
    sclk_level: bool,
    sck_ticks: u32,
    mode: u8,
}

#[derive(Clone, Copy)]
enum Bus {
    None,
    Hardware(SpiHandle),
    Software(SoftSpi),
}

pub struct SpiDev {
    bus: Bus,
    cs: Option<GpioOut>,
    cs_active_high: bool,
}

/// A message sent to an SPI device when the MCU shuts down.
pub struct SpiShutdown {
    spi: usize,
    msg: heapless::Vec<u8, 64>,
}

/// The SPI device an oid names (for the sensor families).
pub fn lookup(mcu: &Mcu, oid: u32) -> Result<usize, Shutdown> {
    mcu.oid_lookup::<SpiDev>(oid)
}

/// SPI device `i`'s chip-select line and whether it is active high.
pub fn cs_pin(mcu: &Mcu, i: usize) -> Option<(GpioOut, bool)> {
    let d = &mcu.objs.get::<SpiDev>()[i];
    d.cs.map(|cs| (cs, d.cs_active_high))
}

fn soft_prepare(mcu: &mut Mcu, ss: &mut SoftSpi, spin: &Spin) {
    ss.sclk_level = ss.mode & 0x02 != 0;
    mcu.gpio.write(ss.sclk, ss.sclk_level);
    spin.delay(&mcu.clock, ss.sck_ticks);
}

fn soft_transfer(mcu: &mut Mcu, ss: &mut SoftSpi, spin: &Spin, receive: bool, data: &mut [u8]) {
    let t1 = ss.sck_ticks >> 1;
    let t2 = ss.sck_ticks - t1;
    let mut end = mcu.clock.now().wrapping_add(t1);
    for byte in data.iter_mut() {
        let mut out = *byte;
        let mut inb = 0u8;
        for _ in 0..8 {
            spin.until(&mcu.clock, end);
            if ss.mode & 0x01 != 0 {
                // Modes 1 and 3: data changes on the first edge.
                ss.sclk_level = !ss.sclk_level;
                mcu.gpio.write(ss.sclk, ss.sclk_level);
                mcu.gpio.write(ss.mosi, out & 0x80 != 0);
                end = mcu.clock.now().wrapping_add(t2);
                out <<= 1;
                inb <<= 1;
                spin.until(&mcu.clock, end);
                ss.sclk_level = !ss.sclk_level;
                mcu.gpio.write(ss.sclk, ss.sclk_level);
                inb |= mcu.gpio.read(ss.miso) as u8;
            } else {
                // Modes 0 and 2: data is sampled on the first edge.
                mcu.gpio.write(ss.mosi, out & 0x80 != 0);
                ss.sclk_level = !ss.sclk_level;
                mcu.gpio.write(ss.sclk, ss.sclk_level);
                end = mcu.clock.now().wrapping_add(t2);
                out <<= 1;
                inb <<= 1;
                spin.until(&mcu.clock, end);
                inb |= mcu.gpio.read(ss.miso) as u8;
                ss.sclk_level = !ss.sclk_level;
                mcu.gpio.write(ss.sclk, ss.sclk_level);
            }
            end = mcu.clock.now().wrapping_add(t1);
        }
        if receive {
            *byte = inb;
        }
    }
}

/// Exchange `data` with SPI device `i`, chip select around it. An
/// unconfigured bus does nothing, as in the reference.
pub fn transfer(mcu: &mut Mcu, i: usize, receive: bool, data: &mut [u8]) -> CmdResult {
    let (bus, cs, high) = {
        let d = &mcu.objs.of::<SpiDev>()[i];
        (d.bus, d.cs, d.cs_active_high)
    };
    let spin = Spin::start(&mcu.clock);
    let mut soft = match bus {
        Bus::None => return Ok(()),
        Bus::Software(mut ss) => {
            soft_prepare(mcu, &mut ss, &spin);
            Some(ss)
        }
        Bus::Hardware(_) => None,
    };
    if let Some(cs) = cs {
        mcu.gpio.write(cs, high);
    }
    let r = match (bus, soft.as_mut()) {
        (Bus::Hardware(h), _) => mcu.spi.transfer(h, receive, data),
        (_, Some(ss)) => {
            soft_transfer(mcu, ss, &spin, receive, data);
            Ok(())
        }
        _ => Ok(()),
    };
    if let Some(ss) = soft {
        // The clock line's level is part of the bus state.
        mcu.objs.of::<SpiDev>()[i].bus = Bus::Software(ss);
    }
    if let Some(cs) = cs {
        mcu.gpio.write(cs, !high);
    }
    r
}

fn new_spi(mcu: &mut Mcu, oid: u32, cs: Option<GpioOut>, high: bool) -> CmdResult {
    mcu.oid_new::<SpiDev>(oid)?;
    mcu.objs.push(SpiDev {
        bus: Bus::None,
        cs,
        cs_active_high: high,
    });
    Ok(())
}

crate::command!(CONFIG_SPI = "config_spi oid=%c pin=%u cs_active_high=%c" => config_spi);
fn config_spi(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, pin, cs_active_high);
    let high = cs_active_high != 0;
    let cs = mcu.gpio.setup_output(pin, !high)?;
    new_spi(mcu, oid, Some(cs), high)
}

crate::command!(CONFIG_SPI_WITHOUT_CS = "config_spi_without_cs oid=%c" => config_spi_without_cs);
fn config_spi_without_cs(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid);
    new_spi(mcu, oid, None, false)
}

crate::command!(SPI_SET_BUS = "spi_set_bus oid=%c spi_bus=%u mode=%u rate=%u" => spi_set_bus);
fn spi_set_bus(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, spi_bus, mode, rate);
    let i = lookup(mcu, oid)?;
    if mode > 3 || !matches!(mcu.objs.of::<SpiDev>()[i].bus, Bus::None) {
        return Err(INVALID_CONFIG);
    }
    let h = mcu.spi.setup(spi_bus, mode as u8, rate)?;
    mcu.objs.of::<SpiDev>()[i].bus = Bus::Hardware(h);
    Ok(())
}

crate::command!(SPI_SET_SW_BUS = "spi_set_sw_bus oid=%c miso_pin=%u mosi_pin=%u sclk_pin=%u mode=%u pulse_ticks=%u" => spi_set_sw_bus);
fn spi_set_sw_bus(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, miso_pin, mosi_pin, sclk_pin, mode, pulse_ticks);
    if mode > 3 {
        return Err(INVALID_CONFIG);
    }
    let i = lookup(mcu, oid)?;
    let miso = mcu.gpio.setup_input(miso_pin, Bias::PullUp)?;
    let mosi = mcu.gpio.setup_output(mosi_pin, false)?;
    let sclk = mcu.gpio.setup_output(sclk_pin, false)?;
    if !matches!(mcu.objs.of::<SpiDev>()[i].bus, Bus::None) {
        return Err(INVALID_CONFIG);
    }
    mcu.objs.of::<SpiDev>()[i].bus = Bus::Software(SoftSpi {
        miso,
        mosi,
        sclk,
        sclk_level: false,
        sck_ticks: pulse_ticks,
        mode: mode as u8,
    });
    Ok(())
}

/// `spi_transfer` (answering with what was read) and `spi_send`.
fn transfer_cmd(mcu: &mut Mcu, a: &Args, receive: bool) -> CmdResult {
    crate::args!(a => oid, data: buf);
    let i = lookup(mcu, oid)?;
    let src = data;
    let mut buf = [0u8; 256];
    let data = &mut buf[..src.len()];
    data.copy_from_slice(src);
    transfer(mcu, i, receive, data)?;
    if receive {
        mcu.send(&SPI_TRANSFER_RESPONSE, &[Arg::Int(oid), Arg::Bytes(data)]);
    }
    Ok(())
}

crate::command!(SPI_TRANSFER = "spi_transfer oid=%c data=%*s" => spi_transfer);
fn spi_transfer(mcu: &mut Mcu, a: &Args) -> CmdResult {
    transfer_cmd(mcu, a, true)
}

crate::command!(SPI_SEND = "spi_send oid=%c data=%*s" => spi_send);
fn spi_send(mcu: &mut Mcu, a: &Args) -> CmdResult {
    transfer_cmd(mcu, a, false)
}

crate::command!(CONFIG_SPI_SHUTDOWN = "config_spi_shutdown oid=%c spi_oid=%c shutdown_msg=%*s" => config_spi_shutdown);
fn config_spi_shutdown(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, spi_oid, shutdown_msg: buf);
    let spi = lookup(mcu, spi_oid)?;
    mcu.oid_new::<SpiShutdown>(oid)?;
    let msg = heapless::Vec::from_slice(shutdown_msg).map_err(|_| INVALID_CONFIG)?;
    mcu.objs.push(SpiShutdown { spi, msg });
    Ok(())
}

/// Release every chip select, then send the shutdown messages.
pub fn shutdown(mcu: &mut Mcu) {
    for d in mcu.objs.get::<SpiDev>() {
        if let Some(cs) = d.cs {
            mcu.gpio.write(cs, !d.cs_active_high);
        }
    }
    for k in 0..mcu.objs.of::<SpiShutdown>().len() {
        let spi = mcu.objs.of::<SpiShutdown>()[k].spi;
        let mut msg = mcu.objs.of::<SpiShutdown>()[k].msg.clone();
        // Shutting down already: a failure here has nowhere to go.
        let _ = transfer(mcu, spi, false, &mut msg);
    }
}

const fn bus(b: i64) -> EnumValue {
    EnumValue::Range(b << 8, 16)
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[
        CONFIG_SPI,
        CONFIG_SPI_WITHOUT_CS,
        SPI_SET_BUS,
        SPI_SET_SW_BUS,
        SPI_TRANSFER,
        SPI_SEND,
        CONFIG_SPI_SHUTDOWN,
    ],
    responses: &[&SPI_TRANSFER_RESPONSE],
    enumerations: &[
        ("spi_bus", "spidev0.0", bus(0)),
        ("spi_bus", "spidev1.0", bus(1)),
        ("spi_bus", "spidev2.0", bus(2)),
        ("spi_bus", "spidev3.0", bus(3)),
        ("spi_bus", "spidev4.0", bus(4)),
        ("spi_bus", "spidev5.0", bus(5)),
        ("spi_bus", "spidev6.0", bus(6)),
        ("spi_bus", "spidev7.0", bus(7)),
        ("bus_oid_type", "spi", EnumValue::Single(0)),
        ("bus_oid_type", "i2c", EnumValue::Single(1)),
    ],
    static_strings: &[INVALID_CONFIG.0],
    shutdown: Some(shutdown),
    ..Module::EMPTY
};

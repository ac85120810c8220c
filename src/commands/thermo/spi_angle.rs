//! Magnetic angle sensors on SPI (the reference's sensor_angle.c): A1333,
//! AS5047D, TLE5012B, MT6816 and MT6826S. A timer marks the sensor due
//! every `rest_ticks`; the task queries it and packs 3-byte samples (a time
//! code and a 16-bit angle, or 0xff and an error code) into
//! `sensor_bulk_data`. `spi_angle_transfer` exchanges raw messages and
//! reports when the chip latched its data.

use klipper_protocol::format::Arg;

use klipper_protocol::crc::{crc8_07, crc8_1d};

use crate::clock::from_us;
use crate::command::{Args, CmdResult, Module, Response, Shutdown};
use crate::commands::sensor_bulk::{SensorBulk, BULK_DATA_SIZE};
use crate::commands::spi;
use crate::mcu::Mcu;
use crate::mcu::TimerId;
use crate::sched::TimerResult;

static SPI_ANGLE_TRANSFER_RESPONSE: Response =
    Response::new("spi_angle_transfer_response oid=%c clock=%u response=%*s");

const INVALID_TYPE: Shutdown = Shutdown("Invalid spi_angle chip type");
const NEEDS_CS: Shutdown = Shutdown("angle sensor requires cs pin");

const CHIP_A1333: u8 = 0;
const CHIP_AS5047D: u8 = 1;
const CHIP_TLE5012B: u8 = 2;
const CHIP_MT6816: u8 = 3;
const CHIP_MT6826S: u8 = 4;
/// The reference accepts this value too (it checks `> SA_CHIP_MAX`); such
/// a sensor is never queried.
const CHIP_MAX: u8 = 5;

const TCODE_ERROR: u8 = 0xff;
const SE_OVERFLOW: u16 = 0;
const SE_SCHEDULE: u16 = 1;
const SE_SPI_TIME: u16 = 2;
const SE_CRC: u16 = 3;
const SE_DUP: u16 = 4;
const SE_NO_ANGLE: u16 = 5;

const MAX_SPI_READ_TIME: u32 = from_us(50);
const BYTES_PER_SAMPLE: usize = 3;

const TLE_READ: u8 = 0x80;
const TLE_READ_LATCH: u8 = TLE_READ | 0x04;
const TLE_REG_AVAL: u8 = 0x02;
/// Longest a TLE5012B latch may come after the scheduled time: 32 update
/// periods of its 750 kHz / 32 frame counter.
const TLE_MAX_LATCH: u32 = from_us(32 * 32 * 1_000_000 / 750_000);

#[derive(Default)]
pub struct SpiAngle {
    oid: u8,
    spi: usize,
    chip_type: u8,
    time_shift: u8,
    /// Timer ticks that found the previous sample not yet taken.
    overflow: u8,
    pending: bool,
    waketime: u32,
    rest_ticks: u32,
    sb: SensorBulk,
}

fn timer_id(i: usize) -> TimerId {
    TimerId::new(run_timer, i as u32)
}

fn run_timer(mcu: &mut Mcu, i: u32, _waketime: u32) -> Result<TimerResult, Shutdown> {
    let i = i as usize;
    let Some(sa) = mcu.objs.of::<SpiAngle>().get_mut(i) else {
        return Ok(TimerResult::Done);
    };
    if sa.pending {
        sa.overflow = sa.overflow.wrapping_add(1);
    } else {
        sa.pending = true;
    }
    sa.waketime = sa.waketime.wrapping_add(sa.rest_ticks);
    let next = sa.waketime;
    mcu.wake_task(&MODULE);
    Ok(TimerResult::Reschedule(next))
}

crate::command!(CONFIG_SPI_ANGLE = "config_spi_angle oid=%c spi_oid=%c spi_angle_type=%c" => config_spi_angle);
fn config_spi_angle(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, spi_oid, spi_angle_type);
    let chip_type = spi_angle_type;
    if chip_type > CHIP_MAX as u32 {
        return Err(INVALID_TYPE);
    }
    mcu.oid_new::<SpiAngle>(oid)?;
    let spi = spi::lookup(mcu, spi_oid)?;
    if spi::cs_pin(mcu, spi).is_none() {
        return Err(NEEDS_CS);
    }
    mcu.objs.push(SpiAngle {
        oid: oid as u8,
        spi,
        chip_type: chip_type as u8,
        ..Default::default()
    });
    Ok(())
}

crate::command!(QUERY_SPI_ANGLE = "query_spi_angle oid=%c clock=%u rest_ticks=%u time_shift=%c" => query_spi_angle);
fn query_spi_angle(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, clock, rest_ticks, time_shift);
    let i = mcu.oid_lookup::<SpiAngle>(oid)?;
    mcu.timers.remove(timer_id(i));
    let sa = &mut mcu.objs.of::<SpiAngle>()[i];
    sa.pending = false;
    if rest_ticks == 0 {
        // End measurements.
        return Ok(());
    }
    sa.waketime = clock;
    sa.rest_ticks = rest_ticks;
    sa.sb.reset();
    sa.time_shift = time_shift as u8;
    let when = sa.waketime;
    mcu.add_timer(timer_id(i), when)
}

/// Latch a TLE5012B: a chip-select pulse with no data. Returns the time
/// the latch happened.
fn tle_latch(mcu: &mut Mcu, spi_i: usize) -> Result<u32, Shutdown> {
    // An empty transfer pulses the (GPIO) chip select; each edge is a
    // system call on Linux, longer than the microsecond the chip needs.
    spi::transfer(mcu, spi_i, false, &mut [])?;
    Ok(mcu.clock.now())
}

crate::command!(SPI_ANGLE_TRANSFER = "spi_angle_transfer oid=%c data=%*s" => spi_angle_transfer);
fn spi_angle_transfer(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, data: buf);
    let i = mcu.oid_lookup::<SpiAngle>(oid)?;
    let (spi_i, chip) = {
        let sa = &mcu.objs.of::<SpiAngle>()[i];
        (sa.spi, sa.chip_type)
    };
    let src = data;
    let mut buf = [0u8; 256];
    let mut len = src.len();
    buf[..len].copy_from_slice(src);
    let mtime;
    if chip == CHIP_TLE5012B {
        mtime = tle_latch(mcu, spi_i)?;
        spi::transfer(mcu, spi_i, true, &mut buf[..len])?;
    } else {
        let mtime1 = mcu.clock.now();
        spi::transfer(mcu, spi_i, true, &mut buf[..len])?;
        let mtime2 = mcu.clock.now();
        if mtime2.wrapping_sub(mtime1) > MAX_SPI_READ_TIME {
            len = 0;
        }
        mtime = if chip == CHIP_AS5047D { mtime2 } else { mtime1 };
    }
    mcu.send(
        &SPI_ANGLE_TRANSFER_RESPONSE,
        &[Arg::Int(oid), Arg::Int(mtime), Arg::Bytes(&buf[..len])],
    );
    Ok(())
}

fn bit_parity(a: u8, b: u8) -> u8 {
    ((a ^ b).count_ones() & 1) as u8
}

/// Sample storage of one sensor, moved out while it is filled (so the
/// SPI calls can borrow the MCU).
struct Sampler {
    sb: SensorBulk,
    time_shift: u8,
    oid: u8,
}

impl Sampler {
    fn add(&mut self, tcode: u8, data: u16) {
        self.sb.push(&[tcode, data as u8, (data >> 8) as u8]);
    }

    fn add_error(&mut self, code: u16) {
        self.add(TCODE_ERROR, code);
    }

    fn add_data(&mut self, stime: u32, mtime: u32, angle: u16) {
        let mut tdiff = mtime.wrapping_sub(stime);
        if self.time_shift != 0 {
            let s = self.time_shift.min(31) as u32;
            tdiff = (tdiff.wrapping_add(1 << (s - 1))) >> s;
        }
        if tdiff >= TCODE_ERROR as u32 {
            self.add_error(SE_SCHEDULE);
            return;
        }
        self.add(tdiff as u8, angle);
    }

    /// Send the message if another sample would not fit.
    fn check_report(&mut self, mcu: &mut Mcu) {
        if self.sb.data_count as usize + BYTES_PER_SAMPLE > BULK_DATA_SIZE {
            self.sb.report(mcu, self.oid);
        }
    }
}

fn query(mcu: &mut Mcu, spi_i: usize, chip: u8, s: &mut Sampler, stime: u32) -> CmdResult {
    match chip {
        CHIP_A1333 => {
            let mut msg = [0x32, 0x00];
            let mtime1 = mcu.clock.now();
            spi::transfer(mcu, spi_i, true, &mut msg)?;
            let mtime2 = mcu.clock.now();
            if mtime2.wrapping_sub(mtime1) > MAX_SPI_READ_TIME {
                s.add_error(SE_SPI_TIME);
            } else if msg[0] & 0x80 != 0 {
                s.add_error(SE_CRC);
            } else {
                let angle = ((msg[0] as u16) << 9) | ((msg[1] as u16) << 1);
                s.add_data(stime, mtime1, angle);
            }
        }
        CHIP_AS5047D => {
            let mut msg = [0x7F, 0xFE];
            let mtime1 = mcu.clock.now();
            spi::transfer(mcu, spi_i, false, &mut msg)?;
            let mtime2 = mcu.clock.now();
            if mtime2.wrapping_sub(mtime1) > MAX_SPI_READ_TIME {
                s.add_error(SE_SPI_TIME);
                return Ok(());
            }
            let mut msg = [0xC0, 0x00];
            spi::transfer(mcu, spi_i, true, &mut msg)?;
            if bit_parity(msg[0], msg[1]) != 0 {
                s.add_error(SE_CRC);
            } else if msg[0] & 0x40 != 0 {
                s.add_error(SE_NO_ANGLE);
            } else {
                let angle = ((msg[0] as u16) << 10) | ((msg[1] as u16) << 2);
                s.add_data(stime, mtime2, angle);
            }
        }
        CHIP_MT6816 => {
            let mut msg = [0x83, 0x00, 0x00];
            let mtime1 = mcu.clock.now();
            spi::transfer(mcu, spi_i, true, &mut msg)?;
            let mtime2 = mcu.clock.now();
            if mtime2.wrapping_sub(mtime1) > MAX_SPI_READ_TIME {
                s.add_error(SE_SPI_TIME);
            } else if bit_parity(msg[1], msg[2]) != 0 {
                s.add_error(SE_CRC);
            } else if msg[2] & 0x02 != 0 {
                s.add_error(SE_NO_ANGLE);
            } else {
                let angle = ((msg[1] as u16) << 8) | (msg[2] & 0xfc) as u16;
                s.add_data(stime, mtime2, angle);
            }
        }
        CHIP_MT6826S => {
            let mut msg = [0x30, 0x03, 0, 0, 0, 0];
            let mtime1 = mcu.clock.now();
            spi::transfer(mcu, spi_i, true, &mut msg)?;
            let mtime2 = mcu.clock.now();
            if mtime2.wrapping_sub(mtime1) > MAX_SPI_READ_TIME {
                s.add_error(SE_SPI_TIME);
                return Ok(());
            }
            let crc = crc8_07(0, &msg[2..5]);
            if crc != msg[5] {
                s.add_error(SE_CRC);
            } else if msg[4] & 0x02 != 0 {
                s.add_error(SE_NO_ANGLE);
            } else {
                let angle = ((msg[2] as u16) << 8) | msg[3] as u16;
                s.add_data(stime, mtime2, angle);
            }
        }
        CHIP_TLE5012B => {
            let mtime = tle_latch(mcu, spi_i)?;
            let mut msg = [0u8; 10];
            msg[0] = TLE_READ_LATCH;
            msg[1] = (TLE_REG_AVAL << 4) | 0x03;
            // 0x05 == crc8(crc8(0xff, msg[0]), msg[1])
            spi::transfer(mcu, spi_i, true, &mut msg)?;
            let crc = crc8_1d(0x05, &msg[2..8]);
            if !crc != msg[9] {
                s.add_error(SE_CRC);
            } else if msg[8] & (1 << 4) == 0 {
                s.add_error(SE_NO_ANGLE);
            } else if msg[2] & 0x80 == 0 {
                s.add_error(SE_DUP);
            } else if mtime.wrapping_sub(stime) > TLE_MAX_LATCH {
                s.add_error(SE_SCHEDULE);
            } else {
                let angle = ((msg[2] as u16) << 9) | ((msg[3] as u16) << 1);
                s.add((msg[6] >> 1) & 0x3f, angle);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Query every sensor that is due.
pub fn task(mcu: &mut Mcu) {
    for i in 0..mcu.objs.of::<SpiAngle>().len() {
        let sa = &mut mcu.objs.of::<SpiAngle>()[i];
        if !sa.pending {
            continue;
        }
        let stime = sa.waketime.wrapping_sub(sa.rest_ticks);
        let mut overflow = sa.overflow;
        sa.pending = false;
        sa.overflow = 0;
        let (spi_i, chip) = (sa.spi, sa.chip_type);
        let mut s = Sampler {
            sb: sa.sb,
            time_shift: sa.time_shift,
            oid: sa.oid,
        };
        while overflow > 0 {
            overflow -= 1;
            s.add_error(SE_OVERFLOW);
            s.check_report(mcu);
        }
        let r = query(mcu, spi_i, chip, &mut s, stime);
        if r.is_ok() {
            s.check_report(mcu);
        }
        mcu.objs.of::<SpiAngle>()[i].sb = s.sb;
        if let Err(e) = r {
            mcu.try_shutdown(e);
            return;
        }
    }
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[CONFIG_SPI_ANGLE, QUERY_SPI_ANGLE, SPI_ANGLE_TRANSFER],
    responses: &[&SPI_ANGLE_TRANSFER_RESPONSE],
    enumerations: crate::enumerations! {
        "spi_angle_type" {
            "a1333" = CHIP_A1333, "as5047d" = CHIP_AS5047D, "tle5012b" = CHIP_TLE5012B,
            "mt6816" = CHIP_MT6816, "mt6826s" = CHIP_MT6826S,
        },
    },
    static_strings: &[INVALID_TYPE.0, NEEDS_CS.0],
    task: Some(task),
    ..Module::EMPTY
};

//! ADXL345 on SPI (the reference's sensor_adxl345.c): one FIFO entry per
//! 9-byte burst read (DATAX0..DATAZ1, FIFO_CTL, FIFO_STATUS), packed into
//! 5 bytes per sample.

use crate::command::{Args, CmdResult, Module, Shutdown};
use crate::commands::spi;
use crate::mcu::Mcu;
use crate::sched::{TimerFn, TimerResult};

use super::{mark_pending, query_cmd, status_cmd, Chip, Stream};

const AR_DATAX0: u8 = 0x32;
const AR_FIFO_STATUS: u8 = 0x39;
const AM_READ: u8 = 0x80;
const AM_MULTI: u8 = 0x40;
/// FIFO_CTL as klippy sets it (stream mode, watermark 16): read back in
/// every burst as a check of the wiring.
const SET_FIFO_CTL: u8 = 0x90;
const BYTES_PER_SAMPLE: usize = 5;

pub struct Adxl345 {
    st: Stream,
    spi: usize,
}

impl Chip for Adxl345 {
    const EVENT: TimerFn<Mcu> = event;
    fn stream(&mut self) -> &mut Stream {
        &mut self.st
    }
    fn query(mcu: &mut Mcu, i: usize) -> Result<bool, Shutdown> {
        query(mcu, i)
    }
    fn level(mcu: &mut Mcu, i: usize) -> Result<Option<u32>, Shutdown> {
        let mut msg = [AR_FIFO_STATUS | AM_READ, 0];
        let spi = mcu.objs.of::<Adxl345>()[i].spi;
        spi::transfer(mcu, spi, true, &mut msg)?;
        let fifo_status = msg[1] & !0x80;
        // Above 32: a query error, left unanswered.
        Ok((fifo_status <= 32).then_some(fifo_status as u32 * BYTES_PER_SAMPLE as u32))
    }
}

fn event(mcu: &mut Mcu, i: u32, _waketime: u32) -> Result<TimerResult, Shutdown> {
    mark_pending::<Adxl345>(mcu, i)
}

crate::command!(CONFIG_ADXL345 = "config_adxl345 oid=%c spi_oid=%c" => config_adxl345);
fn config_adxl345(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, spi_oid);
    mcu.oid_new::<Adxl345>(oid)?;
    let spi = spi::lookup(mcu, spi_oid)?;
    mcu.objs.push(Adxl345 {
        st: Stream::new(oid),
        spi,
    });
    Ok(())
}

/// Pack one burst read (`msg[1..9]`) into `d` as the reference does;
/// returns the FIFO entry count, 0 on a data error (then `d` is all 0xff).
pub fn pack_sample(msg: &[u8; 9], d: &mut [u8; BYTES_PER_SAMPLE]) -> u8 {
    let fifo_status = msg[8] & !0x80; // the trigger bit
    let bad_high = |b: u8| b & 0xf0 != 0 && b & 0xf0 != 0xf0;
    if bad_high(msg[2])
        || bad_high(msg[4])
        || bad_high(msg[6])
        || msg[7] != SET_FIFO_CTL
        || fifo_status > 32
    {
        // A CS, MISO, MOSI or SCLK glitch.
        *d = [0xff; BYTES_PER_SAMPLE];
        return 0;
    }
    d[0] = msg[1];
    d[1] = msg[3];
    d[2] = msg[5];
    d[3] = (msg[2] & 0x1f) | (msg[6] << 5);
    d[4] = (msg[4] & 0x1f) | ((msg[6] << 2) & 0x60);
    fifo_status
}

/// One FIFO read; whether more entries wait.
fn query(mcu: &mut Mcu, i: usize) -> Result<bool, Shutdown> {
    let mut msg = [AR_DATAX0 | AM_READ | AM_MULTI, 0, 0, 0, 0, 0, 0, 0, 0];
    let spi = mcu.objs.of::<Adxl345>()[i].spi;
    spi::transfer(mcu, spi, true, &mut msg)?;
    let mut d = [0u8; BYTES_PER_SAMPLE];
    let fifo_status = pack_sample(&msg, &mut d);
    let st = &mut mcu.objs.of::<Adxl345>()[i].st;
    st.sb.push(&d);
    if st.sb.space() < BYTES_PER_SAMPLE {
        let (mut sb, oid) = (st.sb, st.oid);
        sb.report(mcu, oid);
        mcu.objs.of::<Adxl345>()[i].st.sb = sb;
    }
    let st = &mut mcu.objs.of::<Adxl345>()[i].st;
    if fifo_status >= 31 {
        st.sb.possible_overflows = st.sb.possible_overflows.wrapping_add(1);
    }
    Ok(fifo_status > 1)
}

crate::command!(QUERY_ADXL345 = "query_adxl345 oid=%c rest_ticks=%u" => query_adxl345);
fn query_adxl345(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, rest_ticks);
    let i = mcu.oid_lookup::<Adxl345>(oid)?;
    query_cmd::<Adxl345>(mcu, i, rest_ticks)
}

crate::command!(QUERY_ADXL345_STATUS = "query_adxl345_status oid=%c" => query_adxl345_status);
fn query_adxl345_status(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid);
    let i = mcu.oid_lookup::<Adxl345>(oid)?;
    status_cmd::<Adxl345>(mcu, i)
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[CONFIG_ADXL345, QUERY_ADXL345, QUERY_ADXL345_STATUS],
    ..Module::EMPTY
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_13_bit_samples_as_klippy_unpacks_them() {
        // x = -5, y = 4095, z = -4096 (full resolution, little-endian).
        let (x, y, z) = (-5i16, 4095i16, -4096i16);
        let mut msg = [0u8; 9];
        msg[1..3].copy_from_slice(&x.to_le_bytes());
        msg[3..5].copy_from_slice(&y.to_le_bytes());
        msg[5..7].copy_from_slice(&z.to_le_bytes());
        msg[7] = SET_FIFO_CTL;
        msg[8] = 0x83; // trigger bit + 3 entries
        let mut d = [0u8; 5];
        assert_eq!(pack_sample(&msg, &mut d), 3);
        // klippy's adxl345.py _convert_samples.
        let (xl, yl, zl, xz, yz) = (
            d[0] as i32,
            d[1] as i32,
            d[2] as i32,
            d[3] as i32,
            d[4] as i32,
        );
        let rx = (xl | ((xz & 0x1f) << 8)) - ((xz & 0x10) << 9);
        let ry = (yl | ((yz & 0x1f) << 8)) - ((yz & 0x10) << 9);
        let rz = (zl | ((xz & 0xe0) << 3) | ((yz & 0xe0) << 6)) - ((yz & 0x40) << 7);
        assert_eq!((rx, ry, rz), (-5, 4095, -4096));
        assert_eq!(yz & 0x80, 0);
        // A glitch: FIFO_CTL read back wrong.
        msg[7] = 0;
        assert_eq!(pack_sample(&msg, &mut d), 0);
        assert_eq!(d, [0xff; 5]);
    }
}

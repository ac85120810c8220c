//! BMI160 on SPI or I2C (the reference's sensor_bmi160.c): FIFO_LENGTH is
//! read, then whole 48-byte blocks of FIFO_DATA (accelerometer-only,
//! header-less frames) straight into `sensor_bulk_data` messages.

use crate::command::{Args, CmdResult, Module, Shutdown};
use crate::commands::spi;
use crate::mcu::Mcu;
use crate::sched::{TimerFn, TimerResult};

use super::{
    block_query, i2c_read, mark_pending, query_cmd, status_cmd, BusDev, Chip, Stream, BLOCK,
};

const AM_READ: u8 = 0x80;
const FIFO_STATUS: u8 = 0x22;
const FIFO_DATA: u8 = 0x24;
/// The chip's FIFO size: a longer count means data was lost.
const FIFO_SIZE: u16 = 1024;

pub struct Bmi160 {
    st: Stream,
    bus: BusDev,
}

impl Chip for Bmi160 {
    const EVENT: TimerFn<Mcu> = event;
    fn stream(&mut self) -> &mut Stream {
        &mut self.st
    }
    fn query(mcu: &mut Mcu, i: usize) -> Result<bool, Shutdown> {
        block_query::<Bmi160>(mcu, i, read_level, read_block)
    }
    fn level(mcu: &mut Mcu, i: usize) -> Result<Option<u32>, Shutdown> {
        read_level(mcu, i)?;
        Ok(Some(mcu.objs.of::<Bmi160>()[i].st.fifo_bytes as u32))
    }
}

fn event(mcu: &mut Mcu, i: u32, _waketime: u32) -> Result<TimerResult, Shutdown> {
    mark_pending::<Bmi160>(mcu, i)
}

crate::command!(CONFIG_BMI160 = "config_bmi160 oid=%c bus_oid=%c bus_oid_type=%c" => config_bmi160);
fn config_bmi160(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, bus_oid, bus_oid_type);
    mcu.oid_new::<Bmi160>(oid)?;
    let bus = BusDev::lookup(mcu, bus_oid, bus_oid_type)?;
    mcu.objs.push(Bmi160 {
        st: Stream::new(oid),
        bus,
    });
    Ok(())
}

/// Read FIFO_LENGTH_0/1 (little-endian, not masked, as the reference).
fn read_level(mcu: &mut Mcu, i: usize) -> CmdResult {
    let fifo_bytes = match mcu.objs.of::<Bmi160>()[i].bus {
        BusDev::Spi(s) => {
            let mut msg = [FIFO_STATUS | AM_READ, 0, 0];
            spi::transfer(mcu, s, true, &mut msg)?;
            u16::from_le_bytes([msg[1], msg[2]])
        }
        BusDev::I2c(d) => {
            let mut v = [0u8; 2];
            i2c_read(mcu, d, FIFO_STATUS, &mut v)?;
            u16::from_le_bytes(v)
        }
    };
    let st = &mut mcu.objs.of::<Bmi160>()[i].st;
    if fifo_bytes > FIFO_SIZE {
        st.sb.possible_overflows = st.sb.possible_overflows.wrapping_add(1);
    }
    st.fifo_bytes = fifo_bytes;
    Ok(())
}

fn read_block(mcu: &mut Mcu, i: usize, block: &mut [u8; BLOCK]) -> CmdResult {
    match mcu.objs.of::<Bmi160>()[i].bus {
        BusDev::Spi(s) => {
            let mut msg = [0u8; BLOCK + 1];
            msg[0] = FIFO_DATA | AM_READ;
            spi::transfer(mcu, s, true, &mut msg)?;
            block.copy_from_slice(&msg[1..]);
            Ok(())
        }
        BusDev::I2c(d) => i2c_read(mcu, d, FIFO_DATA, block),
    }
}

crate::command!(QUERY_BMI160 = "query_bmi160 oid=%c rest_ticks=%u" => query_bmi160);
fn query_bmi160(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, rest_ticks);
    let i = mcu.oid_lookup::<Bmi160>(oid)?;
    query_cmd::<Bmi160>(mcu, i, rest_ticks)
}

crate::command!(QUERY_BMI160_STATUS = "query_bmi160_status oid=%c" => query_bmi160_status);
fn query_bmi160_status(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid);
    let i = mcu.oid_lookup::<Bmi160>(oid)?;
    status_cmd::<Bmi160>(mcu, i)
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[CONFIG_BMI160, QUERY_BMI160, QUERY_BMI160_STATUS],
    ..Module::EMPTY
};

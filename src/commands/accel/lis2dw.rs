//! LIS2DW and LIS3DH on SPI or I2C (the reference's sensor_lis2dw.c): the
//! FIFO is read 8 samples (48 bytes, the chip's raw OUT_X_L..OUT_Z_H) at a
//! time, straight into one `sensor_bulk_data` message.

use crate::command::{Args, CmdResult, Module, Shutdown};
use crate::commands::spi;
use crate::mcu::Mcu;
use crate::sched::{TimerFn, TimerResult};

use super::{
    block_query, i2c_read, mark_pending, query_cmd, status_cmd, BusDev, Chip, Stream, BLOCK,
};

/// `lis_chip_type` values.
pub const LIS2DW: u32 = 0;
pub const LIS3DH: u32 = 1;

pub const MODEL_INVALID: Shutdown = Shutdown("model type invalid");

const AR_DATAX0: u8 = 0x28;
const AM_READ: u8 = 0x80;
/// Address auto-increment: bit 6 of the SPI command, bit 7 of the I2C
/// sub-address (LIS3DH only; the LIS2DW increments by default).
const MS_SPI: u8 = 0x40;
const MS_I2C: u8 = 0x80;
const FIFO_SAMPLES: u8 = 0x2F;
const BYTES_PER_SAMPLE: u8 = 6;

pub struct Lis2dw {
    st: Stream,
    bus: BusDev,
    model: u32,
}

impl Chip for Lis2dw {
    const EVENT: TimerFn<Mcu> = event;
    fn stream(&mut self) -> &mut Stream {
        &mut self.st
    }
    fn query(mcu: &mut Mcu, i: usize) -> Result<bool, Shutdown> {
        block_query::<Lis2dw>(mcu, i, read_level, read_block)
    }
    fn level(mcu: &mut Mcu, i: usize) -> Result<Option<u32>, Shutdown> {
        read_level(mcu, i)?;
        Ok(Some(mcu.objs.of::<Lis2dw>()[i].st.fifo_bytes as u32))
    }
}

fn event(mcu: &mut Mcu, i: u32, _waketime: u32) -> Result<TimerResult, Shutdown> {
    mark_pending::<Lis2dw>(mcu, i)
}

crate::command!(CONFIG_LIS2DW = "config_lis2dw oid=%c bus_oid=%c bus_oid_type=%c lis_chip_type=%c" => config_lis2dw);
fn config_lis2dw(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, bus_oid, bus_oid_type, lis_chip_type);
    mcu.oid_new::<Lis2dw>(oid)?;
    let bus = BusDev::lookup(mcu, bus_oid, bus_oid_type)?;
    if lis_chip_type != LIS2DW && lis_chip_type != LIS3DH {
        return Err(MODEL_INVALID);
    }
    mcu.objs.push(Lis2dw {
        st: Stream::new(oid),
        bus,
        model: lis_chip_type,
    });
    Ok(())
}

/// Read and account FIFO_SAMPLES (FIFO_SRC_REG on the LIS3DH).
fn read_level(mcu: &mut Mcu, i: usize) -> CmdResult {
    let bus = mcu.objs.of::<Lis2dw>()[i].bus;
    let fifo_status = match bus {
        BusDev::Spi(s) => {
            let mut msg = [FIFO_SAMPLES | AM_READ, 0];
            spi::transfer(mcu, s, true, &mut msg)?;
            msg[1]
        }
        BusDev::I2c(d) => {
            let mut v = [0u8];
            i2c_read(mcu, d, FIFO_SAMPLES, &mut v)?;
            v[0]
        }
    };
    let ax = &mut mcu.objs.of::<Lis2dw>()[i];
    if fifo_status & 0x40 != 0 {
        ax.st.sb.possible_overflows = ax.st.sb.possible_overflows.wrapping_add(1);
    }
    let samples = if ax.model == LIS3DH {
        if fifo_status & 0x20 != 0 {
            0 // EMPTY
        } else {
            fifo_status & 0x1F
        }
    } else {
        fifo_status & 0x3F
    };
    // 8 bits, as the reference counts them.
    ax.st.fifo_bytes = samples.wrapping_mul(BYTES_PER_SAMPLE) as u16;
    Ok(())
}

fn read_block(mcu: &mut Mcu, i: usize, block: &mut [u8; BLOCK]) -> CmdResult {
    let (bus, lis3dh) = {
        let ax = &mcu.objs.of::<Lis2dw>()[i];
        (ax.bus, ax.model == LIS3DH)
    };
    match bus {
        BusDev::Spi(s) => {
            let mut msg = [0u8; BLOCK + 1];
            msg[0] = AR_DATAX0 | AM_READ | if lis3dh { MS_SPI } else { 0 };
            spi::transfer(mcu, s, true, &mut msg)?;
            block.copy_from_slice(&msg[1..]);
            Ok(())
        }
        BusDev::I2c(d) => {
            let reg = AR_DATAX0 | if lis3dh { MS_I2C } else { 0 };
            i2c_read(mcu, d, reg, block)
        }
    }
}

crate::command!(QUERY_LIS2DW = "query_lis2dw oid=%c rest_ticks=%u" => query_lis2dw);
fn query_lis2dw(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, rest_ticks);
    let i = mcu.oid_lookup::<Lis2dw>(oid)?;
    query_cmd::<Lis2dw>(mcu, i, rest_ticks)
}

crate::command!(QUERY_LIS2DW_STATUS = "query_lis2dw_status oid=%c" => query_lis2dw_status);
fn query_lis2dw_status(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid);
    let i = mcu.oid_lookup::<Lis2dw>(oid)?;
    status_cmd::<Lis2dw>(mcu, i)
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[CONFIG_LIS2DW, QUERY_LIS2DW, QUERY_LIS2DW_STATUS],
    ..Module::EMPTY
};

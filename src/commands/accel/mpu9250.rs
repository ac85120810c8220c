//! MPU-9250/6050 on I2C (the reference's sensor_mpu9250.c), and the shared
//! logic of the ICM-20948 (see `icm20948.rs`, same code with other
//! registers): the FIFO byte count is read, then whole 48-byte blocks of
//! the FIFO straight into `sensor_bulk_data` messages.

use crate::command::{Args, CmdResult, Module, Shutdown};
use crate::commands::i2c;
use crate::mcu::Mcu;
use crate::sched::{TimerFn, TimerResult};

use super::{block_query, i2c_read, mark_pending, Chip, Stream, BLOCK};

/// The registers a chip of this family is read through.
pub struct MpuRegs {
    pub fifo_count_h: u8,
    pub fifo: u8,
    pub int_status: u8,
    pub fifo_overflow_int: u8,
}

pub static MPU9250_REGS: MpuRegs = MpuRegs {
    fifo_count_h: 0x72,
    fifo: 0x74,
    int_status: 0x3A,
    fifo_overflow_int: 0x10,
};

pub struct Mpu {
    st: Stream,
    i2c: usize,
    regs: &'static MpuRegs,
}

impl Chip for Mpu {
    const EVENT: TimerFn<Mcu> = event;
    fn stream(&mut self) -> &mut Stream {
        &mut self.st
    }
    fn query(mcu: &mut Mcu, i: usize) -> Result<bool, Shutdown> {
        block_query::<Mpu>(mcu, i, read_level, read_block)
    }
    /// Was there a FIFO overrun?
    fn before_status(mcu: &mut Mcu, i: usize) -> CmdResult {
        let (dev, regs) = (mcu.objs.of::<Mpu>()[i].i2c, mcu.objs.of::<Mpu>()[i].regs);
        let mut int_msg = [0u8];
        i2c_read(mcu, dev, regs.int_status, &mut int_msg)?;
        if int_msg[0] & regs.fifo_overflow_int != 0 {
            let sb = &mut mcu.objs.of::<Mpu>()[i].st.sb;
            sb.possible_overflows = sb.possible_overflows.wrapping_add(1);
        }
        Ok(())
    }
    fn level(mcu: &mut Mcu, i: usize) -> Result<Option<u32>, Shutdown> {
        fifo_count(mcu, i).map(|n| Some(n as u32))
    }
}

fn event(mcu: &mut Mcu, i: u32, _waketime: u32) -> Result<TimerResult, Shutdown> {
    mark_pending::<Mpu>(mcu, i)
}

pub(super) fn lookup(mcu: &Mcu, oid: u32, regs: &MpuRegs) -> Result<usize, Shutdown> {
    let i = mcu.oid_lookup::<Mpu>(oid)?;
    // The MPU-9250 and the ICM-20948 share the type: an oid names one model.
    match mcu.objs.get::<Mpu>().get(i) {
        Some(c) if std::ptr::eq(c.regs, regs) => Ok(i),
        _ => Err(crate::mcu::INVALID_OID_TYPE),
    }
}

pub(super) fn config(mcu: &mut Mcu, a: &Args, regs: &'static MpuRegs) -> CmdResult {
    crate::args!(a => oid, i2c_oid);
    mcu.oid_new::<Mpu>(oid)?;
    let i2c = i2c::lookup(mcu, i2c_oid)?;
    mcu.objs.push(Mpu {
        st: Stream::new(oid),
        i2c,
        regs,
    });
    Ok(())
}

/// The FIFO byte count.
fn fifo_count(mcu: &mut Mcu, i: usize) -> Result<u16, Shutdown> {
    let (dev, reg) = (
        mcu.objs.of::<Mpu>()[i].i2c,
        mcu.objs.of::<Mpu>()[i].regs.fifo_count_h,
    );
    let mut msg = [0u8; 2];
    i2c_read(mcu, dev, reg, &mut msg)?;
    Ok((((msg[0] & 0x1f) as u16) << 8) | msg[1] as u16)
}

fn read_level(mcu: &mut Mcu, i: usize) -> CmdResult {
    mcu.objs.of::<Mpu>()[i].st.fifo_bytes = fifo_count(mcu, i)?;
    Ok(())
}

fn read_block(mcu: &mut Mcu, i: usize, block: &mut [u8; BLOCK]) -> CmdResult {
    let (dev, reg) = (
        mcu.objs.of::<Mpu>()[i].i2c,
        mcu.objs.of::<Mpu>()[i].regs.fifo,
    );
    i2c_read(mcu, dev, reg, block)
}

pub(super) fn query_cmd(mcu: &mut Mcu, a: &Args, regs: &MpuRegs) -> CmdResult {
    crate::args!(a => oid, rest_ticks);
    let i = lookup(mcu, oid, regs)?;
    super::query_cmd::<Mpu>(mcu, i, rest_ticks)
}

pub(super) fn status_cmd(mcu: &mut Mcu, a: &Args, regs: &MpuRegs) -> CmdResult {
    crate::args!(a => oid);
    let i = lookup(mcu, oid, regs)?;
    super::status_cmd::<Mpu>(mcu, i)
}

crate::command!(CONFIG_MPU9250 = "config_mpu9250 oid=%c i2c_oid=%c" => config_mpu9250);
fn config_mpu9250(mcu: &mut Mcu, a: &Args) -> CmdResult {
    config(mcu, a, &MPU9250_REGS)
}

crate::command!(QUERY_MPU9250 = "query_mpu9250 oid=%c rest_ticks=%u" => query_mpu9250);
fn query_mpu9250(mcu: &mut Mcu, a: &Args) -> CmdResult {
    query_cmd(mcu, a, &MPU9250_REGS)
}

crate::command!(QUERY_MPU9250_STATUS = "query_mpu9250_status oid=%c" => query_mpu9250_status);
fn query_mpu9250_status(mcu: &mut Mcu, a: &Args) -> CmdResult {
    status_cmd(mcu, a, &MPU9250_REGS)
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[CONFIG_MPU9250, QUERY_MPU9250, QUERY_MPU9250_STATUS],
    ..Module::EMPTY
};

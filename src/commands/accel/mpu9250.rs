//! MPU-9250/6050 on I2C (the reference's sensor_mpu9250.c), and the shared
//! logic of the ICM-20948 (see `icm20948.rs`, same code with other
//! registers): the FIFO byte count is read, then whole 48-byte blocks of
//! the FIFO straight into `sensor_bulk_data` messages.

use crate::command::Shutdown;
use crate::command::{Args, CmdResult, Command, Module};
use crate::commands::i2c;
use crate::commands::sensor_bulk::SensorBulk;
use crate::mcu::Mcu;
use crate::mcu::TimerId;
use crate::sched::TimerResult;

use super::{drain, i2c_read};

const BYTES_PER_BLOCK: usize = 48;

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
    oid: u8,
    i2c: usize,
    regs: &'static MpuRegs,
    rest_ticks: u32,
    pub(super) pending: bool,
    /// The largest FIFO count seen (kept for tuning, as the reference).
    fifo_max: u16,
    fifo_pkts_bytes: u16,
    sb: SensorBulk,
}

pub(super) fn lookup(mcu: &Mcu, oid: u32, regs: &MpuRegs) -> Result<usize, Shutdown> {
    let i = mcu.oid_lookup::<Mpu>(oid)? as usize;
    // The MPU-9250 and the ICM-20948 share the type: an oid names one model.
    match mcu.objs.get::<Mpu>().get(i) {
        Some(c) if std::ptr::eq(c.regs, regs) => Ok(i),
        _ => Err(crate::mcu::INVALID_OID_TYPE),
    }
}

fn timer_id(i: usize) -> TimerId {
    TimerId::new(event, i as u32)
}

/// The chip's timer only marks it pending and wakes the group's task (the
/// reference's `*_event`).
fn event(mcu: &mut Mcu, i: u32, _waketime: u32) -> Result<TimerResult, Shutdown> {
    if let Some(c) = mcu.objs.of::<Mpu>().get_mut(i as usize) {
        c.pending = true;
        mcu.wake_task(&super::MODULE);
    }
    Ok(TimerResult::Done)
}

pub(super) fn config(mcu: &mut Mcu, a: &Args, regs: &'static MpuRegs) -> CmdResult {
    let index = mcu.objs.of::<Mpu>().len() as u16;
    mcu.oid_alloc::<Mpu>(a.get(0), index)?;
    let i2c = i2c::lookup(mcu, a.get(1))?;
    mcu.objs.push(Mpu {
        oid: a.get(0) as u8,
        i2c,
        regs,
        rest_ticks: 0,
        pending: false,
        fifo_max: 0,
        fifo_pkts_bytes: 0,
        sb: SensorBulk::default(),
    });
    Ok(())
}

fn fifo_count(msg: [u8; 2]) -> u16 {
    (((msg[0] & 0x1f) as u16) << 8) | msg[1] as u16
}

fn get_fifo_status(mcu: &mut Mcu, i: usize) -> Result<u16, Shutdown> {
    let (dev, reg) = (
        mcu.objs.of::<Mpu>()[i].i2c,
        mcu.objs.of::<Mpu>()[i].regs.fifo_count_h,
    );
    let mut msg = [0u8; 2];
    i2c_read(mcu, dev, reg, &mut msg)?;
    let n = fifo_count(msg);
    let mp = &mut mcu.objs.of::<Mpu>()[i];
    mp.fifo_max = mp.fifo_max.max(n);
    Ok(n)
}

fn query(mcu: &mut Mcu, i: usize) -> Result<bool, Shutdown> {
    if (mcu.objs.of::<Mpu>()[i].fifo_pkts_bytes as usize) < BYTES_PER_BLOCK {
        mcu.objs.of::<Mpu>()[i].fifo_pkts_bytes = get_fifo_status(mcu, i)?;
    }
    if mcu.objs.of::<Mpu>()[i].fifo_pkts_bytes as usize >= BYTES_PER_BLOCK {
        let (dev, reg) = (
            mcu.objs.of::<Mpu>()[i].i2c,
            mcu.objs.of::<Mpu>()[i].regs.fifo,
        );
        let mut block = [0u8; BYTES_PER_BLOCK];
        i2c_read(mcu, dev, reg, &mut block)?;
        let mp = &mut mcu.objs.of::<Mpu>()[i];
        mp.sb.data_count = 0;
        mp.sb.push(&block);
        mp.fifo_pkts_bytes -= BYTES_PER_BLOCK as u16;
        let (mut sb, oid) = (mp.sb, mp.oid);
        sb.report(mcu, oid);
        mcu.objs.of::<Mpu>()[i].sb = sb;
    }
    Ok(mcu.objs.of::<Mpu>()[i].fifo_pkts_bytes as usize >= BYTES_PER_BLOCK)
}

pub(super) fn query_cmd(mcu: &mut Mcu, a: &Args, regs: &MpuRegs) -> CmdResult {
    let i = lookup(mcu, a.get(0), regs)?;
    mcu.timers.remove(timer_id(i));
    let mp = &mut mcu.objs.of::<Mpu>()[i];
    mp.pending = false;
    let rest_ticks = a.get(1);
    if rest_ticks == 0 {
        return Ok(());
    }
    mp.rest_ticks = rest_ticks;
    mp.sb.reset();
    mp.fifo_max = 0;
    mp.fifo_pkts_bytes = 0;
    let now = mcu.clock.now();
    mcu.timers.insert(timer_id(i), now.wrapping_add(rest_ticks));
    Ok(())
}

pub(super) fn status_cmd(mcu: &mut Mcu, a: &Args, regs: &MpuRegs) -> CmdResult {
    let i = lookup(mcu, a.get(0), regs)?;
    let dev = mcu.objs.of::<Mpu>()[i].i2c;
    // Was there a FIFO overrun?
    let mut int_msg = [0u8];
    i2c_read(mcu, dev, regs.int_status, &mut int_msg)?;
    if int_msg[0] & regs.fifo_overflow_int != 0 {
        let sb = &mut mcu.objs.of::<Mpu>()[i].sb;
        sb.possible_overflows = sb.possible_overflows.wrapping_add(1);
    }
    // The FIFO count, with precise timing.
    let mut msg = [0u8; 2];
    let time1 = mcu.clock.now();
    i2c_read(mcu, dev, regs.fifo_count_h, &mut msg)?;
    let time2 = mcu.clock.now();
    let sb = mcu.objs.of::<Mpu>()[i].sb;
    sb.status(
        mcu,
        a.get(0) as u8,
        time1,
        time2.wrapping_sub(time1),
        fifo_count(msg) as u32,
    );
    Ok(())
}

pub(super) fn task(mcu: &mut Mcu) -> CmdResult {
    for i in 0..mcu.objs.of::<Mpu>().len() {
        if !mcu.objs.of::<Mpu>()[i].pending {
            continue;
        }
        let rest = mcu.objs.of::<Mpu>()[i].rest_ticks;
        let more = drain(mcu, timer_id(i), rest, |m| query(m, i))?;
        mcu.objs.of::<Mpu>()[i].pending = more;
    }
    Ok(())
}

fn config_mpu9250(mcu: &mut Mcu, a: &Args) -> CmdResult {
    config(mcu, a, &MPU9250_REGS)
}

fn query_mpu9250(mcu: &mut Mcu, a: &Args) -> CmdResult {
    query_cmd(mcu, a, &MPU9250_REGS)
}

fn query_mpu9250_status(mcu: &mut Mcu, a: &Args) -> CmdResult {
    status_cmd(mcu, a, &MPU9250_REGS)
}

static COMMANDS: &[Command<Mcu>] = crate::commands![
    "config_mpu9250 oid=%c i2c_oid=%c" => config_mpu9250,
    "query_mpu9250 oid=%c rest_ticks=%u" => query_mpu9250,
    "query_mpu9250_status oid=%c" => query_mpu9250_status,
];

pub static MODULE: Module<Mcu> = Module {
    commands: COMMANDS,
    ..Module::EMPTY
};

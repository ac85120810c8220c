//! ICM-20948 on I2C (the reference's sensor_icm20948.c): the MPU-9250's
//! logic (see `mpu9250.rs`) with the ICM-20948's bank-0 registers.

use crate::command::{Args, CmdResult, Module};
use crate::mcu::Mcu;

use super::mpu9250::{config, query_cmd, status_cmd, MpuRegs};

pub static ICM20948_REGS: MpuRegs = MpuRegs {
    fifo_count_h: 0x70,
    fifo: 0x72,
    // INT_STATUS_2: one FIFO_OVERFLOW bit per FIFO.
    int_status: 0x1B,
    fifo_overflow_int: 0x0F,
};

crate::command!(CONFIG_ICM20948 = "config_icm20948 oid=%c i2c_oid=%c" => config_icm20948);
fn config_icm20948(mcu: &mut Mcu, a: &Args) -> CmdResult {
    config(mcu, a, &ICM20948_REGS)
}

crate::command!(QUERY_ICM20948 = "query_icm20948 oid=%c rest_ticks=%u" => query_icm20948);
fn query_icm20948(mcu: &mut Mcu, a: &Args) -> CmdResult {
    query_cmd(mcu, a, &ICM20948_REGS)
}

crate::command!(QUERY_ICM20948_STATUS = "query_icm20948_status oid=%c" => query_icm20948_status);
fn query_icm20948_status(mcu: &mut Mcu, a: &Args) -> CmdResult {
    status_cmd(mcu, a, &ICM20948_REGS)
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[CONFIG_ICM20948, QUERY_ICM20948, QUERY_ICM20948_STATUS],
    ..Module::EMPTY
};

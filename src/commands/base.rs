//! Base commands: identification, configuration, clocks, shutdown and
//! restart (the reference's basecmd.c, sched.c and linux/main.c).

use klipper_protocol::block::MESSAGE_PAYLOAD_MAX;
use klipper_protocol::dictionary::{IDENTIFY, IDENTIFY_RESPONSE};
use klipper_protocol::format::Arg;

use crate::clock::CLOCK_FREQ;
use crate::command::{Args, CmdResult, Constant, Module, Response, Shutdown, HF_IN_SHUTDOWN};
use crate::mcu::{Mcu, IS_SHUTDOWN, SHUTDOWN, STARTING};
use crate::sched::{STATS, STATS_SUMSQ_BASE};

/// Moves the MCU can queue; klippy sizes its step queues by it. The
/// reference offers 1024; memory is cheap on a Pi, so offer more.
pub const MOVE_COUNT: u16 = 4096;

static IDENTIFY_RESP: Response = Response::new(IDENTIFY_RESPONSE);
static CONFIG: Response = Response::new("config is_config=%c crc=%u is_shutdown=%c move_count=%hu");
static CLOCK: Response = Response::new("clock clock=%u");
static UPTIME: Response = Response::new("uptime high=%u clock=%u");

const COMMAND_REQUEST: Shutdown = Shutdown("Command request");
const ALREADY_FINALIZED: Shutdown = Shutdown("Already finalized");
const OIDS_ALLOCATED: Shutdown = Shutdown("oids already allocated");
const RESET_NOT_SHUTDOWN: Shutdown = Shutdown("config_reset only available when shutdown");
const EXEC_FAILED: Shutdown = Shutdown("Unable to restart (execv failed)");

crate::command!(IDENTIFY_CMD = IDENTIFY => identify; HF_IN_SHUTDOWN);
fn identify(mcu: &mut Mcu, a: &Args) -> CmdResult {
    let data = &mcu.registry.dictionary;
    crate::args!(a => offset, count);
    let offset = offset as usize;
    // A count past what one message holds (klippy asks for 40) gets what
    // fits, instead of a response that cannot be encoded and is dropped.
    let room = MESSAGE_PAYLOAD_MAX - 2 - klipper_protocol::vlq::encoded_len(offset as u32);
    let count = (count as u8 as usize).min(room);
    let chunk = data
        .get(offset..)
        .map_or(&[][..], |d| &d[..count.min(d.len())]);
    mcu.out.send(
        &IDENTIFY_RESP,
        &[Arg::Int(offset as u32), Arg::Bytes(chunk)],
    );
    Ok(())
}

crate::command!(ALLOCATE_OIDS = "allocate_oids count=%c" => allocate_oids);
fn allocate_oids(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => count);
    if mcu.oids.is_some() {
        return Err(OIDS_ALLOCATED);
    }
    mcu.oids = Some(crate::objects::OidTable::new(count as u8 as usize));
    Ok(())
}

crate::command!(GET_CONFIG = "get_config" => get_config; HF_IN_SHUTDOWN);
fn get_config(mcu: &mut Mcu, _a: &Args) -> CmdResult {
    let args = [
        Arg::Int(mcu.is_finalized() as u32),
        Arg::Int(mcu.config_crc),
        Arg::Int(mcu.is_shutdown() as u32),
        Arg::Int(mcu.move_count as u32),
    ];
    mcu.send(&CONFIG, &args);
    Ok(())
}

crate::command!(FINALIZE_CONFIG = "finalize_config crc=%u" => finalize_config);
fn finalize_config(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => crc);
    if mcu.is_finalized() {
        return Err(ALREADY_FINALIZED);
    }
    mcu.move_count = MOVE_COUNT;
    mcu.moves = crate::moveq::MovePool::new(MOVE_COUNT as usize);
    mcu.config_crc = crc;
    Ok(())
}

crate::command!(GET_CLOCK = "get_clock" => get_clock; HF_IN_SHUTDOWN);
fn get_clock(mcu: &mut Mcu, _a: &Args) -> CmdResult {
    let now = mcu.clock.now();
    mcu.send(&CLOCK, &[Arg::Int(now)]);
    Ok(())
}

crate::command!(GET_UPTIME = "get_uptime" => get_uptime; HF_IN_SHUTDOWN);
fn get_uptime(mcu: &mut Mcu, _a: &Args) -> CmdResult {
    let now = mcu.clock.now64();
    mcu.send(
        &UPTIME,
        &[Arg::Int((now >> 32) as u32), Arg::Int(now as u32)],
    );
    Ok(())
}

crate::command!(EMERGENCY_STOP = "emergency_stop" => emergency_stop; HF_IN_SHUTDOWN);
fn emergency_stop(_mcu: &mut Mcu, _a: &Args) -> CmdResult {
    Err(COMMAND_REQUEST)
}

crate::command!(CLEAR_SHUTDOWN = "clear_shutdown" => clear_shutdown; HF_IN_SHUTDOWN);
fn clear_shutdown(mcu: &mut Mcu, _a: &Args) -> CmdResult {
    mcu.clear_shutdown()
}

crate::command!(CONFIG_RESET = "config_reset" => config_reset; HF_IN_SHUTDOWN);
/// As the reference on Linux: start the program afresh, so every device is
/// released and the next configuration starts clean (FIRMWARE_RESTART).
fn config_reset(mcu: &mut Mcu, _a: &Args) -> CmdResult {
    if !mcu.is_shutdown() {
        return Err(RESET_NOT_SHUTDOWN);
    }
    (mcu.reexec)(mcu);
    Err(EXEC_FAILED)
}

crate::command!(DEBUG_NOP = "debug_nop" => |_, _| Ok(()); HF_IN_SHUTDOWN);

pub static MODULE: Module<Mcu> = Module {
    commands: &[
        IDENTIFY_CMD,
        ALLOCATE_OIDS,
        GET_CONFIG,
        FINALIZE_CONFIG,
        GET_CLOCK,
        GET_UPTIME,
        EMERGENCY_STOP,
        CLEAR_SHUTDOWN,
        CONFIG_RESET,
        DEBUG_NOP,
    ],
    responses: &[
        &IDENTIFY_RESP,
        &CONFIG,
        &CLOCK,
        &UPTIME,
        &STARTING,
        &SHUTDOWN,
        &IS_SHUTDOWN,
        &STATS,
    ],
    constants: &[
        ("MCU", Constant::Str("linux")),
        ("CLOCK_FREQ", Constant::Int(CLOCK_FREQ as i64)),
        ("STATS_SUMSQ_BASE", Constant::Int(STATS_SUMSQ_BASE as i64)),
    ],
    static_strings: &[
        COMMAND_REQUEST.0,
        ALREADY_FINALIZED.0,
        OIDS_ALLOCATED.0,
        RESET_NOT_SHUTDOWN.0,
        EXEC_FAILED.0,
        "Force shutdown command",
    ],
    ..Module::EMPTY
};

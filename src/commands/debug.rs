//! Debug commands (the reference's debugcmds.c).
//!
//! The reference's `debug_read`/`debug_write` peek and poke raw memory at
//! any address. A process on a shared host should not hand that out, so
//! here they address a private 256-byte scratch area: reads and writes
//! inside it behave like memory, reads outside it return 0 and writes
//! outside it are ignored.

use klipper_protocol::format::Arg;

use crate::command::{Args, CmdResult, Module, Response, HF_IN_SHUTDOWN};
use crate::mcu::Mcu;

static PONG: Response = Response::new("pong data=%*s");
static DEBUG_RESULT: Response = Response::new("debug_result val=%u");

/// Bytes an access of `order` covers (0: 8-bit, 1: 16-bit, else 32-bit).
fn width(order: u32) -> usize {
    match order {
        0 => 1,
        1 => 2,
        _ => 4,
    }
}

crate::command!(DEBUG_READ = "debug_read order=%c addr=%u" => debug_read; HF_IN_SHUTDOWN);
fn debug_read(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => order, addr);
    let (w, addr) = (width(order), addr as usize);
    let val = match mcu.debug_mem.get(addr..addr.saturating_add(w)) {
        Some(b) => b.iter().rev().fold(0u32, |v, &x| (v << 8) | x as u32),
        None => 0,
    };
    mcu.send(&DEBUG_RESULT, &[Arg::Int(val)]);
    Ok(())
}

crate::command!(DEBUG_WRITE = "debug_write order=%c addr=%u val=%u" => debug_write; HF_IN_SHUTDOWN);
fn debug_write(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => order, addr, val);
    let (w, addr, val) = (width(order), addr as usize, val);
    if let Some(b) = mcu.debug_mem.get_mut(addr..addr.saturating_add(w)) {
        b.copy_from_slice(&val.to_le_bytes()[..w]);
    }
    Ok(())
}

crate::command!(DEBUG_PING = "debug_ping data=%*s" => debug_ping; HF_IN_SHUTDOWN);
fn debug_ping(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => data: buf);
    mcu.out.send(&PONG, &[Arg::Bytes(data)]);
    Ok(())
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[DEBUG_READ, DEBUG_WRITE, DEBUG_PING],
    responses: &[&PONG, &DEBUG_RESULT],
    ..Module::EMPTY
};

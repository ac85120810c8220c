//! The MCU's state and the dispatch of received blocks.

use std::ffi::CString;

use klipper_protocol::block::{MESSAGE_HEADER_SIZE, MESSAGE_TRAILER_SIZE};
use klipper_protocol::format::{parse_args, Arg};
use klipper_protocol::vlq::decode_msgid;

use crate::clock::Clock;
use crate::command::{Args, Output, Registry, Response, Shutdown, HF_IN_SHUTDOWN, MAX_ARG_SLOTS};
use crate::commands::adc::{self, AnalogIn};
use crate::commands::buttons::{self, Buttons};
use crate::commands::counter::{self, Counter};
use crate::commands::ds18b20::{self, Ds18b20};
use crate::commands::endstop::{self, Endstop};
use crate::commands::gpio::{self, DigitalOut};
use crate::commands::i2c::I2cDev;
use crate::commands::pca9685::{self, Pca9685Chip, Pca9685Out};
use crate::commands::pwm::{self, PwmOut};
use crate::commands::spi::{self, SpiDev, SpiShutdown};
use crate::commands::stepper::{self, Stepper};
use crate::commands::trsync::{self, Trsync};
use crate::commands::{accel, display, probe, thermo};
use crate::hw::bus::{I2c, Spi};
use crate::hw::sysfs::PwmChannel;
use crate::hw::{Board, Gpio};
use crate::moveq::MovePool;
use crate::sched::{Stats, TimerId, TimerQueue, TimerResult, STATS};

pub static SHUTDOWN: Response = Response::new("shutdown clock=%u static_string_id=%hu");
pub static IS_SHUTDOWN: Response = Response::new("is_shutdown static_string_id=%hu");
pub static STARTING: Response = Response::new("starting");

pub const INVALID_COMMAND: Shutdown = Shutdown("Invalid command");
pub const PARSER_ERROR: Shutdown = Shutdown("Command parser error");
pub const CANT_ASSIGN_OID: Shutdown = Shutdown("Can't assign oid");
pub const INVALID_OID_TYPE: Shutdown = Shutdown("Invalid oid type");

/// What an oid names. Each command family adds its object kinds here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjKind {
    DigitalOut,
    Stepper,
    Endstop,
    Trsync,
    Buttons,
    Counter,
    Spi,
    SpiShutdown,
    I2c,
    PwmOut,
    AnalogIn,
    Pca9685,
    Ds18b20,
    /// Objects of the sensor and device groups (see
    /// `commands::accel` for the ranges).
    Ext(u8),
}

/// Tasks: work that timers hand to the main loop (sending reports).
pub const TASK_TRSYNC: u32 = 1 << 0;
pub const TASK_BUTTONS: u32 = 1 << 1;
pub const TASK_COUNTER: u32 = 1 << 2;
pub const TASK_ANALOG: u32 = 1 << 3;
pub const TASK_DS18B20: u32 = 1 << 4;
pub const TASK_ACCEL: u32 = 1 << 5;
pub const TASK_THERMO: u32 = 1 << 6;
pub const TASK_PROBE: u32 = 1 << 7;
pub const TASK_DISPLAY: u32 = 1 << 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShutdownState {
    Running,
    InProgress,
    Shutdown,
}

pub struct Mcu {
    pub clock: Clock,
    pub out: Output,
    pub registry: &'static Registry,
    pub timers: TimerQueue,
    pub stats: Stats,
    state: ShutdownState,
    shutdown_reason: u16,
    /// `allocate_oids`: one slot per oid, with the kind and index of the
    /// object in its family's table.
    pub oids: Option<Vec<Option<(ObjKind, u16)>>>,
    pub config_crc: u32,
    pub move_count: u16,
    /// The program's arguments, for the re-execution `config_reset` does.
    pub argv: Vec<CString>,
    /// What `config_reset` calls to start afresh (returns only on
    /// failure): `restart::reexec`, which an in-process harness (the
    /// fuzzer) replaces, since re-executing would end it.
    pub reexec: fn(&mut Mcu),
    /// `debug_read`/`debug_write` act on this scratch area, never on the
    /// process's own memory.
    pub debug_mem: [u8; 256],
    pub gpio: Box<dyn Gpio>,
    pub spi: Box<dyn Spi>,
    pub i2c: Box<dyn I2c>,
    pub dev_root: std::path::PathBuf,
    pub sysfs_root: std::path::PathBuf,
    /// The move queue, allocated by `finalize_config`.
    pub moves: MovePool,
    pub digital_outs: Vec<DigitalOut>,
    pub steppers: Vec<Stepper>,
    pub endstops: Vec<Endstop>,
    pub trsyncs: Vec<Trsync>,
    pub buttons: Vec<Buttons>,
    pub counters: Vec<Counter>,
    pub spis: Vec<SpiDev>,
    pub spi_shutdowns: Vec<SpiShutdown>,
    pub i2cs: Vec<I2cDev>,
    pub pwm_channels: Vec<PwmChannel>,
    pub pwm_outs: Vec<PwmOut>,
    pub analog_ins: Vec<AnalogIn>,
    pub pca9685_chips: Vec<Pca9685Chip>,
    pub pca9685_outs: Vec<Pca9685Out>,
    pub ds18b20s: Vec<Ds18b20>,
    pub accel: accel::State,
    pub thermo: thermo::State,
    pub probe: probe::State,
    pub display: display::State,
    /// Tasks woken (TASK_* bits).
    pub tasks: u32,
    /// The oid the running command claimed, if any.
    claimed_oid: Option<u8>,
}

impl Mcu {
    pub fn new(registry: &'static Registry, argv: Vec<CString>, board: Board) -> Mcu {
        Mcu {
            clock: Clock::new(),
            out: Output::new(),
            registry,
            timers: TimerQueue::new(),
            stats: Stats::default(),
            state: ShutdownState::Running,
            shutdown_reason: 0,
            oids: None,
            config_crc: 0,
            move_count: 0,
            argv,
            reexec: crate::restart::reexec,
            debug_mem: [0; 256],
            gpio: board.gpio,
            spi: board.spi,
            i2c: board.i2c,
            dev_root: board.dev_root,
            sysfs_root: board.sysfs_root,
            moves: MovePool::default(),
            digital_outs: Vec::new(),
            steppers: Vec::new(),
            endstops: Vec::new(),
            trsyncs: Vec::new(),
            buttons: Vec::new(),
            counters: Vec::new(),
            spis: Vec::new(),
            spi_shutdowns: Vec::new(),
            i2cs: Vec::new(),
            pwm_channels: Vec::new(),
            pwm_outs: Vec::new(),
            analog_ins: Vec::new(),
            pca9685_chips: Vec::new(),
            pca9685_outs: Vec::new(),
            ds18b20s: Vec::new(),
            accel: Default::default(),
            thermo: Default::default(),
            probe: Default::default(),
            display: Default::default(),
            tasks: 0,
            claimed_oid: None,
        }
    }

    #[inline]
    pub fn send(&mut self, resp: &Response, args: &[Arg]) {
        self.out.send(resp, args);
    }

    pub fn is_shutdown(&self) -> bool {
        self.state != ShutdownState::Running
    }

    pub fn is_finalized(&self) -> bool {
        self.move_count != 0
    }

    /// Shut down: stop every timer, return outputs to their defaults and
    /// tell the host why. The first reason sticks until cleared.
    pub fn shutdown(&mut self, reason: Shutdown) {
        let cur = self.clock.now();
        if self.state == ShutdownState::Running {
            self.shutdown_reason = self.registry.static_string_id(reason.0);
            eprintln!("klipper_mcu: shutdown: {}", reason.0);
        }
        self.state = ShutdownState::InProgress;
        self.timers.clear();
        self.run_shutdown_hooks();
        self.state = ShutdownState::Shutdown;
        let id = self.shutdown_reason as u32;
        self.send(&SHUTDOWN, &[Arg::Int(cur), Arg::Int(id)]);
    }

    /// Shut down unless already shut down.
    pub fn try_shutdown(&mut self, reason: Shutdown) {
        if !self.is_shutdown() {
            self.shutdown(reason);
        }
    }

    pub fn report_shutdown(&mut self) {
        let id = self.shutdown_reason as u32;
        self.send(&IS_SHUTDOWN, &[Arg::Int(id)]);
    }

    pub fn clear_shutdown(&mut self) -> Result<(), Shutdown> {
        match self.state {
            ShutdownState::Running => Err(Shutdown("Shutdown cleared when not shutdown")),
            ShutdownState::InProgress => Ok(()),
            ShutdownState::Shutdown => {
                self.state = ShutdownState::Running;
                Ok(())
            }
        }
    }

    /// Each command family puts its outputs in a safe state here.
    fn run_shutdown_hooks(&mut self) {
        gpio::shutdown(self);
        stepper::shutdown(self);
        trsync::shutdown(self);
        spi::shutdown(self);
        pwm::shutdown(self);
        pca9685::shutdown(self);
        adc::shutdown(self);
        accel::shutdown(self);
        thermo::shutdown(self);
        probe::shutdown(self);
        display::shutdown(self);
    }

    #[inline]
    pub fn wake_task(&mut self, task: u32) {
        self.tasks |= task;
    }

    /// Run the woken tasks.
    pub fn run_tasks(&mut self) {
        let t = std::mem::take(&mut self.tasks);
        if t & TASK_TRSYNC != 0 {
            trsync::task(self);
        }
        if t & TASK_BUTTONS != 0 {
            buttons::task(self);
        }
        if t & TASK_COUNTER != 0 {
            counter::task(self);
        }
        if t & TASK_ANALOG != 0 {
            adc::task(self);
        }
        if t & TASK_DS18B20 != 0 {
            ds18b20::task(self);
        }
        if t & TASK_ACCEL != 0 {
            accel::task(self);
        }
        if t & TASK_THERMO != 0 {
            thermo::task(self);
        }
        if t & TASK_PROBE != 0 {
            probe::task(self);
        }
        if t & TASK_DISPLAY != 0 {
            display::task(self);
        }
    }

    /// Run one timer; each command family dispatches its own ids.
    pub fn run_timer(&mut self, id: TimerId, waketime: u32) -> Result<TimerResult, Shutdown> {
        let index = (id.0 & 0xffff) as usize;
        match id.0 & 0xff00_0000 {
            stepper::TIMER_KIND => stepper::run_timer(self, index),
            gpio::TIMER_KIND => gpio::run_timer(self, index as u16, waketime),
            endstop::TIMER_KIND => Ok(endstop::run_timer(self, index, waketime)),
            k @ (trsync::REPORT_TIMER | trsync::EXPIRE_TIMER) => {
                Ok(trsync::run_timer(self, k, index, waketime))
            }
            buttons::TIMER_KIND => Ok(buttons::run_timer(self, index, waketime)),
            counter::TIMER_KIND => Ok(counter::run_timer(self, index, waketime)),
            pwm::TIMER_KIND => pwm::run_timer(self, index, waketime),
            adc::TIMER_KIND => adc::run_timer(self, index, waketime),
            pca9685::TIMER_KIND => pca9685::run_timer(self, index, waketime),
            ds18b20::TIMER_KIND => Ok(ds18b20::run_timer(self, index, waketime)),
            k if (16 << 24..32 << 24).contains(&k) => accel::run_timer(self, id, waketime),
            k if (32 << 24..48 << 24).contains(&k) => thermo::run_timer(self, id, waketime),
            k if (48 << 24..64 << 24).contains(&k) => probe::run_timer(self, id, waketime),
            k if (64 << 24..80 << 24).contains(&k) => display::run_timer(self, id, waketime),
            _ => Ok(TimerResult::Done),
        }
    }

    /// Claim `oid` for an object of `kind` stored at `index`.
    pub fn oid_alloc(&mut self, oid: u32, kind: ObjKind, index: u16) -> Result<(), Shutdown> {
        let finalized = self.is_finalized();
        match self.oids.as_mut().and_then(|t| t.get_mut(oid as usize)) {
            Some(slot @ None) if !finalized => {
                *slot = Some((kind, index));
                self.claimed_oid = Some(oid as u8);
                Ok(())
            }
            _ => Err(CANT_ASSIGN_OID),
        }
    }

    /// The index of the object of `kind` that `oid` names.
    #[inline]
    pub fn oid_lookup(&self, oid: u32, kind: ObjKind) -> Result<u16, Shutdown> {
        match self.oids.as_ref().and_then(|t| t.get(oid as usize)) {
            Some(Some((k, i))) if *k == kind => Ok(*i),
            _ => Err(INVALID_OID_TYPE),
        }
    }

    /// Dispatch every command of one received block (with header and
    /// trailer). A command that fails shuts the MCU down and ends the block,
    /// as the reference's longjmp does.
    pub fn dispatch_block(&mut self, block: &[u8]) {
        let end = block.len() - MESSAGE_TRAILER_SIZE;
        let mut pos = MESSAGE_HEADER_SIZE;
        while pos < end {
            let cmd = match decode_msgid(&block[..end], &mut pos) {
                Ok(id) => self.registry.table.get(id as usize).copied().flatten(),
                Err(_) => None,
            };
            let Some(cmd) = cmd else {
                self.shutdown(INVALID_COMMAND);
                return;
            };
            let mut args = Args {
                slots: [0; MAX_ARG_SLOTS],
                data: block,
            };
            if parse_args(cmd.params.as_slice(), block, end, &mut pos, &mut args.slots).is_err() {
                self.shutdown(PARSER_ERROR);
                return;
            }
            if self.is_shutdown() && cmd.flags & HF_IN_SHUTDOWN == 0 {
                self.report_shutdown();
                continue;
            }
            self.claimed_oid = None;
            if let Err(reason) = (cmd.handler)(self, &args) {
                // A configuration that failed after claiming its oid may
                // not have stored its object: release the oid, so a later
                // lookup fails cleanly instead of finding nothing there.
                if let Some(oid) = self.claimed_oid.take() {
                    if let Some(slot) = self.oids.as_mut().and_then(|t| t.get_mut(oid as usize)) {
                        *slot = None;
                    }
                }
                self.shutdown(reason);
                return;
            }
        }
    }

    /// Account a pass of the main loop; send `stats` when due.
    pub fn stats_update(&mut self, start: u32, cur: u32) {
        if let Some(r) = self.stats.update(start, cur) {
            self.send(&STATS, &Stats::args(&r));
        }
    }
}

/// Shutdown reasons of the core. The first is what an unlisted reason
/// (a bug, caught by the tests) would be reported as.
pub static MODULE: crate::command::Module = crate::command::Module {
    commands: &[],
    responses: &[],
    constants: &[],
    enumerations: &[],
    static_strings: STATIC_STRINGS,
};

const STATIC_STRINGS: &[&str] = &[
    "Internal error: unlisted shutdown reason",
    INVALID_COMMAND.0,
    PARSER_ERROR.0,
    CANT_ASSIGN_OID.0,
    INVALID_OID_TYPE.0,
    "Shutdown cleared when not shutdown",
    crate::sched::TIMER_TOO_CLOSE.0,
    crate::sched::RESCHEDULED_IN_PAST.0,
];

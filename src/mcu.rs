//! The MCU's state and the dispatch of received blocks.

use std::ffi::CString;

use klipper_protocol::block::{MESSAGE_HEADER_SIZE, MESSAGE_TRAILER_SIZE};
use klipper_protocol::format::{parse_args, Arg};
use klipper_protocol::vlq::decode_msgid;

use crate::clock::Clock;
use crate::command::{Args, Module, Output, Response, HF_IN_SHUTDOWN, MAX_ARG_SLOTS};
use crate::hw::bus::{I2c, Spi};
use crate::hw::{Board, Gpio};
use crate::moveq::MovePool;
use crate::objects::{Objects, OidTable, CANT_ASSIGN_OID};
use crate::sched::{Stats, TimerFn, TimerQueue, TimerResult, STATS};
use crate::shutdown::Shutdown;

pub use crate::objects::INVALID_OID_TYPE;

/// This MCU's timers and registry (the generic ones, on [`Mcu`]).
pub type TimerId = crate::sched::TimerId<Mcu>;
pub type Registry = crate::command::Registry<Mcu>;
pub type Command = crate::command::Command<Mcu>;
pub type Family = Module<Mcu>;

pub static SHUTDOWN: Response = Response::new("shutdown clock=%u static_string_id=%hu");
pub static IS_SHUTDOWN: Response = Response::new("is_shutdown static_string_id=%hu");
pub static STARTING: Response = Response::new("starting");

pub const INVALID_COMMAND: Shutdown = Shutdown("Invalid command");
pub const PARSER_ERROR: Shutdown = Shutdown("Command parser error");

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
    pub timers: TimerQueue<Mcu>,
    pub stats: Stats,
    state: ShutdownState,
    shutdown_reason: u16,
    /// `allocate_oids`: one slot per oid, naming the type and index of
    /// the object in [`Mcu::objs`].
    pub oids: Option<OidTable>,
    /// The families' objects, one table per type.
    pub objs: Objects,
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
    /// Tasks woken: bit `i` runs `registry.tasks[i]`.
    pub tasks: u64,
    /// The oid the running command claimed, if any.
    claimed_oid: Option<u8>,
}

impl Mcu {
    pub fn new(registry: &'static Registry, argv: Vec<CString>, board: Board) -> Mcu {
        Mcu {
            clock: Clock::new(),
            out: Output::new(registry.response_ids.clone()),
            registry,
            timers: TimerQueue::new(),
            stats: Stats::default(),
            state: ShutdownState::Running,
            shutdown_reason: 0,
            oids: None,
            objs: Objects::default(),
            config_crc: 0,
            move_count: 0,
            argv,
            reexec: |m| crate::restart::reexec(&m.argv),
            debug_mem: [0; 256],
            gpio: board.gpio,
            spi: board.spi,
            i2c: board.i2c,
            dev_root: board.dev_root,
            sysfs_root: board.sysfs_root,
            moves: MovePool::default(),
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
            elog!("klipper_mcu: shutdown: {}", reason.0);
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

    /// Each command family puts its outputs in a safe state: the
    /// families' shutdown hooks, in the order they are listed.
    fn run_shutdown_hooks(&mut self) {
        let reg = self.registry;
        for hook in &reg.shutdown_hooks {
            hook(self);
        }
    }

    /// Have the main loop run `family`'s task (declared in its
    /// [`Module::task`]).
    #[inline]
    pub fn wake_task(&mut self, family: &Family) {
        if let Some(i) = self.registry.task_index(family) {
            self.tasks |= 1 << i;
        }
    }

    /// Run the woken tasks.
    pub fn run_tasks(&mut self) {
        let t = std::mem::take(&mut self.tasks);
        let reg = self.registry;
        for (i, task) in reg.tasks.iter().enumerate() {
            if t & (1 << i) != 0 {
                (task.1)(self);
            }
        }
    }

    /// Look up `oid`'s `T` and stop its timer `func`, as a query that
    /// (re)starts sampling does first: the index and the timer.
    pub fn oid_stop_timer<T: 'static>(
        &mut self,
        oid: u32,
        func: TimerFn<Mcu>,
    ) -> Result<(usize, TimerId), Shutdown> {
        let i = self.oid_lookup::<T>(oid)?;
        let id = TimerId::new(func, i as u32);
        self.timers.remove(id);
        Ok((i, id))
    }

    /// Schedule timer `id` at `waketime`; "Timer too close" when that is
    /// already past and would run first (the reference's
    /// `sched_add_timer`, which reads the clock itself).
    pub fn add_timer(&mut self, id: TimerId, waketime: u32) -> Result<(), Shutdown> {
        let now = self.clock.now();
        self.timers.add(id, waketime, now)
    }

    /// Run one timer: its callback, with its argument.
    #[inline]
    pub fn run_timer(&mut self, id: TimerId, waketime: u32) -> Result<TimerResult, Shutdown> {
        id.run(self, waketime)
    }

    /// Claim `oid` for the next `T`, the one `objs.push` adds next (the
    /// reference's `oid_alloc`); returns its index in the `T` table.
    pub fn oid_new<T: 'static>(&mut self, oid: u32) -> Result<usize, Shutdown> {
        let index = self.objs.of::<T>().len();
        self.oid_alloc::<T>(oid, index as u16)?;
        Ok(index)
    }

    /// Claim `oid` for the object of type `T` at `index` in its table.
    fn oid_alloc<T: 'static>(&mut self, oid: u32, index: u16) -> Result<(), Shutdown> {
        if self.is_finalized() {
            return Err(CANT_ASSIGN_OID);
        }
        let table = self.oids.as_mut().ok_or(CANT_ASSIGN_OID)?;
        table.alloc::<T>(oid, index)?;
        self.claimed_oid = Some(oid as u8);
        Ok(())
    }

    /// The index of the `T` that `oid` names.
    #[inline]
    pub fn oid_lookup<T: 'static>(&self, oid: u32) -> Result<usize, Shutdown> {
        match &self.oids {
            Some(t) => t.lookup::<T>(oid).map(usize::from),
            None => Err(INVALID_OID_TYPE),
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
                format: cmd.format,
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
                    if let Some(t) = self.oids.as_mut() {
                        t.release(oid as u32);
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
pub static MODULE: Family = Module {
    static_strings: STATIC_STRINGS,
    ..Module::EMPTY
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

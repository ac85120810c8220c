//! Command and response declarations, the id table, argument parsing and
//! response encoding.
//!
//! Each command family declares its commands beside their handlers as a
//! `static` slice of [`Command`]s, and its responses as [`Response`]
//! statics; [`Registry::new`] numbers them (as the reference's build
//! scripts do), builds the dispatch table and the data dictionary.

use klipper_protocol::block::{
    finish_block, MESSAGE_HEADER_SIZE, MESSAGE_MAX, MESSAGE_MIN, MESSAGE_TRAILER_SIZE,
};
pub use klipper_protocol::dictionary::EnumValue;
use klipper_protocol::dictionary::{DictionaryBuilder, IDENTIFY, IDENTIFY_RESPONSE};
use klipper_protocol::format::{encode_args, Arg, ParamList};
use klipper_protocol::vlq::{encode_msgid, msgid_dictionary_value};

pub use crate::shutdown::{CmdResult, Shutdown};

/// A command handler acting on the context `C` (the MCU). Arguments come
/// as the reference passes them: one slot per integer, two (length,
/// offset) per buffer; handlers name them with [`args!`](crate::args).
pub type Handler<C> = fn(&mut C, &Args) -> CmdResult;

/// A task or shutdown hook of a family (the reference's DECL_TASK and
/// DECL_SHUTDOWN).
pub type Hook<C> = fn(&mut C);

/// The command may run while the MCU is shut down.
pub const HF_IN_SHUTDOWN: u8 = 0x01;

/// A host-to-MCU command.
pub struct Command<C: 'static> {
    pub format: &'static str,
    pub flags: u8,
    pub params: ParamList,
    pub handler: Handler<C>,
}

impl<C> Command<C> {
    pub const fn new(format: &'static str, flags: u8, handler: Handler<C>) -> Command<C> {
        Command {
            format,
            flags,
            params: ParamList::parse(format),
            handler,
        }
    }
}

/// An MCU-to-host message. Its id is not stored here but in the
/// [`Registry`] that numbered it (see [`ResponseIds`]), so registries built
/// side by side (tests, dialects) never see each other's numbers.
pub struct Response {
    pub format: &'static str,
    pub params: ParamList,
}

impl Response {
    pub const fn new(format: &'static str) -> Response {
        Response {
            format,
            params: ParamList::parse(format),
        }
    }
}

/// The ids a registry gave its responses, by the response's address
/// (every `Response` is a `static`, so its address names it).
#[derive(Debug, Default, Clone)]
pub struct ResponseIds {
    /// Sorted by address.
    ids: Vec<(usize, u16)>,
}

impl ResponseIds {
    /// The id of `resp`, or `None` when this registry does not serve it.
    #[inline]
    pub fn get(&self, resp: &Response) -> Option<u16> {
        let key = resp as *const Response as usize;
        self.ids
            .binary_search_by_key(&key, |e| e.0)
            .ok()
            .map(|i| self.ids[i].1)
    }
}

/// Most argument slots a command fills.
pub const MAX_ARG_SLOTS: usize = 24;

/// A parsed command's arguments, referring into the received block.
pub struct Args<'a> {
    pub slots: [u32; MAX_ARG_SLOTS],
    pub data: &'a [u8],
    /// The command's format, so that debug builds check the names
    /// handlers give the arguments ([`args!`](crate::args)).
    pub format: &'static str,
}

/// A family's dictionary enumerations, one `"enum" { "name" = value, ... }`
/// group an enum, each value an [`EnumValue::Single`].
#[macro_export]
macro_rules! enumerations {
    ($($enum:literal { $($name:literal = $v:expr),* $(,)? }),* $(,)?) => {
        &[$($(($enum, $name, $crate::command::EnumValue::Single($v as i64)),)*)*]
    };
}

/// Bind a handler's arguments to names, in the order of its format string:
/// `args!(a => oid, clock, data: buf)` makes `oid` and `clock` `u32`s and
/// `data` a `&[u8]`. Debug builds check each name (and buffer-ness)
/// against the format, so a slot can never be read under a wrong name.
#[macro_export]
macro_rules! args {
    ($a:ident => $($rest:tt)*) => {
        $crate::args!(@arg $a, 0usize, 0usize; $($rest)*);
    };
    (@arg $a:ident, $k:expr, $i:expr; ) => {};
    (@arg $a:ident, $k:expr, $i:expr; $name:ident: buf $(, $($rest:tt)*)?) => {
        debug_assert!($a.names($k, stringify!($name), true), "{}: {}", stringify!($name), $a.format);
        #[allow(unused_variables)]
        let $name: &[u8] = $a.buf($i);
        $crate::args!(@arg $a, $k + 1, $i + 2; $($($rest)*)?);
    };
    (@arg $a:ident, $k:expr, $i:expr; $name:ident $(, $($rest:tt)*)?) => {
        debug_assert!($a.names($k, stringify!($name), false), "{}: {}", stringify!($name), $a.format);
        #[allow(unused_variables)]
        let $name: u32 = $a.get($i);
        $crate::args!(@arg $a, $k + 1, $i + 1; $($($rest)*)?);
    };
}

impl Args<'_> {
    /// Whether parameter `k` of the format is `name` (a buffer if `buf`).
    #[doc(hidden)]
    pub fn names(&self, k: usize, name: &str, buf: bool) -> bool {
        let Some((n, t)) = self
            .format
            .split(' ')
            .skip(1)
            .nth(k)
            .and_then(|p| p.split_once('='))
        else {
            return false;
        };
        n == name && t.ends_with('s') == buf
    }

    #[inline]
    pub fn get(&self, i: usize) -> u32 {
        self.slots[i]
    }
    /// The buffer whose length sits in slot `i` (and offset in `i + 1`).
    #[inline]
    pub fn buf(&self, i: usize) -> &[u8] {
        let len = self.slots[i] as usize;
        let off = self.slots[i + 1] as usize;
        &self.data[off..off + len]
    }
}

/// Outgoing bytes: whole framed blocks waiting for the console to write
/// them. Fixed capacity; nothing is allocated after start-up.
pub struct Output {
    ids: ResponseIds,
    buf: crate::pages::ZeroedPages,
    len: usize,
    /// The sequence byte blocks carry (the receiver's next expected one).
    pub seq: u8,
    /// Messages dropped because the host stopped reading.
    pub dropped: u32,
}

pub const OUTPUT_CAPACITY: usize = 64 * 1024;

impl Output {
    /// An output that numbers responses with `ids` (from
    /// [`Registry::response_ids`]).
    pub fn new(ids: ResponseIds) -> Output {
        Output {
            ids,
            buf: crate::pages::ZeroedPages::new(OUTPUT_CAPACITY),
            len: 0,
            seq: klipper_protocol::block::MESSAGE_DEST,
            dropped: 0,
        }
    }

    /// Frame one message (each message travels in its own block, as the
    /// host's parser expects).
    #[inline]
    pub fn send(&mut self, resp: &Response, args: &[Arg]) {
        if self.buf.len() - self.len < MESSAGE_MAX {
            self.dropped = self.dropped.wrapping_add(1);
            return;
        }
        let Some(id) = self.ids.get(resp) else {
            // Not served by this registry (a bug, or the other dialect's
            // form): nothing the host could decode.
            self.dropped = self.dropped.wrapping_add(1);
            return;
        };
        let blk = &mut self.buf[self.len..self.len + MESSAGE_MAX];
        let n = encode_msgid(id, &mut blk[MESSAGE_HEADER_SIZE..]);
        let body = &mut blk[MESSAGE_HEADER_SIZE + n..MESSAGE_MAX - MESSAGE_TRAILER_SIZE];
        match encode_args(resp.params.as_slice(), args, body) {
            Some(m) => {
                let len = MESSAGE_HEADER_SIZE + n + m + MESSAGE_TRAILER_SIZE;
                finish_block(blk, len, self.seq);
                self.len += len;
            }
            // The reference shuts down with "Message encode error"; a
            // message that cannot be encoded is a bug here, so drop it.
            None => self.dropped = self.dropped.wrapping_add(1),
        }
    }

    /// An empty block: an ack, or a nak when the host sees it twice.
    #[inline]
    pub fn send_ack(&mut self) {
        if self.buf.len() - self.len < MESSAGE_MIN {
            self.dropped = self.dropped.wrapping_add(1);
            return;
        }
        finish_block(&mut self.buf[self.len..], MESSAGE_MIN, self.seq);
        self.len += MESSAGE_MIN;
    }

    pub fn pending(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Drop the first `n` pending bytes (they were written).
    pub fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.len, 0);
        self.len -= n;
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One command family, declared beside its handlers: its commands,
/// responses, constants, enumerations and shutdown reasons, and its hooks
/// (the reference's DECL_TASK and DECL_SHUTDOWN). The composition root
/// (`commands::modules`) lists the families; nothing else names them.
pub struct Module<C: 'static> {
    pub commands: &'static [Command<C>],
    pub responses: &'static [&'static Response],
    pub constants: &'static [(&'static str, Constant)],
    pub enumerations: &'static [(&'static str, &'static str, EnumValue)],
    pub static_strings: &'static [&'static str],
    /// Runs in the main loop after the family woke it
    /// (`Mcu::wake_task(&MODULE)`).
    pub task: Option<Hook<C>>,
    /// Puts the family's outputs in a safe state at shutdown.
    pub shutdown: Option<Hook<C>>,
}

impl<C> Module<C> {
    /// A module declaring nothing; families fill in what they have with
    /// `..Module::EMPTY`.
    pub const EMPTY: Module<C> = Module {
        commands: &[],
        responses: &[],
        constants: &[],
        enumerations: &[],
        static_strings: &[],
        task: None,
        shutdown: None,
    };
}

/// A dictionary constant.
#[derive(Debug, Clone, Copy)]
pub enum Constant {
    Int(i64),
    Str(&'static str),
}

/// Static strings are numbered from 2, as in the reference.
const STATIC_STRING_MIN: u16 = 2;

/// The numbered commands and responses of this build, and the families'
/// hooks.
pub struct Registry<C: 'static> {
    /// Commands by encoded id.
    pub table: Vec<Option<&'static Command<C>>>,
    /// Response ids, for [`Output::new`].
    pub response_ids: ResponseIds,
    pub static_strings: Vec<&'static str>,
    /// The zlib-compressed data dictionary `identify` serves.
    pub dictionary: Vec<u8>,
    /// Task hooks, with the address of the module that declared each
    /// (the name `wake_task` finds it by).
    pub tasks: Vec<(usize, Hook<C>)>,
    /// Shutdown hooks, in module order.
    pub shutdown_hooks: Vec<Hook<C>>,
}

impl<C> Registry<C> {
    pub fn new(modules: &[&'static Module<C>]) -> Registry<C> {
        Registry::with_overrides(modules, &[])
    }

    /// The index of `module`'s task in [`Registry::tasks`].
    #[inline]
    pub fn task_index(&self, module: &Module<C>) -> Option<usize> {
        let key = module as *const Module<C> as usize;
        self.tasks.iter().position(|t| t.0 == key)
    }

    /// Number `modules`, where a command or response of `overrides`
    /// replaces the one of the same name (a host dialect, see
    /// `commands::dialect_overrides`).
    pub fn with_overrides(
        modules: &[&'static Module<C>],
        overrides: &[&'static Module<C>],
    ) -> Registry<C> {
        let name = |f: &str| f.split(' ').next().unwrap_or("").to_string();
        let overridden_cmd = |f: &str| {
            overrides
                .iter()
                .any(|o| o.commands.iter().any(|c| name(c.format) == name(f)))
        };
        let overridden_resp = |f: &str| {
            overrides
                .iter()
                .any(|o| o.responses.iter().any(|r| name(r.format) == name(f)))
        };
        let commands: Vec<&'static Command<C>> = modules
            .iter()
            .flat_map(|m| m.commands.iter())
            .filter(|c| !overridden_cmd(c.format))
            .chain(overrides.iter().flat_map(|o| o.commands.iter()))
            .collect();
        let responses: Vec<&'static Response> = modules
            .iter()
            .flat_map(|m| m.responses.iter().copied())
            .filter(|r| !overridden_resp(r.format))
            .chain(overrides.iter().flat_map(|o| o.responses.iter().copied()))
            .collect();
        let mut dict = DictionaryBuilder::new(
            "Klipper",
            concat!("klipper_mcu-rs-", env!("CARGO_PKG_VERSION")),
            concat!("rustc klipper_mcu-rs-", env!("CARGO_PKG_VERSION")),
            "GNU GPLv3",
        );
        // Ids 0 and 1 are fixed: identify_response and identify.
        let mut table: Vec<Option<&'static Command<C>>> = vec![None, None];
        let mut next: u16 = 2;
        let mut static_strings = Vec::new();
        let mut response_ids = Vec::new();
        {
            for c in commands {
                let id = if c.format == IDENTIFY {
                    1
                } else {
                    next += 1;
                    next - 1
                };
                if table.len() <= id as usize {
                    table.resize(id as usize + 1, None);
                }
                table[id as usize] = Some(c);
                dict.command(c.format, msgid_dictionary_value(id));
            }
        }
        for r in responses {
            let id = if r.format == IDENTIFY_RESPONSE {
                0
            } else {
                next += 1;
                next - 1
            };
            response_ids.push((r as *const Response as usize, id));
            dict.response(r.format, msgid_dictionary_value(id));
        }
        for m in modules.iter().chain(overrides) {
            for (name, value) in m.constants {
                let v = match value {
                    Constant::Int(i) => serde_json_value_int(*i),
                    Constant::Str(s) => serde_json_value_str(s),
                };
                dict.constant(name, v);
            }
            for (e, name, v) in m.enumerations {
                dict.enumeration(e, name, *v);
            }
            for s in m.static_strings {
                if !static_strings.contains(s) {
                    static_strings.push(*s);
                }
            }
        }
        for (i, s) in static_strings.iter().enumerate() {
            dict.enumeration(
                "static_string_id",
                s,
                EnumValue::Single((i as u16 + STATIC_STRING_MIN) as i64),
            );
        }
        assert!(next < 12288, "too many message ids");
        response_ids.sort_unstable();
        let tasks = modules
            .iter()
            .filter_map(|m| m.task.map(|t| (*m as *const Module<C> as usize, t)))
            .collect();
        let shutdown_hooks = modules.iter().filter_map(|m| m.shutdown).collect();
        assert!(
            modules.iter().filter(|m| m.task.is_some()).count() <= 64,
            "woken tasks are bits of a u64"
        );
        Registry {
            table,
            response_ids: ResponseIds { ids: response_ids },
            static_strings,
            dictionary: dict.compressed(),
            tasks,
            shutdown_hooks,
        }
    }

    /// The id of a shutdown reason; an unlisted one (a bug) gets the
    /// generic first entry rather than a panic.
    pub fn static_string_id(&self, s: &str) -> u16 {
        let i = self
            .static_strings
            .iter()
            .position(|x| *x == s)
            .unwrap_or(0);
        i as u16 + STATIC_STRING_MIN
    }
}

fn serde_json_value_int(i: i64) -> klipper_protocol::dictionary::Json {
    klipper_protocol::dictionary::Json::from(i)
}

fn serde_json_value_str(s: &str) -> klipper_protocol::dictionary::Json {
    klipper_protocol::dictionary::Json::from(s)
}

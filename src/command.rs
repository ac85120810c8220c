//! Command and response declarations, the id table, argument parsing and
//! response encoding.
//!
//! Each command family declares its commands beside their handlers as a
//! `static` slice of [`Command`]s, and its responses as [`Response`]
//! statics; [`Registry::new`] numbers them (as the reference's build
//! scripts do), builds the dispatch table and the data dictionary.

use std::sync::atomic::{AtomicU16, Ordering};

use klipper_protocol::block::{
    finish_block, MESSAGE_HEADER_SIZE, MESSAGE_MAX, MESSAGE_MIN, MESSAGE_TRAILER_SIZE,
};
use klipper_protocol::dictionary::{DictionaryBuilder, EnumValue, IDENTIFY, IDENTIFY_RESPONSE};
use klipper_protocol::format::{encode_args, Arg, ParamList};
use klipper_protocol::vlq::{encode_msgid, msgid_dictionary_value};

use crate::mcu::Mcu;

/// Why the MCU shuts down: a static string the host shows the user. Every
/// reason a module can give must be listed in its `STATIC_STRINGS`, so that
/// the dictionary numbers it (a test checks the sources for this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown(pub &'static str);

pub type CmdResult = Result<(), Shutdown>;

/// A command handler. Arguments come as the reference passes them: one
/// slot per integer, two (length, offset) per buffer.
pub type Handler = fn(&mut Mcu, &Args) -> CmdResult;

/// The command may run while the MCU is shut down.
pub const HF_IN_SHUTDOWN: u8 = 0x01;

/// A host-to-MCU command.
pub struct Command {
    pub format: &'static str,
    pub flags: u8,
    pub params: ParamList,
    pub handler: Handler,
}

impl Command {
    pub const fn new(format: &'static str, flags: u8, handler: Handler) -> Command {
        Command {
            format,
            flags,
            params: ParamList::parse(format),
            handler,
        }
    }
}

/// An MCU-to-host message; its id is set once by [`Registry::new`].
pub struct Response {
    pub format: &'static str,
    pub params: ParamList,
    id: AtomicU16,
}

impl Response {
    pub const fn new(format: &'static str) -> Response {
        Response {
            format,
            params: ParamList::parse(format),
            id: AtomicU16::new(u16::MAX),
        }
    }
    #[inline]
    pub fn id(&self) -> u16 {
        self.id.load(Ordering::Relaxed)
    }
}

/// Most argument slots a command fills.
pub const MAX_ARG_SLOTS: usize = 24;

/// A parsed command's arguments, referring into the received block.
pub struct Args<'a> {
    pub slots: [u32; MAX_ARG_SLOTS],
    pub data: &'a [u8],
}

impl Args<'_> {
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
    buf: Box<[u8]>,
    len: usize,
    /// The sequence byte blocks carry (the receiver's next expected one).
    pub seq: u8,
    /// Messages dropped because the host stopped reading.
    pub dropped: u32,
}

pub const OUTPUT_CAPACITY: usize = 64 * 1024;

impl Output {
    pub fn new() -> Output {
        Output {
            buf: vec![0u8; OUTPUT_CAPACITY].into_boxed_slice(),
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
        let blk = &mut self.buf[self.len..self.len + MESSAGE_MAX];
        let n = encode_msgid(resp.id(), &mut blk[MESSAGE_HEADER_SIZE..]);
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

impl Default for Output {
    fn default() -> Self {
        Self::new()
    }
}

/// One command family: its commands, responses, constants, enumerations
/// and shutdown reasons.
pub struct Module {
    pub commands: &'static [Command],
    pub responses: &'static [&'static Response],
    pub constants: &'static [(&'static str, Constant)],
    pub enumerations: &'static [(&'static str, &'static str, EnumValue)],
    pub static_strings: &'static [&'static str],
}

/// A dictionary constant.
#[derive(Debug, Clone, Copy)]
pub enum Constant {
    Int(i64),
    Str(&'static str),
}

/// Static strings are numbered from 2, as in the reference.
const STATIC_STRING_MIN: u16 = 2;

/// The numbered commands and responses of this build.
pub struct Registry {
    /// Commands by encoded id.
    pub table: Vec<Option<&'static Command>>,
    pub static_strings: Vec<&'static str>,
    /// The zlib-compressed data dictionary `identify` serves.
    pub dictionary: Vec<u8>,
}

impl Registry {
    pub fn new(modules: &[&Module]) -> Registry {
        Registry::with_overrides(modules, &[])
    }

    /// Number `modules`, where a command or response of `overrides`
    /// replaces the one of the same name (a host dialect, see
    /// `commands::dialect_overrides`).
    pub fn with_overrides(modules: &[&Module], overrides: &[&Module]) -> Registry {
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
        let commands: Vec<&'static Command> = modules
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
        let mut table: Vec<Option<&'static Command>> = vec![None, None];
        let mut next: u16 = 2;
        let mut static_strings = Vec::new();
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
            r.id.store(id, Ordering::Relaxed);
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
        Registry {
            table,
            static_strings,
            dictionary: dict.compressed(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(std::fs::read_to_string(&p).unwrap());
            }
        }
    }

    /// Every shutdown reason written in the sources is numbered in the
    /// dictionary, so the host can show it.
    #[test]
    fn every_shutdown_reason_is_registered() {
        let reg = Registry::new(&crate::commands::modules());
        let mut files = Vec::new();
        sources(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let mut found = 0;
        for text in &files {
            for part in text.split(concat!("Shutdown", "(\"")).skip(1) {
                let reason = &part[..part.find('"').unwrap()];
                found += 1;
                assert!(
                    reg.static_strings.contains(&reason),
                    "unregistered shutdown reason: {reason}"
                );
            }
        }
        assert!(found > 10);
        assert_eq!(reg.static_string_id(reg.static_strings[3]), 5);
    }

    #[test]
    fn ids_are_unique_and_identify_is_fixed() {
        let reg = Registry::new(&crate::commands::modules());
        let d = klipper_protocol::dictionary::Dictionary::from_compressed(&reg.dictionary).unwrap();
        assert_eq!(d.commands["identify"].id, 1);
        assert_eq!(d.responses[&0].format.name, "identify_response");
        let mut ids: Vec<u16> = d
            .commands
            .values()
            .map(|m| m.id)
            .chain(d.responses.keys().copied())
            .collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
        assert_eq!(d.constant("MCU").and_then(|v| v.as_str()), Some("linux"));
    }
}

#[cfg(test)]
mod dialect_tests {
    use super::*;
    use crate::commands::{dialect_overrides, modules, Dialect};
    use klipper_protocol::dictionary::Dictionary;

    #[test]
    fn kalico_dialect_replaces_forms_by_name() {
        let reg = Registry::with_overrides(&modules(), &dialect_overrides(Dialect::Kalico));
        let d = Dictionary::from_compressed(&reg.dictionary).unwrap();
        let q = &d.commands["query_analog_in"].format.format;
        assert!(!q.contains("bytes_per_report"), "{q}");
        assert!(d.commands["config_ds18b20"]
            .format
            .format
            .contains("ignore_limits"));
        let r: Vec<_> = d
            .responses
            .values()
            .filter(|m| m.format.name == "analog_in_state")
            .collect();
        assert_eq!(r.len(), 1);
        assert!(r[0].format.format.ends_with("value=%hu"));
        let plain = Registry::new(&modules());
        let d = Dictionary::from_compressed(&plain.dictionary).unwrap();
        assert!(d.commands["query_analog_in"]
            .format
            .format
            .contains("bytes_per_report"));
    }
}

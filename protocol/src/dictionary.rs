//! The data dictionary: the JSON document an MCU serves through `identify`
//! (zlib-compressed) that tells the host every message, id, constant and
//! enumeration.

use std::collections::HashMap;
use std::io::{Read, Write};

use serde_json::{json, Map};

/// JSON values, as the dictionary holds them.
pub use serde_json::Value as Json;

use crate::format::MessageFormat;
use crate::vlq::msgid_from_dictionary_value;
use crate::ParseError;

/// The two messages every MCU has at fixed ids (encoded ids 0 and 1).
pub const IDENTIFY_RESPONSE: &str = "identify_response offset=%u data=%.*s";
pub const IDENTIFY: &str = "identify offset=%u count=%c";

/// An enumeration entry: one value, or a range `name0 = [first, count]`
/// where `nameN` stands for `first + N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnumValue {
    Single(i64),
    Range(i64, i64),
}

/// Builds a dictionary; entries keep the order they were added in.
///
/// The JSON text is written as entries are added, with no
/// `serde_json::Value` tree: an MCU builds its dictionary once at start-up
/// and every small block a tree leaves behind in the allocator stays
/// resident for as long as the MCU runs. The text is the one serde_json
/// writes for the same entries in a `preserve_order` map (a key added
/// again keeps its place and takes the new value), byte for byte.
#[derive(Debug, Clone, Default)]
pub struct DictionaryBuilder {
    root: Section,
    config: Section,
    /// Each enumeration's name (as JSON text) and entries.
    enums: Vec<(Vec<u8>, Section)>,
    commands: Section,
    responses: Section,
}

/// An ordered JSON object under construction: the keys and values as JSON
/// text (written by serde_json's own serializer) in one buffer, and where
/// each entry's key and value are in it.
#[derive(Debug, Clone, Default)]
struct Section {
    text: Vec<u8>,
    /// (key start, key end, value start, value end) in `text`.
    entries: Vec<(usize, usize, usize, usize)>,
}

impl Section {
    /// Add `key` with `value` (JSON text written by `value`), or give an
    /// existing `key` the new value in its place.
    fn insert(&mut self, key: &str, value: impl FnOnce(&mut Vec<u8>)) {
        let k0 = self.text.len();
        json_to(&mut self.text, key);
        let k1 = self.text.len();
        let old = self
            .entries
            .iter()
            .position(|e| self.text[e.0..e.1] == self.text[k0..k1]);
        let (v0, k0, k1) = match old {
            // Keep the key where it was; drop its second copy.
            Some(i) => {
                self.text.truncate(k0);
                (k0, self.entries[i].0, self.entries[i].1)
            }
            None => (k1, k0, k1),
        };
        value(&mut self.text);
        let e = (k0, k1, v0, self.text.len());
        match old {
            Some(i) => self.entries[i] = e,
            None => self.entries.push(e),
        }
    }

    /// The object's JSON text, appended to `out`.
    fn write(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, &(k0, k1, v0, v1)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&self.text[k0..k1]);
            out.push(b':');
            out.extend_from_slice(&self.text[v0..v1]);
        }
        out.push(b'}');
    }
}

/// Append `v` as serde_json writes it (compact), with no tree in between.
fn json_to<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing to memory cannot fail.
    serde_json::to_writer(out, v).expect("JSON into memory");
}

impl DictionaryBuilder {
    pub fn new(app: &str, version: &str, build_versions: &str, license: &str) -> Self {
        let mut root = Section::default();
        for (k, v) in [
            ("app", app),
            ("version", version),
            ("build_versions", build_versions),
            ("license", license),
        ] {
            root.insert(k, |out| json_to(out, v));
        }
        DictionaryBuilder {
            root,
            ..Default::default()
        }
    }

    /// A constant under `config` (klippy's `get_constant`).
    pub fn constant(&mut self, name: &str, value: Json) -> &mut Self {
        self.config.insert(name, |out| json_to(out, &value));
        self
    }

    pub fn enumeration(&mut self, enum_name: &str, name: &str, value: EnumValue) -> &mut Self {
        let mut key = Vec::new();
        json_to(&mut key, enum_name);
        let i = match self.enums.iter().position(|e| e.0 == key) {
            Some(i) => i,
            None => {
                self.enums.push((key, Section::default()));
                self.enums.len() - 1
            }
        };
        let e = &mut self.enums[i].1;
        match value {
            EnumValue::Single(v) => e.insert(name, |out| json_to(out, &v)),
            EnumValue::Range(first, count) => e.insert(name, |out| json_to(out, &[first, count])),
        }
        self
    }

    /// A host-to-MCU command; `id` in dictionary form.
    pub fn command(&mut self, format: &str, id: i32) -> &mut Self {
        self.commands
            .insert(format, |out| json_to(out, &i64::from(id)));
        self
    }

    /// An MCU-to-host response; `id` in dictionary form.
    pub fn response(&mut self, format: &str, id: i32) -> &mut Self {
        self.responses
            .insert(format, |out| json_to(out, &i64::from(id)));
        self
    }

    /// The dictionary as JSON text.
    pub fn to_json(&self) -> String {
        let sections = [&self.root, &self.config, &self.commands, &self.responses];
        let len: usize = sections
            .iter()
            .map(|s| s.text.len() + 2 * s.entries.len())
            .sum::<usize>()
            + self
                .enums
                .iter()
                .map(|e| e.0.len() + e.1.text.len() + 2 * e.1.entries.len() + 3)
                .sum::<usize>()
            + 64;
        let mut out = Vec::with_capacity(len);
        // The root's own entries, without its closing brace.
        self.root.write(&mut out);
        out.pop();
        let sep = |out: &mut Vec<u8>, key: &str| {
            if out.len() > 1 {
                out.push(b',');
            }
            json_to(out, key);
            out.push(b':');
        };
        sep(&mut out, "config");
        self.config.write(&mut out);
        sep(&mut out, "enumerations");
        out.push(b'{');
        for (i, (name, e)) in self.enums.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(name);
            out.push(b':');
            e.write(&mut out);
        }
        out.push(b'}');
        sep(&mut out, "commands");
        self.commands.write(&mut out);
        sep(&mut out, "responses");
        self.responses.write(&mut out);
        out.push(b'}');
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    /// The dictionary as `identify` serves it: zlib-compressed JSON.
    pub fn compressed(&self) -> Vec<u8> {
        compress(self.to_json().as_bytes())
    }
}

/// zlib-compress `data` at the best level (it is done once, at start-up).
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("write to memory");
    enc.finish().expect("finish in memory")
}

/// One message known to a parsed dictionary.
#[derive(Debug, Clone)]
pub struct Message {
    /// Encoded id (0..16384).
    pub id: u16,
    pub format: MessageFormat,
}

/// A parsed dictionary, as a host uses it.
#[derive(Debug, Clone)]
pub struct Dictionary {
    pub json: Json,
    pub commands: HashMap<String, Message>,
    pub responses: HashMap<u16, Message>,
    pub constants: Map<String, Json>,
    pub enumerations: Map<String, Json>,
}

impl Dictionary {
    /// The bootstrap dictionary: only `identify` and `identify_response`.
    pub fn bootstrap() -> Dictionary {
        let mut j = Map::new();
        j.insert("commands".into(), json!({ IDENTIFY: 1 }));
        j.insert("responses".into(), json!({ IDENTIFY_RESPONSE: 0 }));
        Dictionary::from_value(Json::Object(j)).expect("bootstrap dictionary")
    }

    pub fn from_compressed(data: &[u8]) -> Result<Dictionary, ParseError> {
        let mut dec = flate2::read::ZlibDecoder::new(data);
        let mut text = String::new();
        dec.read_to_string(&mut text)
            .map_err(|_| ParseError::BadFormat)?;
        Dictionary::from_json(&text)
    }

    pub fn from_json(text: &str) -> Result<Dictionary, ParseError> {
        let v: Json = serde_json::from_str(text).map_err(|_| ParseError::BadFormat)?;
        Dictionary::from_value(v)
    }

    fn from_value(json: Json) -> Result<Dictionary, ParseError> {
        let table = |key: &str| -> Result<Vec<Message>, ParseError> {
            let mut out = Vec::new();
            if let Some(m) = json.get(key).and_then(Json::as_object) {
                for (fmt, id) in m {
                    let id = id.as_i64().ok_or(ParseError::BadFormat)? as i32;
                    let id = msgid_from_dictionary_value(id).ok_or(ParseError::BadFormat)?;
                    out.push(Message {
                        id,
                        format: MessageFormat::parse(fmt)?,
                    });
                }
            }
            Ok(out)
        };
        let commands = table("commands")?
            .into_iter()
            .map(|m| (m.format.name.clone(), m))
            .collect();
        let responses = table("responses")?.into_iter().map(|m| (m.id, m)).collect();
        let obj = |key: &str| {
            json.get(key)
                .and_then(Json::as_object)
                .cloned()
                .unwrap_or_default()
        };
        Ok(Dictionary {
            constants: obj("config"),
            enumerations: obj("enumerations"),
            commands,
            responses,
            json,
        })
    }

    /// A constant's value.
    pub fn constant(&self, name: &str) -> Option<&Json> {
        self.constants.get(name)
    }

    /// Resolve `name` of enumeration `enum_name` (ranges included).
    pub fn enum_value(&self, enum_name: &str, name: &str) -> Option<i64> {
        let e = self.enumerations.get(enum_name)?.as_object()?;
        if let Some(v) = e.get(name) {
            return match v {
                Json::Number(n) => n.as_i64(),
                Json::Array(a) => a.first()?.as_i64(),
                _ => None,
            };
        }
        // A range: split the trailing number off, find the range's base.
        let digits = name.len() - name.bytes().rev().take_while(u8::is_ascii_digit).count();
        let (prefix, num) = name.split_at(digits);
        let num: i64 = num.parse().ok()?;
        for (k, v) in e {
            let Json::Array(a) = v else { continue };
            let kd = k.len() - k.bytes().rev().take_while(u8::is_ascii_digit).count();
            let (kp, kn) = k.split_at(kd);
            // A range key without a number starts at 0, as klippy reads it.
            let kn: i64 = kn.parse().unwrap_or(0);
            let (Some(first), Some(count)) = (
                a.first().and_then(Json::as_i64),
                a.get(1).and_then(Json::as_i64),
            ) else {
                continue;
            };
            if kp == prefix && num >= kn && num < kn + count {
                return Some(first + num - kn);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text serde_json writes for the same entries in `preserve_order`
    /// maps: what the builder wrote before it wrote the text itself.
    fn serde_json_text(
        root: &[(&str, &str)],
        config: &[(&str, Json)],
        enums: &[(&str, &str, EnumValue)],
        commands: &[(&str, i32)],
        responses: &[(&str, i32)],
    ) -> String {
        let mut j = Map::new();
        for (k, v) in root {
            j.insert((*k).into(), json!(v));
        }
        let mut c = Map::new();
        for (k, v) in config {
            c.insert((*k).into(), v.clone());
        }
        let mut e = Map::new();
        for (en, name, v) in enums {
            let m = e
                .entry(en.to_string())
                .or_insert_with(|| Json::Object(Map::new()));
            let v = match v {
                EnumValue::Single(v) => json!(v),
                EnumValue::Range(a, b) => json!([a, b]),
            };
            m.as_object_mut().unwrap().insert((*name).into(), v);
        }
        let table = |t: &[(&str, i32)]| {
            let mut m = Map::new();
            for (k, v) in t {
                m.insert((*k).into(), json!(v));
            }
            Json::Object(m)
        };
        j.insert("config".into(), Json::Object(c));
        j.insert("enumerations".into(), Json::Object(e));
        j.insert("commands".into(), table(commands));
        j.insert("responses".into(), table(responses));
        Json::Object(j).to_string()
    }

    #[test]
    fn text_is_serde_jsons() {
        let nasty = "q\"b\\s\u{1}\u{8}\u{c}\n\r\t\u{1f}\u{7f}é/<>";
        let root = [
            ("app", "Klipper"),
            ("version", nasty),
            ("build_versions", ""),
            ("license", "L"),
        ];
        let config = [
            ("CLOCK_FREQ", json!(50_000_000)),
            ("MCU", json!("linux")),
            ("NEG", json!(-7)),
            ("BIG", json!(u64::MAX)),
            ("F", json!(0.25)),
            ("T", json!(true)),
            ("N", Json::Null),
            ("A", json!([1, "x", {"k": [null]}])),
            ("MCU", json!("again")),
            (nasty, json!(nasty)),
        ];
        let enums = [
            ("pin", "gpio0", EnumValue::Range(0, 288)),
            ("static_string_id", "Timer too close", EnumValue::Single(2)),
            ("pin", "gpiochip1/gpio0", EnumValue::Range(288, 288)),
            ("pin", "gpio0", EnumValue::Single(-3)),
            (nasty, nasty, EnumValue::Range(-1, i64::MAX)),
            ("static_string_id", "x", EnumValue::Single(i64::MIN)),
        ];
        let commands = [
            (IDENTIFY, 1),
            ("get_clock", 200),
            (nasty, -5),
            ("get_clock", 3),
        ];
        let responses = [(IDENTIFY_RESPONSE, 0), ("clock clock=%u", -32)];
        let mut b = DictionaryBuilder::new(root[0].1, root[1].1, root[2].1, root[3].1);
        for (k, v) in &config {
            b.constant(k, v.clone());
        }
        for (e, n, v) in &enums {
            b.enumeration(e, n, *v);
        }
        for (k, v) in &commands {
            b.command(k, *v);
        }
        for (k, v) in &responses {
            b.response(k, *v);
        }
        assert_eq!(
            b.to_json(),
            serde_json_text(&root, &config, &enums, &commands, &responses)
        );
        let empty = DictionaryBuilder::new("a", "b", "c", "d");
        assert_eq!(
            empty.to_json(),
            serde_json_text(
                &[
                    ("app", "a"),
                    ("version", "b"),
                    ("build_versions", "c"),
                    ("license", "d")
                ],
                &[],
                &[],
                &[],
                &[]
            )
        );
    }

    #[test]
    fn builds_compresses_and_parses() {
        let mut b = DictionaryBuilder::new("Klipper", "v1", "gcc", "GPL");
        b.constant("CLOCK_FREQ", json!(50_000_000))
            .constant("MCU", json!("linux"))
            .enumeration("pin", "gpio0", EnumValue::Range(0, 288))
            .enumeration("pin", "gpiochip1/gpio0", EnumValue::Range(288, 288))
            .enumeration("static_string_id", "Timer too close", EnumValue::Single(2))
            .command(IDENTIFY, 1)
            .command("get_clock", 200)
            .response(IDENTIFY_RESPONSE, 0)
            .response("clock clock=%u", -32);
        let z = b.compressed();
        let d = Dictionary::from_compressed(&z).unwrap();
        assert_eq!(d.constant("MCU"), Some(&json!("linux")));
        assert_eq!(d.commands["get_clock"].id, 200);
        assert_eq!(d.responses[&96].format.name, "clock");
        assert_eq!(d.enum_value("pin", "gpio17"), Some(17));
        assert_eq!(d.enum_value("pin", "gpiochip1/gpio3"), Some(291));
        assert_eq!(d.enum_value("pin", "gpio288"), None);
        assert_eq!(d.enum_value("static_string_id", "Timer too close"), Some(2));
        // A range key without a number does not hide the ranges after it.
        let mut b2 = DictionaryBuilder::new("a", "b", "c", "d");
        b2.enumeration("pin", "foo", EnumValue::Range(10, 3))
            .enumeration("pin", "bar0", EnumValue::Range(20, 3));
        let d2 = Dictionary::from_json(&b2.to_json()).unwrap();
        assert_eq!(d2.enum_value("pin", "bar1"), Some(21));
        assert_eq!(d2.enum_value("pin", "foo1"), Some(11));
        let text = b.to_json();
        for key in [
            "version",
            "build_versions",
            "app",
            "license",
            "config",
            "enumerations",
            "commands",
            "responses",
        ] {
            assert!(text.contains(&format!("\"{key}\"")), "{key}");
        }
    }
}

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
#[derive(Debug, Clone, Default)]
pub struct DictionaryBuilder {
    root: Map<String, Json>,
    config: Map<String, Json>,
    enums: Map<String, Json>,
    commands: Map<String, Json>,
    responses: Map<String, Json>,
}

impl DictionaryBuilder {
    pub fn new(app: &str, version: &str, build_versions: &str, license: &str) -> Self {
        let mut root = Map::new();
        root.insert("app".into(), json!(app));
        root.insert("version".into(), json!(version));
        root.insert("build_versions".into(), json!(build_versions));
        root.insert("license".into(), json!(license));
        DictionaryBuilder {
            root,
            ..Default::default()
        }
    }

    /// A constant under `config` (klippy's `get_constant`).
    pub fn constant(&mut self, name: &str, value: Json) -> &mut Self {
        self.config.insert(name.into(), value);
        self
    }

    pub fn enumeration(&mut self, enum_name: &str, name: &str, value: EnumValue) -> &mut Self {
        let e = self
            .enums
            .entry(enum_name.to_string())
            .or_insert_with(|| Json::Object(Map::new()));
        let v = match value {
            EnumValue::Single(v) => json!(v),
            EnumValue::Range(first, count) => json!([first, count]),
        };
        e.as_object_mut().expect("object").insert(name.into(), v);
        self
    }

    /// A host-to-MCU command; `id` in dictionary form.
    pub fn command(&mut self, format: &str, id: i32) -> &mut Self {
        self.commands.insert(format.into(), json!(id));
        self
    }

    /// An MCU-to-host response; `id` in dictionary form.
    pub fn response(&mut self, format: &str, id: i32) -> &mut Self {
        self.responses.insert(format.into(), json!(id));
        self
    }

    /// The dictionary as JSON text.
    pub fn to_json(&self) -> String {
        let mut root = self.root.clone();
        root.insert("config".into(), Json::Object(self.config.clone()));
        root.insert("enumerations".into(), Json::Object(self.enums.clone()));
        root.insert("commands".into(), Json::Object(self.commands.clone()));
        root.insert("responses".into(), Json::Object(self.responses.clone()));
        Json::Object(root).to_string()
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

//! The data dictionary carries every message, constant and enumeration of
//! the reference list (tests/data/linux-mcu-messages.txt, a copy of the
//! project's shared reference), with the same names and parameter types.

use klipper_mcu::command::Registry;
use klipper_mcu::commands::{dialect_overrides, modules, Dialect};
use klipper_protocol::dictionary::Dictionary;
use klipper_protocol::format::MessageFormat;
use serde_json::Value;

const LIST: &str = include_str!("data/linux-mcu-messages.txt");

fn section(name: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in LIST.lines() {
        if line.starts_with('[') {
            inside = line.starts_with(name);
            continue;
        }
        // Skip blank lines, comments and the prose under a header.
        let prose = line.contains(['(', ')', ';']) || line.starts_with(char::is_uppercase);
        if inside && !line.trim().is_empty() && !line.starts_with('#') && !prose {
            out.push(line.trim());
        }
    }
    out
}

fn dictionary(d: Dialect) -> Dictionary {
    let reg = Registry::with_overrides(&modules(), &dialect_overrides(d));
    Dictionary::from_compressed(&reg.dictionary).expect("dictionary")
}

fn all_formats(d: &Dictionary) -> Vec<String> {
    d.commands
        .values()
        .chain(d.responses.values())
        .map(|m| m.format.format.clone())
        .collect()
}

#[test]
fn every_reference_message_is_in_the_dictionary() {
    let d = dictionary(Dialect::Klipper);
    let ours = all_formats(&d);
    let mut missing = Vec::new();
    for sec in [
        "[commands]",
        "[responses]",
        "[also needed for the Kalico host]",
    ] {
        for line in section(sec) {
            // The parameter list must match exactly, names and types.
            MessageFormat::parse(line).expect("reference format parses");
            if !ours.iter().any(|f| f == line) {
                missing.push(line);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "missing from the dictionary: {missing:#?}"
    );
    // Commands are commands and responses responses.
    for line in section("[commands]") {
        let name = line.split(' ').next().unwrap();
        assert!(d.commands.contains_key(name), "{name} is not a command");
    }
}

/// `got` (None: missing) is the JSON `value` the reference list gives
/// `what`.
fn assert_value(got: Option<&Value>, value: &str, what: &str) {
    let got = got.unwrap_or_else(|| panic!("no {what}"));
    let want: Value = serde_json::from_str(value).unwrap();
    assert_eq!(got, &want, "{what}");
}

#[test]
fn every_reference_constant_is_in_the_dictionary() {
    let d = dictionary(Dialect::Klipper);
    for line in section("[constants]") {
        let (name, value) = line.split_once(" = ").unwrap();
        let got = d.constant(name);
        assert_value(got, value, &format!("constant {name}"));
    }
}

#[test]
fn every_reference_enumeration_is_in_the_dictionary() {
    let d = dictionary(Dialect::Klipper);
    for line in section("[enumerations]") {
        // "enum name = value" or "enum name = [first, count]"; the sensor
        // error enumerations' names end in a colon ("ldc1612_error:").
        let (lhs, value) = line.split_once(" = ").unwrap();
        let (enum_name, name) = lhs.split_once(' ').unwrap();
        let e = d
            .enumerations
            .get(enum_name)
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("no enumeration {enum_name}"));
        assert_value(e.get(name), value, &format!("{enum_name} {name}"));
    }
}

#[test]
fn the_kalico_dialect_changes_only_what_it_must() {
    let k = all_formats(&dictionary(Dialect::Kalico));
    let u = all_formats(&dictionary(Dialect::Klipper));
    let only_upstream: Vec<&String> = u.iter().filter(|f| !k.contains(f)).collect();
    assert_eq!(only_upstream.len(), 3, "{only_upstream:#?}");
}

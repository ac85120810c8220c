//! Command families, one module each, as the reference keeps them.

/// Declares one command beside its handler, as the reference's
/// `DECL_COMMAND`: `crate::command!(NAME = "format" => handler)`, with
/// `; HF_IN_SHUTDOWN` for one that runs while shut down. The family lists
/// its commands by these names in its `MODULE`, in dictionary order.
#[macro_export]
macro_rules! command {
    ($name:ident = $fmt:expr => $h:expr $(; $flags:expr)?) => {
        const $name: $crate::command::Command<$crate::mcu::Mcu> =
            $crate::command::Command::new($fmt, 0 $(| $flags)?, $h);
    };
}

pub mod accel;
pub mod adc;
pub mod base;
pub mod buttons;
pub mod counter;
pub mod debug;
pub mod display;
pub mod ds18b20;
pub mod endstop;
pub mod gpio;
pub mod i2c;
pub mod pca9685;
pub mod probe;
pub mod pwm;
pub mod sensor_bulk;
pub mod spi;
pub mod stepper;
pub mod thermo;
pub mod trsync;

use crate::command::Module;
use crate::mcu::{Family, Registry};

/// Every command family of this build, in dictionary order: the one place
/// that lists them (a new family is a new file here plus one line below).
pub fn modules() -> Vec<&'static Family> {
    let mut m = vec![
        &crate::mcu::MODULE,
        &base::MODULE,
        &debug::MODULE,
        &gpio::MODULE,
        &stepper::MODULE,
        &endstop::MODULE,
        &trsync::MODULE,
        &buttons::MODULE,
        &counter::MODULE,
        &spi::MODULE,
        &i2c::MODULE,
        &pwm::MODULE,
        &adc::MODULE,
        &pca9685::MODULE,
        &ds18b20::MODULE,
        &PLATFORM,
        &BUSES,
        &SYSFS,
        &SENSOR_BULK,
    ];
    m.extend(accel::modules());
    m.extend(thermo::modules());
    m.extend(probe::modules());
    m.extend(display::modules());
    m
}

/// The registry of this build for a host dialect, for the life of the
/// process.
pub fn registry(d: Dialect) -> &'static Registry {
    Box::leak(Box::new(Registry::with_overrides(
        &modules(),
        &dialect_overrides(d),
    )))
}

/// Which host's message forms to serve where the two disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Upstream Klipper's (the reference's) forms.
    Klipper,
    /// Kalico 2026.10's: the older `query_analog_in`/`analog_in_state`
    /// and `config_ds18b20` with `ignore_limits`.
    Kalico,
}

/// The commands and responses that replace the reference's for a dialect.
/// A dictionary holds one form per message name, and klippy's encoder
/// refuses both a missing and an extra parameter, so one form cannot
/// serve both hosts for these messages.
pub fn dialect_overrides(d: Dialect) -> Vec<&'static Family> {
    match d {
        Dialect::Klipper => vec![],
        Dialect::Kalico => vec![&adc::KALICO, &ds18b20::KALICO],
    }
}

/// The pin names and the hardware layer's shutdown reasons (the layers
/// below the families declare plain lists; they are gathered here).
static PLATFORM: Family = Module {
    enumerations: crate::pins::ENUMERATIONS,
    static_strings: crate::hw::STATIC_STRINGS,
    ..Module::EMPTY
};
static BUSES: Family = Module {
    static_strings: crate::hw::bus::STATIC_STRINGS,
    ..Module::EMPTY
};
static SYSFS: Family = Module {
    static_strings: crate::hw::sysfs::STATIC_STRINGS,
    ..Module::EMPTY
};

/// The bulk-sensor responses, shared by several groups.
static SENSOR_BULK: Family = Module {
    responses: &[
        &sensor_bulk::SENSOR_BULK_DATA,
        &sensor_bulk::SENSOR_BULK_STATUS,
    ],
    ..Module::EMPTY
};

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
        let reg = Registry::new(&super::modules());
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
        let reg = Registry::new(&super::modules());
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
    use super::{dialect_overrides, modules, Dialect};
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

//! Pin names, numbered as the reference numbers them so that existing
//! `printer.cfg` files work unchanged: `gpioN` and `gpiochipK/gpioN` (288
//! lines a chip, chips 0-8), `analogN`, `pwmchipK/pwmN`.

use klipper_protocol::dictionary::EnumValue;

pub const GPIO_LINES_PER_CHIP: u32 = 288;
pub const GPIO_CHIPS: u32 = 9;
pub const ANALOG_BASE: u32 = 4096;
pub const ANALOG_COUNT: u32 = 8;
pub const PWM_BASE: u32 = 65536;
pub const PWM_PER_CHIP: u32 = 16;
pub const PWM_CHIPS: u32 = 8;

/// The pin number of a GPIO name (`gpioN`, `gpiochipK/gpioN`, or a plain
/// number).
pub fn parse_gpio(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let (chip, line) = match name.strip_prefix("gpiochip") {
        Some(rest) => {
            let (c, l) = rest.split_once("/gpio")?;
            (c.parse::<u32>().ok()?, l)
        }
        None => (0, name.strip_prefix("gpio")?),
    };
    let line: u32 = line.parse().ok()?;
    (chip < GPIO_CHIPS && line < GPIO_LINES_PER_CHIP).then_some(chip * GPIO_LINES_PER_CHIP + line)
}

const fn range(first: u32, count: u32) -> EnumValue {
    EnumValue::Range(first as i64, count as i64)
}

/// The `pin` entries: `gpio0` and `analog0`, then one a GPIO chip
/// (`gpiochipK/gpio0`) and one a PWM chip (`pwmchipK/pwm0`), each chip's
/// numbers after the previous one's. The chip numbers are spelled out
/// because the names must be string literals.
macro_rules! pin_enumerations {
    (gpiochips: $($g:literal)*; pwmchips: $($p:literal)*) => {
        &[
            ("pin", "gpio0", range(0, GPIO_LINES_PER_CHIP)),
            $((
                "pin",
                concat!("gpiochip", $g, "/gpio0"),
                range($g * GPIO_LINES_PER_CHIP, GPIO_LINES_PER_CHIP),
            ),)*
            ("pin", "analog0", range(ANALOG_BASE, ANALOG_COUNT)),
            $((
                "pin",
                concat!("pwmchip", $p, "/pwm0"),
                range(PWM_BASE + $p * PWM_PER_CHIP, PWM_PER_CHIP),
            ),)*
        ]
    };
}

/// The `pin` enumeration of the dictionary.
pub const ENUMERATIONS: &[(&str, &str, EnumValue)] = pin_enumerations!(
    gpiochips: 0 1 2 3 4 5 6 7 8;
    pwmchips: 0 1 2 3 4 5 6 7
);

// One entry a chip, as many chips as the constants say.
const _: () = assert!(ENUMERATIONS.len() == 2 + GPIO_CHIPS as usize + PWM_CHIPS as usize);

#[cfg(test)]
mod tests {
    #[test]
    fn gpio_names() {
        assert_eq!(super::parse_gpio("gpio17"), Some(17));
        assert_eq!(super::parse_gpio("gpiochip1/gpio3"), Some(291));
        assert_eq!(super::parse_gpio("gpio288"), None);
        assert_eq!(super::parse_gpio("gpiochip9/gpio0"), None);
        assert_eq!(super::parse_gpio("42"), Some(42));
    }

    #[test]
    fn numbering_matches_the_reference_list() {
        let reference = include_str!("../tests/data/linux-mcu-messages.txt");
        let ours: Vec<String> = super::ENUMERATIONS
            .iter()
            .map(|(e, n, v)| match v {
                super::EnumValue::Range(a, b) => format!("{e} {n} = [{a}, {b}]"),
                super::EnumValue::Single(a) => format!("{e} {n} = {a}"),
            })
            .collect();
        let pins: Vec<&str> = reference
            .lines()
            .filter(|l| l.starts_with("pin "))
            .collect();
        assert_eq!(pins.len(), 19);
        for line in pins {
            assert!(ours.iter().any(|o| o == line), "missing: {line}");
        }
    }
}

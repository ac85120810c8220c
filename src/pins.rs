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

const G: u32 = GPIO_LINES_PER_CHIP;

/// The `pin` enumeration of the dictionary.
pub const ENUMERATIONS: &[(&str, &str, EnumValue)] = &[
    ("pin", "gpio0", range(0, G)),
    ("pin", "gpiochip0/gpio0", range(0, G)),
    ("pin", "gpiochip1/gpio0", range(G, G)),
    ("pin", "gpiochip2/gpio0", range(2 * G, G)),
    ("pin", "gpiochip3/gpio0", range(3 * G, G)),
    ("pin", "gpiochip4/gpio0", range(4 * G, G)),
    ("pin", "gpiochip5/gpio0", range(5 * G, G)),
    ("pin", "gpiochip6/gpio0", range(6 * G, G)),
    ("pin", "gpiochip7/gpio0", range(7 * G, G)),
    ("pin", "gpiochip8/gpio0", range(8 * G, G)),
    ("pin", "analog0", range(ANALOG_BASE, ANALOG_COUNT)),
    ("pin", "pwmchip0/pwm0", range(PWM_BASE, PWM_PER_CHIP)),
    (
        "pin",
        "pwmchip1/pwm0",
        range(PWM_BASE + PWM_PER_CHIP, PWM_PER_CHIP),
    ),
    (
        "pin",
        "pwmchip2/pwm0",
        range(PWM_BASE + 2 * PWM_PER_CHIP, PWM_PER_CHIP),
    ),
    (
        "pin",
        "pwmchip3/pwm0",
        range(PWM_BASE + 3 * PWM_PER_CHIP, PWM_PER_CHIP),
    ),
    (
        "pin",
        "pwmchip4/pwm0",
        range(PWM_BASE + 4 * PWM_PER_CHIP, PWM_PER_CHIP),
    ),
    (
        "pin",
        "pwmchip5/pwm0",
        range(PWM_BASE + 5 * PWM_PER_CHIP, PWM_PER_CHIP),
    ),
    (
        "pin",
        "pwmchip6/pwm0",
        range(PWM_BASE + 6 * PWM_PER_CHIP, PWM_PER_CHIP),
    ),
    (
        "pin",
        "pwmchip7/pwm0",
        range(PWM_BASE + 7 * PWM_PER_CHIP, PWM_PER_CHIP),
    ),
];

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

//! Known bugs the fuzz harnesses (fuzz/fuzz_targets/dispatch.rs in
//! process, tests/fuzz_blackbox.rs over the pty) can steer around while
//! they stand, kept as switches (both fixed): queueing before
//! `finalize_config` (an empty move pool now overflows cleanly) and
//! software buses that waited as long as the host's `pulse_ticks` said
//! (now bounded by `clock::Spin`). One file, included by both, so that the
//! two harnesses steer alike.

pub const KNOWN_PREFINALIZE_QUEUE: bool = false;
pub const KNOWN_SW_BUS_DELAY: bool = false;
const QUEUE_CMDS: &[&str] = &[
    "queue_step",
    "queue_digital_out",
    "queue_pwm_out",
    "queue_pca9685_out",
];

/// `name` queues a move or output, avoided while KNOWN_PREFINALIZE_QUEUE
/// stands (the harnesses ask only when it may come before the config is
/// final).
pub fn steer_off_queue(name: &str) -> bool {
    KNOWN_PREFINALIZE_QUEUE && QUEUE_CMDS.contains(&name)
}

/// Parameter `i` of `name` is a software bus's pulse length, kept short
/// while KNOWN_SW_BUS_DELAY stands.
pub fn sw_bus_delay_param(name: &str, i: usize) -> bool {
    KNOWN_SW_BUS_DELAY
        && ((name == "spi_set_sw_bus" && i == 5) || (name == "i2c_set_sw_bus" && i == 3))
}

//! Per-command tests of the bus and sysfs families: SPI (hardware buses on
//! the simulated board's loopback, and software SPI on its GPIO lines),
//! I2C (the simulated board's register files, NACKing addresses and
//! HTU21D), PCA9685 over I2C, hardware PWM, ADC and DS18B20 on stand-in
//! sysfs trees (`--sysfs-root`), and the errors of missing device nodes
//! (`--dev-root`). Semantics are those of the reference (Klipper's
//! spicmds.c, spi_software.c, i2ccmds.c, pwmcmds.c, adccmds.c and
//! src/linux/). Each test starts its own MCU.

mod periph;
mod simboard;

use std::time::Duration;

use klipper_protocol::dictionary::Json;
use klipper_protocol::host::Response;
use periph::{first_line, hex, reconnect, write_in_place, Tree};
use simboard::{diff, ms, Board};

/// allocate_oids, the commands and finalize_config, expecting the MCU to
/// shut down on the way; returns the reason's text.
fn configure_expect_shutdown(b: &mut Board, oids: u32, cmds: &[String]) -> String {
    let mut all = vec![format!("allocate_oids count={oids}")];
    all.extend(cmds.iter().cloned());
    all.push("finalize_config crc=1234".to_string());
    b.send_all(&all);
    b.wait_shutdown().1
}

/// Each (oids, commands, reason): a fresh simulated board configured with
/// the commands shuts down for that reason.
fn assert_config_shutdowns(cases: &[(u32, &[&str], &str)]) {
    for &(oids, cmds, reason) in cases {
        let mut b = Board::sim();
        let cmds: Vec<String> = cmds.iter().map(|c| c.to_string()).collect();
        assert_eq!(configure_expect_shutdown(&mut b, oids, &cmds), reason);
    }
}

/// Configure I2C oid 0 on `bus` at `rate` for the device at `address`.
fn i2c_on(b: &mut Board, bus: u32, rate: u32, address: u8) {
    b.configure(
        1,
        &[
            "config_i2c oid=0".into(),
            format!("i2c_set_bus oid=0 i2c_bus={bus} rate={rate} address={address}"),
        ],
    );
}

/// `i2c_transfer` on oid 0: write the hex bytes `write`, read `read_len`.
fn i2c_transfer(b: &mut Board, write: &str, read_len: u32) -> Response {
    b.request(
        &format!("i2c_transfer oid=0 write={write} read_len={read_len}"),
        "i2c_response",
    )
}

/// A simulated board with I2C oid 0 (see [`i2c_on`]).
fn i2c_board(bus: u32, rate: u32, address: u8) -> Board {
    let mut b = Board::sim();
    i2c_on(&mut b, bus, rate, address);
    b
}

/// The MCU's stderr names `path`.
fn assert_names(stderr: &str, path: &std::path::Path) {
    assert!(
        stderr.contains(&path.display().to_string()),
        "stderr should name {}:\n{stderr}",
        path.display()
    );
}

/// A board on a stand-in sysfs tree (no `--sim`).
fn sysfs_board(tree: &Tree) -> Board {
    let mut b = Board::spawn(&["--sysfs-root", tree.arg()], &[]);
    b.connect();
    b
}

/// Wait (reading messages) until the MCU's clock has passed `t`.
fn wait_mcu_clock(b: &mut Board, t: u32) {
    loop {
        let now = b.clock();
        if diff(now, t) > 0 {
            return;
        }
        let left_ms = (diff(t, now) / ms(1) as i64).clamp(1, 50) as u64;
        b.pump(Duration::from_millis(left_ms));
    }
}

fn constant(b: &Board, name: &str) -> i64 {
    b.dict()
        .constant(name)
        .and_then(Json::as_i64)
        .unwrap_or_else(|| panic!("no constant {name} in the dictionary"))
}

// ---------------------------------------------------------------------------
// SPI on the simulated board

#[test]
fn spi_transfer_is_a_loopback_with_cs_around_it() {
    let mut b = Board::sim();
    b.configure(
        3,
        &[
            // Active-low chip select on gpio25, active-high on gpio26.
            "config_spi oid=0 pin=gpio25 cs_active_high=0".into(),
            "spi_set_bus oid=0 spi_bus=1024 mode=0 rate=1000000".into(),
            "config_spi oid=1 pin=gpio26 cs_active_high=1".into(),
            "spi_set_bus oid=1 spi_bus=1280 mode=3 rate=4000000".into(),
            // spidev5.1, no chip select line.
            "config_spi_without_cs oid=2".into(),
            "spi_set_bus oid=2 spi_bus=1281 mode=1 rate=500000".into(),
        ],
    );
    // Chip selects idle at their inactive level, as outputs.
    b.assert_output(25, 1, "active-low CS idle");
    b.assert_output(26, 0, "active-high CS idle");

    let sent = [0xde, 0xad, 0xbe, 0xef, 0x00, 0x7f];
    let r = b.request(
        &format!("spi_transfer oid=0 data={}", hex(&sent)),
        "spi_transfer_response",
    );
    assert_eq!(r.int("oid"), 0);
    assert_eq!(r.bytes("response"), sent, "loopback reply");
    assert_eq!(b.ctl("spi 1024"), hex(&sent), "bytes seen on spidev4.0");
    // CS went active (low) for the transfer and back to idle (high).
    let h: Vec<u8> = b.history(25, 16).iter().map(|e| e.1).collect();
    assert_eq!(h, [1, 0, 1], "gpio25 writes: config, transfer start, end");

    // spi_send: no response, the bytes still go out, CS pulses.
    b.send("spi_send oid=1 data=0102a0");
    b.clock();
    assert_eq!(b.ctl("spi 1280"), "0102a0");
    let h: Vec<u8> = b.history(26, 16).iter().map(|e| e.1).collect();
    assert_eq!(h, [0, 1, 0], "gpio26 writes (active high)");
    b.settle(Duration::from_millis(100));
    assert!(
        b.take_all("spi_transfer_response").is_empty(),
        "spi_send must not answer"
    );

    // Without a chip select: the transfer alone, on spidev5.1.
    let r = b.request("spi_transfer oid=2 data=55aa", "spi_transfer_response");
    assert_eq!(r.int("oid"), 2);
    assert_eq!(r.bytes("response"), [0x55, 0xaa]);
    assert_eq!(b.ctl("spi 1281"), "55aa");
    // The other buses were not touched.
    assert_eq!(b.ctl("spi 1024"), hex(&sent));
    b.assert_not_shutdown();
}

#[test]
fn spi_set_bus_mode_above_3_is_invalid() {
    assert_config_shutdowns(&[(
        1,
        &[
            "config_spi_without_cs oid=0",
            "spi_set_bus oid=0 spi_bus=1024 mode=4 rate=1000000",
        ],
        "Invalid spi config",
    )]);
}

#[test]
fn spi_set_bus_twice_is_invalid() {
    assert_config_shutdowns(&[(
        1,
        &[
            "config_spi_without_cs oid=0",
            "spi_set_bus oid=0 spi_bus=1024 mode=0 rate=1000000",
            "spi_set_bus oid=0 spi_bus=1025 mode=0 rate=1000000",
        ],
        "Invalid spi config",
    )]);
}

#[test]
fn spi_shutdown_message_is_sent_on_emergency_stop() {
    let mut b = Board::sim();
    b.configure(
        2,
        &[
            "config_spi oid=0 pin=gpio24 cs_active_high=0".into(),
            "spi_set_bus oid=0 spi_bus=1024 mode=3 rate=5000000".into(),
            "config_spi_shutdown oid=1 spi_oid=0 shutdown_msg=2d08c0ffee".into(),
        ],
    );
    let r = b.request("spi_transfer oid=0 data=0a0b", "spi_transfer_response");
    assert_eq!(r.bytes("response"), [0x0a, 0x0b]);
    assert_eq!(b.ctl("spi 1024"), "0a0b");
    b.send("emergency_stop");
    let (_, why) = b.wait_shutdown();
    assert_eq!(why, "Command request");
    assert_eq!(
        b.ctl("spi 1024"),
        "2d08c0ffee",
        "the shutdown message went out"
    );
    // Its chip select was pulsed for it and is idle again.
    let h: Vec<u8> = b.history(24, 16).iter().map(|e| e.1).collect();
    assert_eq!(*h.last().unwrap(), 1, "CS idle after shutdown: {h:?}");
    assert!(h.len() >= 5, "CS pulsed for the shutdown message: {h:?}");
    assert_eq!(b.get(24).level, 1);
}

/// The bits MOSI carried at each rising SCLK edge (mode 0 samples there),
/// from the two lines' write histories.
fn mode0_bits(mosi: &[(u32, u8)], sclk: &[(u32, u8)]) -> Vec<u8> {
    let mut bits = Vec::new();
    let mut last = None;
    for &(c, v) in sclk {
        if last == Some(0) && v == 1 {
            let level = mosi
                .iter()
                .rfind(|m| diff(m.0, c) <= 0)
                .map(|m| m.1)
                .expect("MOSI written before the first clock edge");
            bits.push(level);
        }
        last = Some(v);
    }
    bits
}

fn byte_of(bits: &[u8]) -> u8 {
    bits.iter().fold(0, |acc, &b| (acc << 1) | b)
}

#[test]
fn software_spi_mode0_shifts_msb_first_on_gpio() {
    let mut b = Board::sim();
    let pulse = 500; // 10 us per bit
    b.configure(
        1,
        &[
            "config_spi oid=0 pin=gpio5 cs_active_high=0".into(),
            format!(
                "spi_set_sw_bus oid=0 miso_pin=gpio6 mosi_pin=gpio7 sclk_pin=gpio8 mode=0 \
                 pulse_ticks={pulse}"
            ),
        ],
    );
    let miso = b.get(6);
    assert_eq!(
        (miso.output, miso.bias.as_str()),
        (0, "pull-up"),
        "MISO is a pulled-up input: {miso:?}"
    );
    assert_eq!(b.get(8).level, 0, "mode 0: SCLK idles low");
    let mark = b.sim_clock();

    // MISO floats high (pull-up): every bit read is 1.
    let r = b.request("spi_transfer oid=0 data=a53c", "spi_transfer_response");
    assert_eq!(r.bytes("response"), [0xff, 0xff]);
    let after = |b: &mut Board, pin| -> Vec<(u32, u8)> {
        b.history(pin, 512)
            .into_iter()
            .filter(|e| diff(e.0, mark) > 0)
            .collect()
    };
    let mosi = after(&mut b, 7);
    let sclk = after(&mut b, 8);
    let bits = mode0_bits(&mosi, &sclk);
    assert_eq!(bits.len(), 16, "16 rising SCLK edges: {sclk:?}");
    assert_eq!(byte_of(&bits[..8]), 0xa5, "first byte, MSB first: {bits:?}");
    assert_eq!(byte_of(&bits[8..]), 0x3c, "second byte: {bits:?}");
    assert_eq!(sclk.last().unwrap().1, 0, "SCLK back low: {sclk:?}");
    // Bits are at least a pulse apart.
    let rises: Vec<u32> = sclk
        .windows(2)
        .filter(|w| w[0].1 == 0 && w[1].1 == 1)
        .map(|w| w[1].0)
        .collect();
    for w in rises.windows(2) {
        assert!(
            diff(w[1], w[0]) >= pulse as i64 * 9 / 10,
            "bit period {} ticks < pulse_ticks {pulse}: {rises:?}",
            diff(w[1], w[0])
        );
    }
    // Chip select: low before the first edge, high after the last one.
    let cs = after(&mut b, 5);
    assert_eq!(
        cs.iter().map(|e| e.1).collect::<Vec<_>>(),
        [0, 1],
        "CS {cs:?}"
    );
    // (SCLK is first written at its idle level, before CS, as in the
    // reference's spi_software_prepare.)
    assert!(
        diff(cs[0].0, rises[0]) <= 0,
        "CS active before the first SCLK edge"
    );
    assert!(
        diff(cs[1].0, sclk.last().unwrap().0) >= 0,
        "CS released after the last SCLK edge"
    );

    // MISO held low: every bit read is 0.
    b.set(6, 0);
    let r = b.request("spi_transfer oid=0 data=ff", "spi_transfer_response");
    assert_eq!(r.bytes("response"), [0x00]);
    b.assert_not_shutdown();
}

// ---------------------------------------------------------------------------
// I2C on the simulated board

#[test]
fn i2c_transfer_register_file_write_and_read() {
    let mut b = i2c_board(1, 100000, 0x50);
    // Write registers 0x10.. (the first byte sets the pointer).
    let r = i2c_transfer(&mut b, "10aabbcc", 0);
    assert_eq!((r.int("oid"), r.int("i2c_bus_status")), (0, 0), "{r:?}");
    assert!(r.bytes("response").is_empty());
    assert_eq!(b.ctl("i2c 1 50 16 3"), "aabbcc");
    // Read them back: write the register, then read.
    let r = i2c_transfer(&mut b, "10", 3);
    assert_eq!(r.int("i2c_bus_status"), 0);
    assert_eq!(r.bytes("response"), [0xaa, 0xbb, 0xcc]);
    let r = i2c_transfer(&mut b, "11", 2);
    assert_eq!(r.bytes("response"), [0xbb, 0xcc]);
    // A read without a register goes on from the pointer.
    let r = i2c_transfer(&mut b, "", 1);
    assert_eq!(r.bytes("response"), [0xbb]);
    b.assert_not_shutdown();
}

#[test]
fn i2c_transfer_nack_is_a_status_not_a_shutdown() {
    let mut b = i2c_board(1, 400000, 0x23);
    let nack = b
        .dict()
        .enum_value("i2c_bus_status", "NACK")
        .expect("i2c_bus_status NACK");
    assert_eq!(nack, 1);
    let r = i2c_transfer(&mut b, "0102", 0);
    assert_eq!(r.int("i2c_bus_status"), nack, "{r:?}");
    let r = i2c_transfer(&mut b, "01", 2);
    assert_eq!(r.int("i2c_bus_status"), nack, "{r:?}");
    let r = i2c_transfer(&mut b, "", 2);
    assert_ne!(r.int("i2c_bus_status"), 0, "{r:?}");
    b.assert_not_shutdown();
    let c = b.request("get_config", "config");
    assert_eq!(c.int("is_shutdown"), 0);
}

#[test]
fn old_i2c_write_and_read_on_a_register_file() {
    let mut b = i2c_board(0, 100000, 0x57);
    b.send("i2c_write oid=0 data=20010203");
    b.clock();
    assert_eq!(b.ctl("i2c 0 57 32 3"), "010203");
    let r = b.request("i2c_read oid=0 reg=21 read_len=2", "i2c_read_response");
    assert_eq!(r.int("oid"), 0);
    assert_eq!(r.bytes("response"), [0x02, 0x03]);
    b.assert_not_shutdown();
}

#[test]
fn old_i2c_write_nack_shuts_down() {
    let mut b = i2c_board(1, 100000, 0x30);
    b.send("i2c_write oid=0 data=0001");
    assert_eq!(b.wait_shutdown().1, "I2C NACK");
}

#[test]
fn old_i2c_read_nack_shuts_down() {
    let mut b = i2c_board(1, 100000, 0x30);
    b.send("i2c_read oid=0 reg= read_len=2");
    assert_eq!(b.wait_shutdown().1, "I2C START READ NACK");
    b.settle(Duration::from_millis(100));
    assert!(b.take_all("i2c_read_response").is_empty());
}

/// The HTU21D's CRC-8 as klippy's htu21d.py checks it.
fn htu21d_crc(mut data: u32) -> u8 {
    for _ in 0..16 {
        if data & 0x8000 != 0 {
            data = (data << 1) ^ 0x13100;
        } else {
            data <<= 1;
        }
    }
    (data >> 8) as u8
}

#[test]
fn i2c_htu21d_temperature_reading() {
    let mut b = Board::sim();
    assert_eq!(b.ctl("htu21d 27.5 40"), "ok");
    i2c_on(&mut b, 1, 100000, 0x40);
    // Trigger a temperature measurement (hold master), then read 3 bytes.
    let r = i2c_transfer(&mut b, "e3", 0);
    assert_eq!(r.int("i2c_bus_status"), 0);
    let r = i2c_transfer(&mut b, "", 3);
    assert_eq!(r.int("i2c_bus_status"), 0);
    let d = r.bytes("response").to_vec();
    assert_eq!(d.len(), 3);
    let raw = u16::from_be_bytes([d[0], d[1]]);
    let t = 0.002681 * raw as f64 - 46.85;
    assert!(
        (t - 27.5).abs() < 0.05,
        "temperature {t} from raw {raw:#06x}"
    );
    assert_eq!(d[2], htu21d_crc(raw as u32), "CRC of {raw:#06x}");

    // The older pair, as Kalico's htu21d.py uses it (no-hold command).
    assert_eq!(b.ctl("htu21d -5.25 40"), "ok");
    b.send("i2c_write oid=0 data=f3");
    let r = b.request("i2c_read oid=0 reg= read_len=3", "i2c_read_response");
    let d = r.bytes("response");
    let raw = u16::from_be_bytes([d[0], d[1]]);
    let t = 0.002681 * raw as f64 - 46.85;
    assert!(
        (t + 5.25).abs() < 0.05,
        "temperature {t} from raw {raw:#06x}"
    );
    b.assert_not_shutdown();
}

// ---------------------------------------------------------------------------
// PCA9685 on the simulated board (register file at i2c.0 0x40)

/// The prescaler the reference writes: DIV_ROUND_CLOSEST(25 MHz *
/// cycle_ticks, 4096 * 50 ticks/us) - 1, in 32-bit unsigned arithmetic,
/// clamped to 3..=255.
fn reference_prescale(cycle_ticks: u32) -> u8 {
    let d = 4096u32 * 50;
    let f = ((25 * cycle_ticks + d / 2) / d).wrapping_sub(1);
    f.clamp(3, 0xff) as u8
}

/// Queue `cmd` (queue_*_out, oid 0) for `value` at now + 200 ms and for
/// 0 at 100 ms after that; returns the first clock.
fn queue_then_zero(b: &mut Board, cmd: &str, value: u32) -> u32 {
    let t = b.clock().wrapping_add(ms(200));
    b.send(&format!("{cmd} oid=0 clock={t} value={value}"));
    b.send(&format!(
        "{cmd} oid=0 clock={} value=0",
        t.wrapping_add(ms(100))
    ));
    b.clock();
    t
}

/// The 4 channel registers (ON_L, ON_H, OFF_L, OFF_H) of `channel`.
fn pca_channel(b: &mut Board, channel: u32) -> String {
    b.ctl(&format!("i2c 0 40 {} 4", 6 + 4 * channel))
}

#[test]
fn pca9685_init_sequence_and_channel_updates() {
    let mut b = Board::sim();
    assert_eq!(constant(&b, "PCA9685_MAX"), 4096);
    let cycle = 250_000; // 5 ms: 200 Hz
    b.configure(
        2,
        &[
            format!(
                "config_pca9685 oid=0 bus=0 addr=64 channel=3 cycle_ticks={cycle} value=0 \
                 default_value=1000 max_duration=0"
            ),
            format!(
                "config_pca9685 oid=1 bus=0 addr=64 channel=5 cycle_ticks={cycle} value=4096 \
                 default_value=0 max_duration=0"
            ),
        ],
    );
    // MODE1: awake with auto-increment (0x21) after the sleep/prescale/wake
    // sequence; PRESCALE as the reference computes it.
    assert_eq!(b.ctl("i2c 0 40 0 1"), "21");
    assert_eq!(reference_prescale(cycle), 30);
    assert_eq!(
        b.ctl("i2c 0 40 254 1"),
        format!("{:02x}", reference_prescale(cycle))
    );
    // ALL_LED (channel 61, registers 250..253): full off.
    assert_eq!(b.ctl("i2c 0 40 250 4"), "00000010");
    // Channel 5 configured full on; channel 3 (value 0) untouched.
    // Full on: bit 4 of LEDn_ON_H.
    assert_eq!(pca_channel(&mut b, 5), "00100000");
    assert_eq!(pca_channel(&mut b, 3), "00000000");

    // queue_pca9685_out applies at its clock, not before.
    let t = queue_then_zero(&mut b, "queue_pca9685_out", 2048);
    assert_eq!(pca_channel(&mut b, 3), "00000000", "applied early");
    wait_mcu_clock(&mut b, t.wrapping_add(ms(20)));
    assert_eq!(
        pca_channel(&mut b, 3),
        "00000008",
        "value 2048 at its clock"
    );
    wait_mcu_clock(&mut b, t.wrapping_add(ms(120)));
    // Full off: bit 4 of LEDn_OFF_H.
    assert_eq!(pca_channel(&mut b, 3), "00000010", "value 0 = full off");

    // set_pca9685_out: any channel of the chip, at once.
    b.send(&format!(
        "set_pca9685_out bus=0 addr=64 channel=7 cycle_ticks={cycle} value=1"
    ));
    b.clock();
    assert_eq!(pca_channel(&mut b, 7), "00000100");
    b.assert_not_shutdown();

    // Shutdown: all channels off, then each output's default value.
    b.send("emergency_stop");
    b.wait_shutdown();
    assert_eq!(pca_channel(&mut b, 3), "0000e803", "default_value 1000");
}

#[test]
fn pca9685_prescale_follows_the_reference() {
    for cycle in [50_000u32, 125_000, 1_000_000] {
        let mut b = Board::sim();
        b.configure(
            1,
            &[format!(
                "config_pca9685 oid=0 bus=0 addr=65 channel=0 cycle_ticks={cycle} value=0 \
                 default_value=0 max_duration=0"
            )],
        );
        assert_eq!(
            b.ctl("i2c 0 41 254 1"),
            format!("{:02x}", reference_prescale(cycle)),
            "cycle_ticks {cycle}"
        );
    }
}

#[test]
fn pca9685_prescale_for_a_tiny_cycle_as_the_reference() {
    let mut b = Board::sim();
    b.configure(
        1,
        &[
            "config_pca9685 oid=0 bus=0 addr=66 channel=0 cycle_ticks=2000 value=0 \
           default_value=0 max_duration=0"
                .into(),
        ],
    );
    assert_eq!(b.ctl("i2c 0 42 254 1"), "ff");
}

#[test]
fn pca9685_mixed_cycle_and_missing_chip_shut_down() {
    assert_config_shutdowns(&[
        (
            2,
            &[
                "config_pca9685 oid=0 bus=0 addr=64 channel=0 cycle_ticks=250000 value=0 \
                 default_value=0 max_duration=0",
                "config_pca9685 oid=1 bus=0 addr=64 channel=1 cycle_ticks=50000 value=0 \
                 default_value=0 max_duration=0",
            ],
            "All PCA9685 channels must have the same cycle_ticks",
        ),
        (
            1,
            // Nothing answers at i2c.2 0x40.
            &[
                "config_pca9685 oid=0 bus=2 addr=64 channel=0 cycle_ticks=250000 value=0 \
               default_value=0 max_duration=0",
            ],
            "Unable to open and init PCA9685 device",
        ),
    ]);
}

// ---------------------------------------------------------------------------
// Hardware PWM on a stand-in sysfs tree

/// `config_pwm_out` oid 0 on `pin` (pwmchipK/pwmN).
fn pwm_out(pin: &str, cycle: u32, value: u32, default: u32, max_duration: u32) -> String {
    format!(
        "config_pwm_out oid=0 pin={pin} cycle_ticks={cycle} value={value} \
         default_value={default} max_duration={max_duration}"
    )
}

/// A board on `tree` configured with the one command `config`.
fn pwm_board(tree: &Tree, config: String) -> Board {
    let mut b = sysfs_board(tree);
    b.configure(1, &[config]);
    b
}

/// A channel folder's `period`, `duty_cycle` and `enable`.
fn pwm_files(ch: &std::path::Path) -> [String; 3] {
    ["period", "duty_cycle", "enable"].map(|f| first_line(&ch.join(f)))
}

/// On `tree`, configuring `pin` fails ("Unable to config pwm device").
fn pwm_config_fails(tree: &Tree, pin: &str) -> Board {
    let mut b = sysfs_board(tree);
    let why = configure_expect_shutdown(&mut b, 1, &[pwm_out(pin, 50000, 0, 0, 0)]);
    assert_eq!(why, "Unable to config pwm device");
    b
}

#[test]
fn hard_pwm_config_queue_and_zero() {
    let tree = Tree::new("pwm");
    let ch = tree.pwm_channel(0, 1);
    let mut b = sysfs_board(&tree);
    assert_eq!(constant(&b, "PWM_MAX"), 32768);
    assert_eq!(
        b.dict().enum_value("pin", "pwmchip0/pwm1"),
        Some(65536 + 1),
        "pin numbering"
    );
    assert_eq!(
        b.dict().enum_value("pin", "pwmchip2/pwm3"),
        Some(65536 + 32 + 3)
    );
    b.configure(1, &[pwm_out("pwmchip0/pwm1", 50000, 8192, 0, 0)]);
    // 50000 ticks of 20 ns: a 1 ms period; a quarter duty.
    assert_eq!(pwm_files(&ch), ["1000000", "250000", "1"]);

    let t = queue_then_zero(&mut b, "queue_pwm_out", 16384);
    assert_eq!(
        first_line(&ch.join("duty_cycle")),
        "250000",
        "applied early"
    );
    wait_mcu_clock(&mut b, t.wrapping_add(ms(20)));
    assert_eq!(first_line(&ch.join("duty_cycle")), "500000");
    assert_eq!(first_line(&ch.join("enable")), "1");
    wait_mcu_clock(&mut b, t.wrapping_add(ms(120)));
    assert_eq!(first_line(&ch.join("enable")), "0", "value 0 disables");

    // Full scale and back on.
    let t = b.clock().wrapping_add(ms(50));
    b.send(&format!("queue_pwm_out oid=0 clock={t} value=32768"));
    wait_mcu_clock(&mut b, t.wrapping_add(ms(20)));
    assert_eq!(first_line(&ch.join("duty_cycle")), "1000000");
    assert_eq!(first_line(&ch.join("enable")), "1");

    // set_pwm_out: at once, on another channel of the tree.
    let ch2 = tree.pwm_channel(1, 0);
    b.send("set_pwm_out pin=pwmchip1/pwm0 cycle_ticks=100000 value=24576");
    b.clock();
    assert_eq!(pwm_files(&ch2), ["2000000", "1500000", "1"]);
    b.assert_not_shutdown();
}

#[test]
fn hard_pwm_max_duration_expiry_shuts_down_to_default() {
    let tree = Tree::new("pwmd");
    let ch = tree.pwm_channel(0, 0);
    let mut b = pwm_board(&tree, pwm_out("pwmchip0/pwm0", 50000, 8192, 8192, ms(100)));
    assert_eq!(first_line(&ch.join("duty_cycle")), "250000");
    let t = b.clock().wrapping_add(ms(50));
    b.send(&format!("queue_pwm_out oid=0 clock={t} value=24576"));
    wait_mcu_clock(&mut b, t.wrapping_add(ms(20)));
    assert_eq!(first_line(&ch.join("duty_cycle")), "750000");
    // No update within max_duration: the safety timeout fires.
    let (clock, why) = b.wait_shutdown();
    assert_eq!(why, "Missed scheduling of next hard pwm event");
    assert!(
        diff(clock, t.wrapping_add(ms(100))) >= 0,
        "shutdown at {clock}, before max_duration after {t}"
    );
    // The shutdown put the default value back.
    assert_eq!(first_line(&ch.join("duty_cycle")), "250000");
    assert_eq!(first_line(&ch.join("enable")), "1");
}

#[test]
fn hard_pwm_shutdown_writes_default_zero() {
    let tree = Tree::new("pwmz");
    let ch = tree.pwm_channel(0, 2);
    let mut b = pwm_board(&tree, pwm_out("pwmchip0/pwm2", 25000, 32768, 0, 0));
    assert_eq!(pwm_files(&ch), ["500000", "500000", "1"]);
    b.send("emergency_stop");
    b.wait_shutdown();
    assert_eq!(first_line(&ch.join("enable")), "0");
}

#[test]
fn hard_pwm_missing_channel_shuts_down_naming_the_path() {
    let tree = Tree::new("pwmmiss");
    let b = pwm_config_fails(&tree, "pwmchip0/pwm0");
    let err = b.stderr();
    let path = tree.root().join("class/pwm/pwmchip0/pwm0/period");
    assert_names(&err, &path);
    assert!(
        err.contains("No such file") && err.contains("dtoverlay"),
        "stderr should give the errno and a fix:\n{err}"
    );
}

#[test]
fn hard_pwm_exports_a_missing_channel() {
    let tree = Tree::new("pwmexp");
    let export = tree.pwm_chip_export(0);
    // A stand-in tree cannot create the channel folder as the kernel
    // would, so the configuration still fails, after the export.
    let _b = pwm_config_fails(&tree, "pwmchip0/pwm2");
    assert_eq!(first_line(&export), "2", "channel number written to export");
}

#[test]
fn hard_pwm_existing_channel_is_not_exported_again() {
    let tree = Tree::new("pwmnoexp");
    let export = tree.pwm_chip_export(0);
    let ch = tree.pwm_channel(0, 4);
    let _b = pwm_board(&tree, pwm_out("pwmchip0/pwm4", 50000, 16384, 0, 0));
    assert_eq!(first_line(&ch.join("duty_cycle")), "500000");
    assert_eq!(std::fs::read_to_string(&export).unwrap(), "");
}

#[test]
fn hard_pwm_beaglebone_path() {
    let tree = Tree::new("pwmbb");
    let ch = tree.pwm_channel_bb(1, 3);
    let _b = pwm_board(&tree, pwm_out("pwmchip1/pwm3", 50000, 4096, 0, 0));
    assert_eq!(pwm_files(&ch), ["1000000", "125000", "1"]);
}

// ---------------------------------------------------------------------------
// ADC on a stand-in sysfs tree

/// `query_analog_in` for `oid` from clock `t`: `count` samples 1 ms apart
/// every `rest` ticks; `tail` gives bytes_per_report and the range check.
fn query_analog_in(b: &mut Board, oid: u32, t: u32, count: u32, rest: u32, tail: &str) {
    b.send(&format!(
        "query_analog_in oid={oid} clock={t} sample_ticks={} sample_count={count} \
         rest_ticks={rest} {tail}",
        ms(1)
    ));
}

/// On `tree`, configuring analog input `chan` fails ("Unable to open adc
/// device").
fn adc_open_fails(tree: &Tree, chan: u32) -> Board {
    let mut b = sysfs_board(tree);
    let cmd = format!("config_analog_in oid=0 pin=analog{chan}");
    let why = configure_expect_shutdown(&mut b, 1, &[cmd]);
    assert_eq!(why, "Unable to open adc device");
    b
}

fn values(r: &Response) -> Vec<u16> {
    r.bytes("values")
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

#[test]
fn adc_reports_sums_of_samples() {
    let tree = Tree::new("adc");
    tree.set_adc(0, 1234);
    tree.set_adc(3, 17);
    let mut b = sysfs_board(&tree);
    assert_eq!(constant(&b, "ADC_MAX"), 4095);
    assert_eq!(b.dict().enum_value("pin", "analog3"), Some(4096 + 3));
    b.configure(
        2,
        &[
            "config_analog_in oid=0 pin=analog0".into(),
            "config_analog_in oid=1 pin=analog3".into(),
        ],
    );
    let t = b.clock().wrapping_add(ms(50));
    let rest = ms(20);
    let full_range = "min_value=0 max_value=65535 range_check_count=0";
    query_analog_in(
        &mut b,
        0,
        t,
        4,
        rest,
        &format!("bytes_per_report=2 {full_range}"),
    );
    // Three samples a report.
    query_analog_in(
        &mut b,
        1,
        t,
        2,
        rest,
        &format!("bytes_per_report=6 {full_range}"),
    );
    let r = b.wait_msg_where("analog_in_state", |r| r.int("oid") == 0);
    assert_eq!(values(&r), [4 * 1234]);
    assert_eq!(r.int("next_clock") as u32, t.wrapping_add(rest));
    let r = b.wait_msg_where("analog_in_state", |r| r.int("oid") == 0);
    assert_eq!(values(&r), [4 * 1234]);
    assert_eq!(r.int("next_clock") as u32, t.wrapping_add(2 * rest));
    let r = b.wait_msg_where("analog_in_state", |r| r.int("oid") == 1);
    assert_eq!(values(&r), [34, 34, 34]);
    assert_eq!(r.int("next_clock") as u32, t.wrapping_add(3 * rest));

    // A new value in the file shows in the next reports (one report may
    // mix old and new samples).
    write_in_place(&tree.adc_path(0), b"4095\n");
    let r = b.wait_msg_where("analog_in_state", |r| {
        r.int("oid") == 0 && values(r) == [4 * 4095]
    });
    assert_eq!(r.bytes("values").len(), 2);
    b.assert_not_shutdown();

    // sample_count 0 stops the reports.
    b.send(
        "query_analog_in oid=0 clock=0 sample_ticks=0 sample_count=0 rest_ticks=0 \
            bytes_per_report=0 min_value=0 max_value=0 range_check_count=0",
    );
    b.clock();
    b.settle(Duration::from_millis(50));
    b.take_all("analog_in_state");
    b.settle(Duration::from_millis(200));
    let late = b.take_all("analog_in_state");
    assert!(
        late.iter().all(|r| r.int("oid") == 1),
        "oid 0 still reports: {late:?}"
    );
}

#[test]
fn adc_out_of_range_shuts_down_and_reports_go_on() {
    let tree = Tree::new("adcrange");
    tree.set_adc(1, 1234);
    let mut b = sysfs_board(&tree);
    b.configure(1, &["config_analog_in oid=0 pin=analog1".into()]);
    let t = b.clock().wrapping_add(ms(50));
    let tail = "bytes_per_report=2 min_value=100 max_value=2000 range_check_count=3";
    query_analog_in(&mut b, 0, t, 2, ms(25), tail);
    let (_, why) = b.wait_shutdown();
    assert_eq!(why, "ADC out of range");
    // range_check_count 3: two out-of-range reports, the third shuts down.
    let before = b.take_all("analog_in_state");
    assert_eq!(before.len(), 2, "reports before the shutdown: {before:?}");
    for r in &before {
        assert_eq!(values(r), [2468]);
    }
    // Sampling goes on while shut down, so the host still sees it.
    let r = b.wait_msg("analog_in_state");
    assert_eq!(values(&r), [2468]);
    let r = b.wait_msg("analog_in_state");
    assert_eq!(values(&r), [2468]);
}

#[test]
fn adc_missing_file_shuts_down_naming_the_path() {
    let tree = Tree::new("adcmiss");
    let b = adc_open_fails(&tree, 2);
    let err = b.stderr();
    let path = tree.adc_path(2);
    assert_names(&err, &path);
}

/// A device that appears after a failed configuration is picked up on the
/// next one (config_reset re-executes the MCU; no rebuild, no restart).
#[test]
fn adc_appearing_later_is_picked_up_after_config_reset() {
    let tree = Tree::new("adclate");
    let mut b = adc_open_fails(&tree, 0);

    tree.set_adc(0, 777);
    let old = std::fs::read_link(&b.link).expect("the pty link");
    b.send("emergency_stop");
    b.send("config_reset");
    reconnect(&mut b, &old);
    b.configure(1, &["config_analog_in oid=0 pin=analog0".into()]);
    let t = b.clock().wrapping_add(ms(50));
    let tail = "bytes_per_report=2 min_value=0 max_value=4095 range_check_count=1";
    query_analog_in(&mut b, 0, t, 1, ms(20), tail);
    let r = b.wait_msg("analog_in_state");
    assert_eq!(values(&r), [777]);
    b.assert_not_shutdown();
}

// ---------------------------------------------------------------------------
// DS18B20 on a stand-in sysfs tree

const SERIAL: &str = "28-0123456789ab";

fn ds18b20_config(serial: &[u8], max_error_count: u32) -> String {
    format!(
        "config_ds18b20 oid=0 serial={} max_error_count={max_error_count}",
        hex(serial)
    )
}

#[test]
fn ds18b20_reports_the_w1_slave_temperature() {
    let tree = Tree::new("ds");
    tree.set_w1(
        SERIAL,
        "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n",
    );
    let mut b = sysfs_board(&tree);
    b.configure(1, &[ds18b20_config(SERIAL.as_bytes(), 4)]);
    let rest = ms(200);
    let t = b.clock().wrapping_add(ms(50));
    b.send(&format!(
        "query_ds18b20 oid=0 clock={t} rest_ticks={rest} min_value=-55000 max_value=125000"
    ));
    // The first period only starts the read; the reading comes after it.
    let r = b.wait_msg("ds18b20_result");
    assert_eq!((r.int("value"), r.int("fault")), (23125, 0), "{r:?}");
    assert_eq!(r.int("next_clock") as u32, t.wrapping_add(2 * rest));

    // Later reads see a new value; negative ones too.
    write_in_place(
        &tree.w1_path(SERIAL),
        b"50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=-1250\n",
    );
    let r = b.wait_msg_where("ds18b20_result", |r| r.int("value") != 23125);
    assert_eq!((r.int("value"), r.int("fault")), (-1250, 0), "{r:?}");
    b.assert_not_shutdown();
}

/// A DS18B20 whose w1_slave holds `w1` (`max_error_count` as given),
/// queried every 150 ms with `range` (min_value, max_value): it shuts
/// down for `reason`. Returns the tree (kept while the board runs) and the
/// board.
fn ds18b20_shuts_down(
    tag: &str,
    w1: &str,
    max_error_count: u32,
    range: (i32, i32),
    reason: &str,
) -> (Tree, Board) {
    let tree = Tree::new(tag);
    tree.set_w1(SERIAL, w1);
    let mut b = sysfs_board(&tree);
    b.configure(1, &[ds18b20_config(SERIAL.as_bytes(), max_error_count)]);
    let t = b.clock().wrapping_add(ms(50));
    b.send(&format!(
        "query_ds18b20 oid=0 clock={t} rest_ticks={} min_value={} max_value={}",
        ms(150),
        range.0,
        range.1
    ));
    let (_, why) = b.wait_shutdown();
    assert_eq!(why, reason);
    (tree, b)
}

#[test]
fn ds18b20_bad_reads_count_faults_then_shut_down() {
    let (_tree, mut b) = ds18b20_shuts_down(
        "dsbad",
        "00 00 00 00 00 00 00 00 00 : crc=00 NO\n",
        2,
        (-55000, 125000),
        "Error reading DS18B20 sensor",
    );
    let faults = b.take_ints("ds18b20_result", "fault");
    assert_eq!(faults, [1, 2], "fault counts reported before the shutdown");
}

#[test]
fn ds18b20_out_of_range_shuts_down() {
    let (_tree, mut b) = ds18b20_shuts_down(
        "dsrange",
        "t=90000\n",
        4,
        (0, 60000),
        "DS18B20 out of range",
    );
    // The reading is reported before the shutdown, as in the reference.
    let r = b.take_all("ds18b20_result");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].int("value"), 90000);
}

#[test]
fn ds18b20_serial_with_slash_or_missing_device() {
    let tree = Tree::new("dsserial");
    let mut b = sysfs_board(&tree);
    let why = configure_expect_shutdown(&mut b, 1, &[ds18b20_config(b"28-01/../../etc", 4)]);
    assert_eq!(why, "Invalid DS18B20 serial id, must not contain '/'");

    let mut b = sysfs_board(&tree);
    let why = configure_expect_shutdown(&mut b, 1, &[ds18b20_config(SERIAL.as_bytes(), 4)]);
    assert_eq!(why, "Invalid DS18B20 serial id, could not open for reading");
    assert_names(&b.stderr(), &tree.w1_path(SERIAL));
}

// ---------------------------------------------------------------------------
// Missing device nodes (--dev-root, real Linux backends)

fn dev_root_board(dir: &Tree) -> Board {
    let mut b = Board::spawn(&["--dev-root", dir.arg()], &[]);
    b.connect();
    b
}

/// On an empty --dev-root, configuring `cmds` shuts the MCU down for
/// `reason`, its stderr naming the missing `node` with the errno and the
/// fix.
fn missing_node_shuts_down(tag: &str, cmds: &[&str], reason: &str, node: &str) {
    let dev = Tree::new(tag);
    let mut b = dev_root_board(&dev);
    let cmds: Vec<String> = cmds.iter().map(|c| c.to_string()).collect();
    let why = configure_expect_shutdown(&mut b, 1, &cmds);
    assert_eq!(why, reason);
    let err = b.stderr();
    assert_names(&err, &dev.root().join(node));
    assert!(
        err.contains("No such file") && err.contains("--device"),
        "stderr should give the errno and the fix:\n{err}"
    );
}

#[test]
fn missing_spidev_node_shuts_down_naming_it() {
    missing_node_shuts_down(
        "devspi",
        &[
            "config_spi_without_cs oid=0",
            "spi_set_bus oid=0 spi_bus=0 mode=0 rate=1000000",
        ],
        "Unable to open spi device",
        "spidev0.0",
    );
}

#[test]
fn missing_i2c_node_shuts_down_naming_it() {
    missing_node_shuts_down(
        "devi2c",
        &[
            "config_i2c oid=0",
            "i2c_set_bus oid=0 i2c_bus=1 rate=100000 address=64",
        ],
        "Unable to open i2c device",
        "i2c-1",
    );
}

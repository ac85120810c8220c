//! Inputs the fuzzers (fuzz/, tests/fuzz_slice.rs, tests/fuzz_blackbox.rs)
//! found to break the MCU, replayed in-process on the simulated board,
//! each with the behaviour it must have now. (This replaces a fixed-seed
//! random dispatch test: the coverage-guided `dispatch` target covers that
//! ground, software buses and `config_reset` included.)

use std::ffi::CString;

use klipper_mcu::commands::{registry, Dialect};
use klipper_mcu::hw::Board;
use klipper_mcu::mcu::Mcu;
use klipper_protocol::block::{check_frame, frame_vec, MESSAGE_DEST};
use klipper_protocol::dictionary::Dictionary;
use klipper_protocol::host::{HostCodec, Response};

struct Host {
    mcu: Mcu,
    codec: HostCodec,
    seq: u8,
}

impl Host {
    fn new(dialect: Dialect) -> Host {
        let registry = registry(dialect);
        let mut codec = HostCodec::new();
        codec.dict = Dictionary::from_compressed(&registry.dictionary).unwrap();
        let dir = std::env::temp_dir();
        let (board, _) = Board::sim(dir.clone(), dir);
        let mut mcu = Mcu::new(registry, vec![CString::new("klipper_mcu").unwrap()], board);
        mcu.reexec = |_| panic!("config_reset re-executes");
        Host { mcu, codec, seq: 0 }
    }

    /// Send commands written as text in one block; return the messages.
    fn send(&mut self, cmds: &[&str]) -> Vec<Response> {
        let mut payload = Vec::new();
        for c in cmds {
            payload.extend(self.codec.encode_text(c).unwrap());
        }
        let block = frame_vec(MESSAGE_DEST | (self.seq & 0x0f), &payload);
        self.seq = self.seq.wrapping_add(1);
        self.mcu.dispatch_block(&block);
        self.mcu.run_tasks();
        let out = self.mcu.out.pending().to_vec();
        self.mcu.out.consume(out.len());
        let mut msgs = Vec::new();
        let mut pos = 0;
        while pos < out.len() {
            let len = check_frame(&out[pos..]).unwrap().unwrap();
            msgs.extend(self.codec.decode(&out[pos + 2..pos + len - 3]).unwrap());
            pos += len;
        }
        assert_eq!(self.mcu.out.dropped, 0, "a message was dropped");
        msgs
    }
}

/// `identify` with a count past what a message holds (found by the
/// `dispatch` target): the response was dropped as unencodable, so the
/// host never got one. Now it carries what fits.
#[test]
fn identify_with_a_huge_count_answers_with_what_fits() {
    let mut h = Host::new(Dialect::Klipper);
    let dict_len = h.mcu.registry.dictionary.len();
    for (offset, count) in [(0, 255), (0, 59), (100_000, 255), (dict_len - 3, 255)] {
        let r = h.send(&[&format!("identify offset={offset} count={count}")]);
        assert_eq!(r.len(), 1, "{offset} {count}: {r:?}");
        assert_eq!(r[0].name, "identify_response");
        let data = r[0].bytes("data");
        assert_eq!(r[0].int("offset"), offset as i64);
        let want = dict_len.saturating_sub(offset).min(count);
        assert!(
            data.len() <= want && !data.is_empty() || want == 0,
            "{offset} {count}"
        );
        assert_eq!(
            data,
            &h.mcu.registry.dictionary[offset.min(dict_len)..][..data.len()]
        );
    }
}

/// `config_neopixel` with a `data_size` (a %hu) whose raw 32 bits were
/// huge: the MCU allocated that many bytes (3.5 GB; found by the
/// `dispatch` target in the CI slice as an out-of-memory). Now the value
/// is read as 16 bits, as the reference reads it.
#[test]
fn neopixel_data_size_is_sixteen_bits() {
    let mut h = Host::new(Dialect::Klipper);
    let big = 0xd139_0004u32;
    let r = h.send(&[
        "allocate_oids count=4",
        &format!(
            "config_neopixel oid=0 pin=3 data_size={big} bit_max_ticks=100 reset_min_ticks=100"
        ),
        "get_config",
    ]);
    assert!(!h.mcu.is_shutdown(), "{r:?}");
    // Four bytes of data, as 0x0004 says: a fifth is out of range.
    let r = h.send(&["neopixel_update oid=0 pos=0 data=01020304", "get_config"]);
    assert!(!h.mcu.is_shutdown(), "{r:?}");
    h.send(&["neopixel_update oid=0 pos=0 data=0102030405"]);
    assert!(h.mcu.is_shutdown());
}

/// Queueing commands before `finalize_config` (the move pool is not
/// allocated yet) indexed an empty pool and aborted the process (found by
/// the `dispatch` target at once; steered around until now). Now they
/// shut down with "Move queue overflow", as the reference does, and the
/// MCU goes on answering.
#[test]
fn queueing_before_finalize_shuts_down() {
    for cmds in [
        &[
            "config_digital_out oid=0 pin=3 value=0 default_value=0 max_duration=0",
            "queue_digital_out oid=0 clock=1000000 on_ticks=1000",
        ][..],
        &[
            "config_stepper oid=0 step_pin=3 dir_pin=4 invert_step=0 step_pulse_ticks=100",
            "queue_step oid=0 interval=2000 count=20 add=0",
        ][..],
    ] {
        let mut h = Host::new(Dialect::Klipper);
        h.send(&["allocate_oids count=2", cmds[0]]);
        assert!(!h.mcu.is_shutdown(), "{}", cmds[0]);
        let r = h.send(&[cmds[1]]);
        assert!(h.mcu.is_shutdown(), "{}: {r:?}", cmds[1]);
        let id = r
            .iter()
            .find(|m| m.name == "shutdown")
            .unwrap()
            .int("static_string_id");
        assert_eq!(
            h.mcu.registry.static_strings[id as usize - 2],
            "Move queue overflow"
        );
        let r = h.send(&["get_clock"]);
        assert_eq!(r[0].name, "clock");
    }
}

/// Bit times the host gives (software SPI and I2C `pulse_ticks`, the
/// LCDs' delays, the neopixel reset time) were waited for in full: one
/// `spi_send` with `pulse_ticks=25000000` held the loop 4.5 s, and the
/// largest values minutes per byte (the fuzz harnesses steered around it).
/// Now a transfer's waits share a 10 ms allowance (`clock::Spin`).
#[test]
fn host_given_bit_times_cannot_stall_the_loop() {
    let data = "0102030405060708";
    let cases: &[(&str, &[&str])] = &[
        (
            "software SPI",
            &[
                "config_spi_without_cs oid=0",
                "spi_set_sw_bus oid=0 miso_pin=10 mosi_pin=11 sclk_pin=12 mode=0 pulse_ticks=25000000",
            ],
        ),
        (
            "software SPI, largest",
            &[
                "config_spi_without_cs oid=0",
                "spi_set_sw_bus oid=0 miso_pin=10 mosi_pin=11 sclk_pin=12 mode=1 pulse_ticks=4294967295",
            ],
        ),
        (
            "software I2C",
            &[
                "config_i2c oid=0",
                "i2c_set_sw_bus oid=0 scl_pin=13 sda_pin=14 pulse_ticks=2000000000 address=80",
            ],
        ),
        (
            "HD44780",
            &["config_hd44780 oid=0 rs_pin=20 e_pin=21 d4_pin=22 d5_pin=23 d6_pin=24 d7_pin=25 delay_ticks=2000000000"],
        ),
        (
            "ST7920",
            &["config_st7920 oid=0 cs_pin=20 sclk_pin=21 sid_pin=22 sync_delay_ticks=2000000000 cmd_delay_ticks=2000000000"],
        ),
        (
            "neopixel",
            &["config_neopixel oid=0 pin=20 data_size=3 bit_max_ticks=4294967295 reset_min_ticks=2000000000"],
        ),
    ];
    let sends = [
        format!("spi_send oid=0 data={data}"),
        format!("i2c_write oid=0 data={data}"),
        format!("hd44780_send_data oid=0 data={data}"),
        format!("st7920_send_data oid=0 data={data}"),
        "neopixel_send oid=0".to_string(),
    ];
    for (what, config) in cases {
        let mut h = Host::new(Dialect::Klipper);
        let mut cmds = vec!["allocate_oids count=2"];
        cmds.extend_from_slice(config);
        h.send(&cmds);
        assert!(!h.mcu.is_shutdown(), "{what}");
        // config_spi_without_cs -> spi_send, config_i2c -> i2c_write, ...
        let family = config[0].split(['_', ' ']).nth(1).unwrap();
        let send = sends.iter().find(|s| s.starts_with(family)).unwrap();
        for _ in 0..3 {
            let t0 = h.mcu.clock.now64();
            h.send(&[send]);
            let took = h.mcu.clock.now64() - t0;
            // Unbounded, each of these waits 8 s to many minutes. Bounded,
            // 10 ms of waiting plus the work (a loose bound: the machine
            // may be busy).
            assert!(took < 50_000_000, "{what}: {send} took {took} ticks");
        }
        let r = h.send(&["get_clock"]);
        assert_eq!(r[0].name, "clock", "{what}");
    }
}

//! Thermocouple amplifiers and SPI angle sensors against the simulated
//! chips of `--sim` (see `src/hw/sim_chips/thermo.rs` for the buses):
//! `thermocouple_result` framing and values, fault reporting, the range
//! shutdown ("Thermocouple reader fault") after `max_invalid_count` bad
//! readings in a row, and angle streaming through `sensor_bulk_data` and
//! `spi_angle_transfer`.

mod simboard;

use std::time::Duration;

use simboard::*;

const MAX31855_BUS: u32 = 256;
const MAX31856_BUS: u32 = 257;
const MAX31865_BUS: u32 = 258;
const MAX6675_BUS: u32 = 259;

/// A board with one thermocouple reader (oid 1) on SPI device oid 0.
fn thermo_board(bus: u32, chip: u32, mode: u32, init: Option<&str>) -> Board {
    let mut b = Board::sim_realtime();
    let mut cmds = vec![
        "config_spi_without_cs oid=0".to_string(),
        format!("spi_set_bus oid=0 spi_bus={bus} mode={mode} rate=4000000"),
    ];
    if let Some(data) = init {
        cmds.push(format!("spi_send oid=0 data={data}"));
    }
    cmds.push(format!(
        "config_thermocouple oid=1 spi_oid=0 thermocouple_type={chip}"
    ));
    b.configure(2, &cmds);
    b
}

/// Start sampling every `rest` ticks; returns the first sample time.
fn start_query(b: &mut Board, rest: u32, min: u32, max: u32, max_invalid: u32) -> u32 {
    let start = b.clock().wrapping_add(ms(30));
    b.send(&format!(
        "query_thermocouple oid=1 clock={start} rest_ticks={rest} min_value={min} \
         max_value={max} max_invalid_count={max_invalid}"
    ));
    start
}

fn result(b: &mut Board) -> (u32, u32, u32) {
    let r = b.wait_msg("thermocouple_result");
    assert_eq!(r.int("oid"), 1);
    (
        r.int("next_clock") as u32,
        r.int("value") as u32,
        r.int("fault") as u32,
    )
}

fn chip(b: &mut Board, req: &str) {
    let r = b.ctl(&format!("chip {req}"));
    assert_eq!(r, "ok", "chip {req}");
}

/// Wait for a result whose value satisfies `pred` (the chip's new setting
/// applies from the next reading).
fn result_where(b: &mut Board, pred: impl Fn(u32, u32) -> bool) -> (u32, u32, u32) {
    for _ in 0..20 {
        let r = result(b);
        if pred(r.1, r.2) {
            return r;
        }
    }
    b.fail("no matching thermocouple_result in 20 readings")
}

/// The thermocouple temperature of a MAX31855 word: 14-bit two's
/// complement, 0.25 C units (the datasheet's encoding; klippy's own sign
/// fix-up is off for negative values, which printers never read).
fn max31855_c(v: u32) -> f64 {
    ((v as i32) >> 18) as f64 * 0.25
}

#[test]
fn dictionary_has_the_group() {
    let b = Board::sim_realtime();
    let d = b.dict();
    for c in [
        "config_thermocouple",
        "query_thermocouple",
        "config_spi_angle",
        "query_spi_angle",
        "spi_angle_transfer",
    ] {
        assert!(d.commands.contains_key(c), "{c} missing");
    }
    let e = |n: &str, k: &str| b.enumeration(n, k);
    assert_eq!(e("thermocouple_type", "MAX31855"), Some(0));
    assert_eq!(e("thermocouple_type", "MAX6675"), Some(3));
    assert_eq!(e("spi_angle_type", "a1333"), Some(0));
    assert_eq!(e("spi_angle_type", "mt6826s"), Some(4));
    let names: Vec<&str> = d
        .responses
        .values()
        .map(|r| r.format.name.as_str())
        .collect();
    for r in ["thermocouple_result", "spi_angle_transfer_response"] {
        assert!(names.contains(&r), "{r} missing");
    }
}

#[test]
fn max31855_reports_its_temperature_on_schedule() {
    let mut b = thermo_board(MAX31855_BUS, 0, 0, None);
    chip(&mut b, "max31855 temp 215.5");
    let rest = ms(20);
    // Any value is in range here (a negative one is above 0x1fff << 18).
    let start = start_query(&mut b, rest, 0, u32::MAX, 3);
    let mut prev = None;
    for k in 0..5u32 {
        let (next, value, fault) = result(&mut b);
        assert_eq!(fault, 0);
        // next_clock: the next sample time, exactly rest_ticks apart.
        assert_eq!(next, start.wrapping_add(rest * (k + 1)), "reading {k}");
        assert_eq!(max31855_c(value), 215.5);
        // Cold junction 25 C in bits 4-15, no fault bits.
        assert_eq!((value >> 4) & 0xfff, 400);
        assert_eq!(value & 0x1_0007, 0);
        if let Some(p) = prev {
            assert_eq!(next.wrapping_sub(p), rest);
        }
        prev = Some(next);
    }
    chip(&mut b, "max31855 temp -12.25");
    let (_, v, _) = result_where(&mut b, |v, _| max31855_c(v) != 215.5);
    assert_eq!(max31855_c(v), -12.25);
    b.send(
        "query_thermocouple oid=1 clock=0 rest_ticks=0 min_value=0 max_value=0 max_invalid_count=0",
    );
    b.settle(Duration::from_millis(100));
    b.take_all("thermocouple_result");
    b.settle(Duration::from_millis(100));
    assert!(
        b.take_all("thermocouple_result").is_empty(),
        "still reporting after rest_ticks=0"
    );
}

#[test]
fn max31855_fault_shuts_down_after_max_invalid_count() {
    let mut b = thermo_board(MAX31855_BUS, 0, 0, None);
    chip(&mut b, "max31855 temp 100");
    start_query(&mut b, ms(100), 0, 0x1fff << 18, 3);
    result_where(&mut b, |_, f| f == 0);
    // One bad reading, then good again: the count starts over.
    chip(&mut b, "max31855 fault 1");
    let (_, v, f) = result_where(&mut b, |_, f| f != 0);
    assert_eq!(f, 1, "open circuit");
    assert_eq!(v & 0x1_0007, 0x1_0001, "fault bit 16 and OC bit");
    chip(&mut b, "max31855 fault 0");
    result_where(&mut b, |_, f| f == 0);
    for _ in 0..3 {
        assert_eq!(result(&mut b).2, 0);
    }
    b.assert_not_shutdown();
    // Short to VCC: three faulty readings in a row, then the shutdown.
    chip(&mut b, "max31855 fault 4");
    let (_, reason) = b.wait_shutdown();
    assert_eq!(reason, "Thermocouple reader fault");
    let mut faults = b.take_ints("thermocouple_result", "fault");
    faults.retain(|&f| f != 0);
    assert_eq!(faults, vec![4, 4, 4], "faulty results before the shutdown");
    b.settle(Duration::from_millis(300));
    assert!(b.take_all("thermocouple_result").is_empty());
}

#[test]
fn out_of_range_temperature_shuts_down() {
    let mut b = thermo_board(MAX31855_BUS, 0, 0, None);
    chip(&mut b, "max31855 temp 300");
    // Allowed: 0-250 C; one bad reading is enough.
    start_query(&mut b, ms(20), 0, 1000 << 18, 1);
    let (_, reason) = b.wait_shutdown();
    assert_eq!(reason, "Thermocouple reader fault");
    let rs = b.take_all("thermocouple_result");
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].int("fault"), 0);
    assert_eq!(max31855_c(rs[0].int("value") as u32), 300.0);
}

#[test]
fn invalid_chip_type_shuts_down() {
    for (spi, config, reason) in [
        (
            "config_spi_without_cs oid=0",
            "config_thermocouple oid=1 spi_oid=0 thermocouple_type=4",
            "Invalid thermocouple chip type",
        ),
        (
            "config_spi oid=0 pin=gpio30 cs_active_high=0",
            "config_spi_angle oid=1 spi_oid=0 spi_angle_type=6",
            "Invalid spi_angle chip type",
        ),
    ] {
        let cmds = ["allocate_oids count=2", spi, config];
        assert_eq!(Board::shutdown_reason_of(&cmds), reason);
    }
}

#[test]
fn max31856_reads_registers_and_fault_status() {
    // CR0: automatic conversion; CR1: type K; MASK: as klippy sends.
    let mut b = thermo_board(MAX31856_BUS, 1, 1, Some("80800303"));
    assert!(b
        .ctl("chip max31856 state")
        .contains("cr0=80 cr1=03 mask=03"));
    chip(&mut b, "max31856 temp 180.25");
    start_query(&mut b, ms(20), 0, 0x3ffff << 5, 3);
    let (_, v, f) = result_where(&mut b, |v, _| v != 0);
    assert_eq!(f, 0);
    assert_eq!(v >> 5, (180.25 / 0.0078125) as u32);
    chip(&mut b, "max31856 fault 0x40");
    let (_, _, f) = result_where(&mut b, |_, f| f != 0);
    assert_eq!(f, 0x40, "thermocouple out of range");
}

#[test]
fn max31865_rtd_and_fault_clear() {
    // Bias on, automatic conversion, fault clear.
    let mut b = thermo_board(MAX31865_BUS, 2, 1, Some("80c2"));
    chip(&mut b, "max31865 temp 100");
    start_query(&mut b, ms(20), 0, 0xfffe, 3);
    let (_, v, f) = result_where(&mut b, |v, _| v != 0);
    assert_eq!(f, 0);
    // PT100 at 100 C: 138.5055 ohm of 430.
    let want = (100.0 * (1.0 + 3.9083e-3 * 100.0 - 5.775e-7 * 1e4) / 430.0 * 32768.0_f64).round();
    assert_eq!((v >> 1) as f64, want);
    // RTD input disconnected: the fault status, plus the RTD register's
    // fault bit, reported together.
    chip(&mut b, "max31865 fault 0x84");
    let (_, v, f) = result_where(&mut b, |_, f| f != 0);
    assert_eq!(v & 1, 1);
    assert_eq!(f, 0x85);
    // Latched until cleared, as klippy does on a fault.
    chip(&mut b, "max31865 fault 0");
    let (_, _, f) = result(&mut b);
    assert_eq!(f, 0x85, "fault status latches");
    b.send("spi_send oid=0 data=80c2");
    let (_, _, f) = result_where(&mut b, |_, f| f == 0);
    assert_eq!(f, 0);
}

#[test]
fn max6675_value_and_open_fault() {
    let mut b = thermo_board(MAX6675_BUS, 3, 0, None);
    chip(&mut b, "max6675 temp 100.5");
    start_query(&mut b, ms(20), 0, 0x1fff << 3, 3);
    let (_, v, f) = result_where(&mut b, |v, _| v != 0);
    assert_eq!((v >> 3, f), (402, 0));
    chip(&mut b, "max6675 fault 4");
    let (_, v, f) = result_where(&mut b, |_, f| f != 0);
    assert_eq!(f, 4, "thermocouple open");
    assert_eq!(v & 7, 4);
}

// ---------------------------------------------------------------------
// Angle sensors.

const AS5047D_BUS: u32 = 512;
const A1333_BUS: u32 = 513;
const TLE5012B_BUS: u32 = 514;
const MT6816_BUS: u32 = 515;
const MT6826S_BUS: u32 = 516;

/// An angle sensor (oid 1) on SPI device oid 0 with a chip select on
/// gpio30, as klippy configures one.
fn angle_board(bus: u32, chip: u32) -> Board {
    let mut b = Board::sim_realtime();
    b.watch_machine_stalls();
    b.configure(
        2,
        &[
            "config_spi oid=0 pin=gpio30 cs_active_high=0".into(),
            format!("spi_set_bus oid=0 spi_bus={bus} mode=3 rate=4000000"),
            format!("config_spi_angle oid=1 spi_oid=0 spi_angle_type={chip}"),
        ],
    );
    b
}

const TIME_SHIFT: u32 = 9;

/// The sample period of every stream here.
const PERIOD: Duration = Duration::from_millis(1);

/// Stream for `d`, a sample every [`PERIOD`]; returns (sequence, samples)
/// per message.
fn stream(b: &mut Board, d: Duration) -> Vec<(i64, Vec<(u8, u16)>)> {
    let rest = ms(PERIOD.as_millis() as u32);
    let start = b.clock().wrapping_add(ms(20));
    b.send(&format!(
        "query_spi_angle oid=1 clock={start} rest_ticks={rest} time_shift={TIME_SHIFT}"
    ));
    b.settle(d);
    b.send("query_spi_angle oid=1 clock=0 rest_ticks=0 time_shift=0");
    b.settle(Duration::from_millis(50));
    b.assert_not_shutdown();
    b.take_all("sensor_bulk_data")
        .iter()
        .map(|m| {
            assert_eq!(m.int("oid"), 1);
            let data = m.bytes("data");
            assert_eq!(data.len() % 3, 0);
            let s = data
                .chunks(3)
                .map(|c| (c[0], u16::from_le_bytes([c[1], c[2]])))
                .collect();
            (m.int("sequence"), s)
        })
        .collect()
}

fn all_samples(msgs: &[(i64, Vec<(u8, u16)>)]) -> Vec<(u8, u16)> {
    for (k, (seq, s)) in msgs.iter().enumerate() {
        assert_eq!(*seq, k as i64, "sequence numbers");
        // Full messages: 17 samples of 3 bytes.
        assert_eq!(s.len(), 17);
    }
    msgs.iter().flat_map(|m| m.1.clone()).collect()
}

fn angle_diff(a: u16, b: u16) -> i32 {
    a.wrapping_sub(b) as i16 as i32
}

fn check_static_angle(bus: u32, chip: u32, name: &str, tol: i32) {
    let mut b = angle_board(bus, chip);
    let r = b.ctl(&format!("chip {name} angle 90"));
    assert_eq!(r, "ok");
    let msgs = stream(&mut b, Duration::from_millis(500));
    let s = good_samples(&b, name, &all_samples(&msgs));
    assert!(s.len() >= 17 * 10, "{name}: only {} samples", s.len());
    for &(_, a) in &s {
        assert!(
            angle_diff(a, 16384).abs() <= tol,
            "{name}: angle {a}, expected 16384"
        );
    }
    // The chip flags its reading invalid: error code 5 (no angle), or
    // a parity/CRC error (3).
    assert_eq!(b.ctl(&format!("chip {name} crc 1")), "ok");
    let s = all_samples(&stream(&mut b, Duration::from_millis(200)));
    let s = good_samples(&b, name, &s);
    assert!(
        !s.is_empty() && s.iter().all(|&x| x == (0xff, 3)),
        "{name}: {s:?}"
    );
}

/// Drop the samples that stand for scheduling trouble (the test machine
/// is shared: now and then the MCU falls behind by a sample period, or is
/// preempted inside a query so that it exceeds the SPI time limit),
/// checking they are few; no other error may appear. Error samples other
/// than those (code 3 CRC, 5 no angle) stay in.
fn good_samples(b: &Board, name: &str, s: &[(u8, u16)]) -> Vec<(u8, u16)> {
    let late = |x: &&(u8, u16)| x.0 == 0xff && x.1 <= 2;
    let n = s.iter().filter(late).count();
    // Under -r they must stay rare; without it (not root) a busy machine
    // delays the MCU as much as it likes, and what counts is that every
    // such delay is reported as an error sample, not passed off as data.
    //
    // Not even -r helps when the machine itself stops running a CPU (a
    // VM's steal time; tens of milliseconds seen in CI): each period of
    // such a stall that the watch saw costs one overflow sample more.
    if !realtime().is_empty() {
        let stall = b.machine_stall_total();
        let excused = (stall.as_micros() / PERIOD.as_micros()) as usize;
        let by_code: Vec<usize> = (0..3)
            .map(|c| s.iter().filter(|x| **x == (0xff, c)).count())
            .collect();
        assert!(
            n <= s.len() / 10 + excused,
            "{name}: {n} overflow/schedule errors in {} samples \
             (overflow, schedule, spi time: {by_code:?}; machine stalls {stall:?})",
            s.len()
        );
        if excused > 0 {
            eprintln!("{name}: the machine stalled {stall:?}; {n} late samples");
        }
    } else if n > 0 {
        eprintln!(
            "{name}: {n} of {} samples report overflow or schedule errors (no -r)",
            s.len()
        );
    }
    s.iter().filter(|x| !late(x)).copied().collect()
}

#[test]
fn as5047d_streams_angles() {
    check_static_angle(AS5047D_BUS, 1, "as5047d", 4);
    let mut b = angle_board(AS5047D_BUS, 1);
    assert_eq!(b.ctl("chip as5047d error 1"), "ok");
    let s = all_samples(&stream(&mut b, Duration::from_millis(200)));
    let s = good_samples(&b, "as5047d", &s);
    assert!(!s.is_empty() && s.iter().all(|&x| x == (0xff, 5)), "{s:?}");
}

/// One test per sensor: `check_static_angle(bus, chip type, chip, ...)`.
macro_rules! static_angle_tests {
    ($($name:ident: $($arg:expr),+;)+) => {$(
        #[test]
        fn $name() {
            check_static_angle($($arg),+);
        }
    )+};
}

static_angle_tests! {
    a1333_streams_angles: A1333_BUS, 0, "a1333", 2;
    mt6816_streams_angles: MT6816_BUS, 3, "mt6816", 4;
    mt6826s_streams_angles: MT6826S_BUS, 4, "mt6826s", 2;
    tle5012b_streams_angles: TLE5012B_BUS, 2, "tle5012b", 2;
}

#[test]
fn rotating_angle_advances_between_samples() {
    let mut b = angle_board(AS5047D_BUS, 1);
    // 600 rpm = 10 turns/s: at 1 kHz, 3.6 degrees = 655 units a sample.
    assert_eq!(b.ctl("chip as5047d rpm 600"), "ok");
    let s: Vec<(u8, u16)> = all_samples(&stream(&mut b, Duration::from_millis(400)))
        .into_iter()
        .filter(|x| x.0 != 0xff)
        .collect();
    assert!(s.len() > 100);
    let steps: Vec<i32> = s.windows(2).map(|w| angle_diff(w[1].1, w[0].1)).collect();
    let mut sorted = steps.clone();
    sorted.sort_unstable();
    let med = sorted[sorted.len() / 2];
    assert!((600..=710).contains(&med), "median step {med}: {steps:?}");
    assert!(steps.iter().all(|&d| d >= 0), "not monotonic: {steps:?}");
    // Time codes: (query time - sample time) >> 9, small.
    assert!(s.iter().all(|&(t, _)| t < 0xff));
}

#[test]
fn spi_angle_transfer_reports_latch_time() {
    let mut b = angle_board(AS5047D_BUS, 1);
    assert_eq!(b.ctl("chip as5047d angle 180"), "ok");
    let t0 = b.clock();
    let r = b.request(
        "spi_angle_transfer oid=1 data=7ffe",
        "spi_angle_transfer_response",
    );
    let r2 = b.request(
        "spi_angle_transfer oid=1 data=c000",
        "spi_angle_transfer_response",
    );
    let t1 = b.clock();
    for m in [&r, &r2] {
        assert_eq!(m.int("oid"), 1);
        let c = m.int("clock") as u32;
        assert!(
            diff(c, t0) > 0 && diff(t1, c) > 0,
            "clock {c} not in {t0}..{t1}"
        );
        assert_eq!(m.bytes("response").len(), 2);
    }
    // The AS5047D answers the previous command: ANGLEUNC = 0x2000 at 180
    // degrees, with even parity.
    let w = u16::from_be_bytes([r2.bytes("response")[0], r2.bytes("response")[1]]);
    assert_eq!(w & 0x3fff, 0x2000);
    assert_eq!(w.count_ones() % 2, 0);
}

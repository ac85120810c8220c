//! Accelerometers through the pty against the simulated board (`--sim`):
//! the ADXL345 on spidev0.0 (register traffic, sample framing in
//! `sensor_bulk_data`, sequence numbers, `query_adxl345_status`, overflow
//! accounting when the MCU is told to read too seldom), the same for the
//! MPU-9250 (i2c.1 0x68), LIS2DW (spidev0.1 and i2c.1 0x19), ICM-20948
//! (i2c.1 0x69) and BMI160 (spidev0.2), configuration errors, and (ignored, run by hand) a 60 s stream at
//! 3200 samples/s with the MCU's CPU use measured.

mod simboard;

use std::time::{Duration, Instant};

use klipper_protocol::host::Response;
use simboard::*;

const CLOCK_FREQ: f64 = 50_000_000.0;

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// SPI oid 0 on spidev`bus`.0 without a chip select, mode 3 at 5 MHz.
fn spi(bus: u32) -> [String; 2] {
    [
        "config_spi_without_cs oid=0".into(),
        format!("spi_set_bus oid=0 spi_bus={bus} mode=3 rate=5000000"),
    ]
}

/// I2C oid 0 on i2c.1 at 400 kHz, for the device at `address`.
fn i2c(address: u8) -> [String; 2] {
    [
        "config_i2c oid=0".into(),
        format!("i2c_set_bus oid=0 i2c_bus=1 rate=400000 address={address}"),
    ]
}

/// A simulated board with the accelerometer `chip` as oid 1, configured
/// with `config` on the bus oid 0 that `bus` sets up, not yet queried.
fn accel_board(bus: [String; 2], config: &str, chip: &str) -> Board {
    let mut b = Board::sim_realtime();
    b.watch_machine_stalls();
    let mut cmds = bus.to_vec();
    cmds.push(config.into());
    cmds.push(format!("query_{chip} oid=1 rest_ticks=0"));
    b.configure(3, &cmds);
    b
}

/// `query_CHIP_status` of the accelerometer (oid 1).
fn bulk_status(b: &mut Board, chip: &str) -> Response {
    b.request(&format!("query_{chip}_status oid=1"), "sensor_bulk_status")
}

/// A board with an ADXL345 (oid 1) on spidev0.0 (SPI oid 0), as klippy
/// configures it (`cs_pin: host:None`, `spi_bus: spidev0.0`, mode 3).
fn adxl_board() -> Board {
    accel_board(spi(0), "config_adxl345 oid=1 spi_oid=0", "adxl345")
}

fn read_reg(b: &mut Board, reg: u8) -> u8 {
    let r = b.request(
        &format!("spi_transfer oid=0 data={}", hex(&[reg | 0x80, 0])),
        "spi_transfer_response",
    );
    r.bytes("response")[1]
}

/// klippy's `set_reg`: write, then read back.
fn set_reg(b: &mut Board, reg: u8, val: u8) {
    b.send(&format!("spi_send oid=0 data={}", hex(&[reg, val])));
    assert_eq!(read_reg(b, reg), val, "register {reg:#x}");
}

/// klippy's adxl345.py `_convert_samples`, raw counts; None on an error
/// sample.
fn unpack(d: &[u8]) -> Option<(i32, i32, i32)> {
    let [xl, yl, zl, xz, yz] = [0, 1, 2, 3, 4].map(|i| d[i] as i32);
    if yz & 0x80 != 0 {
        return None;
    }
    let rx = (xl | ((xz & 0x1f) << 8)) - ((xz & 0x10) << 9);
    let ry = (yl | ((yz & 0x1f) << 8)) - ((yz & 0x10) << 9);
    let rz = (zl | ((xz & 0xe0) << 3) | ((yz & 0xe0) << 6)) - ((yz & 0x40) << 7);
    Some((rx, ry, rz))
}

/// The `key=value` fields of a control-socket answer.
fn field(s: &str, k: &str) -> u64 {
    s.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{k}=")))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {k} in {s:?}")) as u64
}

/// [`start_chip`] at `rate_code`, measurement on, then the query every
/// `period` seconds.
fn adxl_measure(b: &mut Board, rate_code: u8, period: f64) {
    start_chip(b, rate_code);
    set_reg(b, 0x2D, 0x08);
    query_every(b, "adxl345", period);
}

/// Set the chip up as klippy's `_start_measurements` does, at `rate_code`.
fn start_chip(b: &mut Board, rate_code: u8) {
    assert_eq!(read_reg(b, 0x00), 0xE5, "DEVID");
    set_reg(b, 0x2D, 0x00);
    set_reg(b, 0x31, 0x0B);
    set_reg(b, 0x38, 0x00);
    set_reg(b, 0x2C, rate_code);
    set_reg(b, 0x38, 0x90);
}

/// Check the framing of a run of `sensor_bulk_data`: oid 1, sequences
/// from 0 without a gap, `len` bytes per message; returns each message's
/// data.
fn framed(msgs: &[Response], len: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    for (k, m) in msgs.iter().enumerate() {
        assert_eq!(m.int("oid"), 1);
        assert_eq!(
            m.int("sequence"),
            k as i64 & 0xffff,
            "sequence of message {k}"
        );
        let d = m.bytes("data");
        assert_eq!(d.len(), len, "message {k}: {} bytes", d.len());
        out.push(d);
    }
    out
}

/// [`framed`] ADXL345 messages: 10 samples (50 bytes) per message;
/// returns the samples.
fn samples_of(msgs: &[Response]) -> Vec<(i32, i32, i32)> {
    let mut out = Vec::new();
    for (k, d) in framed(msgs, 50).into_iter().enumerate() {
        for s in d.chunks(5) {
            out.push(unpack(s).unwrap_or_else(|| panic!("an error sample in message {k}")));
        }
    }
    out
}

/// `query_CHIP` (oid 1) every `period` seconds.
fn query_every(b: &mut Board, chip: &str, period: f64) {
    let rest = (period * CLOCK_FREQ) as u32;
    b.send(&format!("query_{chip} oid=1 rest_ticks={rest}"));
}

/// Stop `query_CHIP` (oid 1).
fn stop_query(b: &mut Board, chip: &str) {
    b.send(&format!("query_{chip} oid=1 rest_ticks=0"));
}

/// `b` with its chip on the counter waveform, started by `start`.
fn counting(mut b: Board, chip: &str, start: impl FnOnce(&mut Board)) -> Board {
    assert_eq!(b.ctl(&format!("chip {chip} counter")), "ok");
    start(&mut b);
    b
}

/// Let the stream run `run_ms` and take the status; then `finish`
/// (klippy's `_finish_measurements`, the query stopped among its steps)
/// and wait `drain_ms` for the last messages. Returns the status, the
/// messages and the chip's status.
fn finish_stream(
    b: &mut Board,
    chip: &str,
    run_ms: u64,
    finish: impl FnOnce(&mut Board),
    drain_ms: u64,
) -> (Response, Vec<Response>, String) {
    b.settle(Duration::from_millis(run_ms));
    let st = bulk_status(b, chip);
    finish(b);
    b.settle(Duration::from_millis(drain_ms));
    let msgs = b.take_all("sensor_bulk_data");
    let status = b.ctl(&format!("chip {chip} status"));
    eprintln!(
        "{st:?}\n{status}\nlongest machine stall {:?}",
        b.machine_stall()
    );
    (st, msgs, status)
}

/// A FIFO chip read often enough: no overflow seen by the MCU or the chip,
/// and less than a block (8 samples of 6 bytes) and a few samples left.
fn assert_none_lost(st: &Response, chip: &str) {
    assert_eq!(st.int("possible_overflows"), 0);
    assert_eq!(field(chip, "overflowed"), 0, "{chip}");
    assert!(st.int("buffered") < 48 + 6 * 20, "{st:?}");
}

/// Under `-r` nothing may be lost, unless the machine itself stopped
/// running a CPU for half the chip's FIFO span (`fifo`) or more (seen by
/// [`Board::machine_stall`]'s watch, which neither this MCU nor other
/// tests' MCUs can delay): whether the chip lost samples to such a stall.
/// The loss must then be reported, see [`assert_loss_reported`].
fn machine_excuses(b: &Board, chip: &str, fifo: Duration) -> bool {
    let stall = b.machine_stall();
    let overflowed = field(chip, "overflowed");
    let excused = overflowed > 0 && stall >= fifo / 2;
    if excused {
        eprintln!(
            "the machine stopped a CPU for {stall:?} (the FIFO spans {fifo:?}): \
             {overflowed} samples lost, checked as reported"
        );
    }
    excused
}

/// Samples lost to a machine stall (see [`machine_excuses`]): counted as
/// possible overflows, and only missing from the counter waveform `xs`
/// (x counts samples), never repeated or out of order.
fn assert_loss_reported(st: &Response, chip: &str, xs: &[i32]) {
    assert!(st.int("possible_overflows") > 0, "lost unreported: {st:?}");
    let mut missing = 0;
    for (k, w) in xs.windows(2).enumerate() {
        let step = (w[1] - w[0]).rem_euclid(8192);
        assert!(step >= 1, "sample {} repeats sample {k}", k + 1);
        missing += step as u64 - 1;
    }
    let overflowed = field(chip, "overflowed");
    assert!(
        missing <= overflowed,
        "{missing} missing, {overflowed} dropped: {chip}"
    );
}

/// A FIFO chip not read for 100 ms: its overflow flag counts one possible
/// overflow and the status shows the full FIFO (85 entries); reading the
/// flag cleared it, so the next status counts no new one at once.
fn assert_one_overflow_while_unread(b: &mut Board, chip: &str) {
    std::thread::sleep(Duration::from_millis(100));
    let st = bulk_status(b, chip);
    assert_eq!(st.int("possible_overflows"), 1, "{st:?}");
    assert_eq!(st.int("buffered"), 510, "{st:?}");
    let st = bulk_status(b, chip);
    assert!(st.int("possible_overflows") <= 2, "{st:?}");
}

/// With the counter waveform x is the sample number (mod 8192): every
/// sample follows the one before.
fn assert_contiguous(s: &[(i32, i32, i32)]) {
    for (k, w) in s.windows(2).enumerate() {
        assert_eq!(
            (w[1].0 - w[0].0).rem_euclid(8192),
            1,
            "sample {} does not follow sample {k}: {:?}",
            k + 1,
            &s[k.saturating_sub(3)..(k + 4).min(s.len())]
        );
    }
}

#[test]
fn adxl345_registers_through_spi() {
    let mut b = adxl_board();
    assert_eq!(read_reg(&mut b, 0x00), 0xE5);
    // Reset values: BW_RATE 0x0A, nothing measuring.
    assert_eq!(read_reg(&mut b, 0x2C), 0x0A);
    start_chip(&mut b, 0x0F);
    let st = b.ctl("chip adxl345 status");
    assert!(
        st.contains("reg2c=0x0f") && st.contains("reg31=0x0b") && st.contains("reg38=0x90"),
        "{st}"
    );
    assert_eq!(field(&st, "measuring"), 0);
    set_reg(&mut b, 0x2D, 0x08);
    std::thread::sleep(Duration::from_millis(50));
    // FIFO_STATUS: full (32) after 10 ms at 3200 Hz; DATA registers read
    // as one multi-byte burst (read|multi = 0xC0) pop one entry.
    assert_eq!(read_reg(&mut b, 0x39) & 0x3f, 32);
    let r = b.request(
        &format!(
            "spi_transfer oid=0 data={}",
            hex(&[0x32 | 0xC0, 0, 0, 0, 0, 0, 0, 0, 0])
        ),
        "spi_transfer_response",
    );
    let d = r.bytes("response");
    assert_eq!(d[7], 0x90, "FIFO_CTL in the burst");
    assert_eq!(
        d[8] & 0x3f,
        32,
        "FIFO_STATUS in the burst counts the entry read"
    );
    let z = i16::from_le_bytes([d[5], d[6]]);
    assert_eq!(z, 256, "z = 1 g");
    b.assert_not_shutdown();
}

#[test]
fn adxl345_streams_framed_samples_without_loss() {
    // 3200 Hz.
    let mut b = counting(adxl_board(), "adxl345", |b| start_chip(b, 0x0F));
    // As klippy: the query first, then measurement on.
    query_every(&mut b, "adxl345", 4.0 / 3200.0);
    set_reg(&mut b, 0x2D, 0x08);
    let st0 = bulk_status(&mut b, "adxl345");
    assert_eq!(st0.int("possible_overflows"), 0);
    let off = |b: &mut Board| {
        set_reg(b, 0x2D, 0x00);
        stop_query(b, "adxl345");
    };
    let (st, msgs, chip) = finish_stream(&mut b, "adxl345", 1500, off, 100);
    // sensor_bulk_status: clock and query_ticks from a timed SPI read.
    assert!(st.int("query_ticks") >= 0 && st.int("query_ticks") < 50_000);
    // Under -r nothing may be lost (unless the machine itself stopped, see
    // `machine_excuses`); without it (not root) a busy machine may delay
    // the MCU past the chip's 10 ms FIFO, and the loss must be reported
    // (possible_overflows) and visible as gaps, nothing else.
    // 32 entries at 3200/s.
    let fifo = Duration::from_millis(10);
    let rt = !realtime().is_empty() && !machine_excuses(&b, &chip, fifo);
    let overflowed = field(&chip, "overflowed");
    if rt {
        assert_eq!(st.int("possible_overflows"), 0);
    } else if overflowed > 0 {
        assert!(
            st.int("possible_overflows") > 0,
            "{overflowed} lost unreported: {st:?}"
        );
    }
    assert!(st.int("next_sequence") > 100, "{st:?}");
    let buffered = st.int("buffered");
    assert!(buffered % 5 == 0 && buffered <= 50 + 32 * 5, "{st:?}");
    let mut samples = samples_of(&msgs);
    // Before the chip measured, a wake may read the (empty) data
    // registers: zeros, as the real chip's.
    let skip = samples.iter().take_while(|s| s.2 == 0).count();
    assert!(skip <= 2, "{skip} stale samples at the start");
    samples.drain(..skip);
    // Samples missing between neighbours; a repeated one is a failure of
    // its own (named, not an arithmetic overflow in the count).
    let lost: u64 = samples
        .windows(2)
        .enumerate()
        .map(|(k, w)| {
            let step = (w[1].0 - w[0].0).rem_euclid(8192);
            assert!(step >= 1, "sample {} repeats sample {k}: {chip}", k + 1);
            step as u64 - 1
        })
        .sum();
    if rt || overflowed == 0 {
        assert_contiguous(&samples);
    } else {
        // Only the samples the chip dropped are missing.
        assert!(
            lost <= overflowed,
            "{lost} missing, {overflowed} dropped: {chip}"
        );
        eprintln!("{lost} samples lost, reported ({overflowed} dropped by the chip)");
    }
    let n = samples.len() as u64;
    let read = field(&chip, "read");
    // Every entry read from the chip, less the ones of the last partial
    // message (never sent: the query stopped), is in the messages.
    assert!(read - n < 10 + 2, "read {read}, got {n}");
    if rt {
        assert_eq!(overflowed, 0, "{chip}");
    }
    // At least 1.5 s at 3200/s (the test may have slept longer: the
    // chip's own count bounds the rest).
    assert!(n + lost >= 4000, "{n} samples in at least 1.5 s at 3200/s");
    assert!(n <= field(&chip, "generated"), "{n} samples: {chip}");
    // Counter waveform: y and z unchanged (100 and 1 g).
    assert!(samples.iter().all(|s| s.1 == 100 && s.2 == 256));
    b.assert_not_shutdown();
    // Stopped: nothing more comes.
    b.settle(Duration::from_millis(200));
    assert!(b.take_all("sensor_bulk_data").is_empty());
}

#[test]
fn adxl345_sine_waveform() {
    let mut b = adxl_board();
    assert_eq!(b.ctl("chip adxl345 wave 1500 50 -300 256"), "ok");
    adxl_measure(&mut b, 0x0D, 4.0 / 800.0); // 800 Hz
    b.settle(Duration::from_millis(1000));
    stop_query(&mut b, "adxl345");
    b.settle(Duration::from_millis(50));
    let s = samples_of(&b.take_all("sensor_bulk_data"));
    assert!(s.len() >= 600, "{} samples", s.len());
    // x = 1500 sin(2π 50 n / 800): 16 samples a period; a full period
    // of samples must match the formula at one phase.
    let n0 = (0..16)
        .find(|&p| {
            (0..32).all(|k| {
                let want = (1500.0
                    * (2.0 * std::f64::consts::PI * 50.0 * (p + k) as f64 / 800.0).sin())
                .round() as i32;
                s[k].0 == want
            })
        })
        .unwrap_or_else(|| panic!("x is not the 50 Hz sine: {:?}", &s[..32]));
    let xmax = s.iter().map(|v| v.0).max().unwrap();
    assert_eq!(xmax, 1500, "phase {n0}");
    assert!(s.iter().all(|v| v.1 == -300 && v.2 == 256));
}

#[test]
fn adxl345_overflow_accounting_when_read_too_seldom() {
    // 3200 Hz; wake every 50 ms: 160 samples arrive, the FIFO holds 32.
    let mut b = counting(adxl_board(), "adxl345", |b| adxl_measure(b, 0x0F, 0.05));
    b.settle(Duration::from_millis(600));
    let st = bulk_status(&mut b, "adxl345");
    stop_query(&mut b, "adxl345");
    let chip = b.ctl("chip adxl345 status");
    let po = st.int("possible_overflows");
    // Each wake finds the FIFO full: every read that sees >= 31 entries
    // counts a possible overflow (the first two of each wake's drain, as
    // the FIFO goes 32, 31, 30...); about 12 wakes in 600 ms.
    assert!((10..=40).contains(&po), "possible_overflows {po}: {st:?}");
    assert!(field(&chip, "overflowed") > 1000, "{chip}");
    // A new query resets the counts. The FIFO is still full when it
    // starts: if its first drain runs before the status request (a busy
    // machine delays the request), that drain counts its first two reads.
    query_every(&mut b, "adxl345", 4.0 / 3200.0);
    let st = bulk_status(&mut b, "adxl345");
    assert!(st.int("possible_overflows") <= 2, "{st:?}");
    assert!(st.int("next_sequence") <= 2);
    stop_query(&mut b, "adxl345");
    b.assert_not_shutdown();
}

#[test]
fn adxl345_bad_bursts_become_error_samples() {
    let mut b = adxl_board();
    start_chip(&mut b, 0x0F);
    // FIFO_CTL not read back as 0x90 (here: bypass mode): every burst is
    // taken for a wiring glitch and sent as an error sample (0xff x 5).
    set_reg(&mut b, 0x38, 0x00);
    set_reg(&mut b, 0x2D, 0x08);
    b.send("query_adxl345 oid=1 rest_ticks=500000");
    let m = b.wait_msg("sensor_bulk_data");
    b.send("query_adxl345 oid=1 rest_ticks=0");
    assert_eq!(m.bytes("data"), &[0xff; 50][..]);
    b.assert_not_shutdown();
}

/// An MPU-9250 (oid 1) on i2c.1 at 0x68 (I2C oid 0).
fn mpu_board() -> Board {
    accel_board(i2c(104), "config_mpu9250 oid=1 i2c_oid=0", "mpu9250")
}

fn mpu_set(b: &mut Board, reg: u8, val: u8) {
    b.send(&format!("i2c_write oid=0 data={}", hex(&[reg, val])));
}

#[test]
fn mpu9250_streams_fifo_blocks_over_i2c() {
    let mut b = mpu_board();
    let r = b.request("i2c_read oid=0 reg=75 read_len=1", "i2c_read_response");
    assert_eq!(r.bytes("response"), &[0x71], "WHO_AM_I");
    assert_eq!(b.ctl("chip mpu9250 counter"), "ok");
    // As klippy's mpu9250.py _start_measurements.
    for (reg, val) in [
        (0x6B, 0x00),
        (0x6C, 0x07),
        (0x1A, 0x01),
        (0x1C, 0x10),
        (0x1D, 0x08),
    ] {
        mpu_set(&mut b, reg, val);
    }
    mpu_set(&mut b, 0x23, 0x00);
    mpu_set(&mut b, 0x6A, 0x04);
    mpu_set(&mut b, 0x6A, 0x40);
    query_every(&mut b, "mpu9250", 4.0 / 4000.0);
    mpu_set(&mut b, 0x23, 0x08);
    let off = |b: &mut Board| {
        mpu_set(b, 0x23, 0x00);
        stop_query(b, "mpu9250");
    };
    let (st, msgs, chip) = finish_stream(&mut b, "mpu9250", 1000, off, 50);
    // 85 entries at 4000/s.
    if machine_excuses(&b, &chip, Duration::from_micros(21_250)) {
        let xs: Vec<i32> = samples6(&msgs, true).iter().map(|s| s.0).collect();
        return assert_loss_reported(&st, &chip, &xs);
    }
    assert_none_lost(&st, &chip);
    let mut xs = Vec::new();
    for (k, m) in msgs.iter().enumerate() {
        assert_eq!(m.int("sequence"), k as i64, "sequence");
        let d = m.bytes("data");
        assert_eq!(d.len(), 48, "8 samples of 6 bytes");
        for s in d.chunks(6) {
            // klippy: ">hhh".
            let v = |i: usize| i16::from_be_bytes([s[i], s[i + 1]]) as i32;
            assert_eq!((v(2), v(4)), (100, 4096));
            xs.push((v(0), 0, 0));
        }
    }
    assert!(
        (3000..=5000).contains(&xs.len()),
        "{} samples in ~1 s at 4000/s",
        xs.len()
    );
    assert_contiguous(&xs);
    assert_eq!(xs[0].0, -4096, "the first sample is sample 0");
    b.assert_not_shutdown();
}

#[test]
fn mpu9250_overflow_is_counted_from_int_status() {
    let mut b = mpu_board();
    for (reg, val) in [
        (0x6B, 0x00),
        (0x6C, 0x07),
        (0x1D, 0x08),
        (0x6A, 0x40),
        (0x23, 0x08),
    ] {
        mpu_set(&mut b, reg, val);
    }
    // Not reading: 85 entries fill in ~21 ms. INT_STATUS clears on read.
    assert_one_overflow_while_unread(&mut b, "mpu9250");
    b.assert_not_shutdown();
}

#[test]
fn configuration_errors_shut_down() {
    let cases: [(&[&str], &str); 5] = [
        // bus_oid_type out of range.
        (
            &[
                "config_spi_without_cs oid=0",
                "config_lis2dw oid=1 bus_oid=0 bus_oid_type=7 lis_chip_type=0",
            ],
            "bus_type invalid",
        ),
        // lis_chip_type out of range.
        (
            &[
                "config_spi_without_cs oid=0",
                "config_lis2dw oid=1 bus_oid=0 bus_oid_type=0 lis_chip_type=5",
            ],
            "model type invalid",
        ),
        // An ADXL345 on an oid that is not an SPI device.
        (
            &["config_i2c oid=0", "config_adxl345 oid=1 spi_oid=0"],
            "Invalid oid type",
        ),
        // query_mpu9250 on an ICM-20948's oid.
        (
            &[
                "config_i2c oid=0",
                "config_icm20948 oid=1 i2c_oid=0",
                "query_mpu9250_status oid=1",
            ],
            "Invalid oid type",
        ),
        // An I2C chip that does not answer: the status read NACKs.
        (
            &[
                "config_i2c oid=0",
                "i2c_set_bus oid=0 i2c_bus=1 rate=400000 address=35",
                "config_mpu9250 oid=1 i2c_oid=0",
                "query_mpu9250_status oid=1",
            ],
            "I2C NACK",
        ),
    ];
    assert_shutdowns(3, &cases);
}

/// The pid of the `klipper_mcu` serving `link` (its `-I` argument).
fn mcu_pid(link: &std::path::Path) -> u32 {
    let want = link.as_os_str().as_encoded_bytes();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if cmd.split(|&c| c == 0).any(|a| a == want) {
            return pid;
        }
    }
    panic!("no process serves {}", link.display());
}

/// The MCU's CPU time so far (utime + stime, in clock ticks).
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name (which ends with ')').
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// The performance target: an ADXL345 at 3200 samples/s streamed
/// for 60 s (`ACCEL_PERF_SECS` to change) loses no sample, with the host
/// polling `query_adxl345_status` as klippy does (every 100 ms); prints
/// the MCU's CPU use and any gap in the samples. `ACCEL_PERF_RT=1` puts
/// the MCU under SCHED_FIFO (as its `-r` option). Run with `cargo test --release --test accel --
/// --ignored --nocapture`.
#[test]
#[ignore]
fn adxl345_3200hz_long_stream_loses_nothing() {
    let secs: u64 = env_or("ACCEL_PERF_SECS", 60);
    let mut b = adxl_board();
    let pid = mcu_pid(&b.link);
    // ACCEL_PERF_RT=1: run the MCU under SCHED_FIFO, as `-r` does.
    let rt = std::env::var_os("ACCEL_PERF_RT").is_some();
    if rt {
        let p = libc::sched_param { sched_priority: 50 };
        let r = unsafe { libc::sched_setscheduler(pid as i32, libc::SCHED_FIFO, &p) };
        assert_eq!(
            r,
            0,
            "sched_setscheduler: {}",
            std::io::Error::last_os_error()
        );
    }
    assert_eq!(b.ctl("chip adxl345 counter"), "ok");
    start_chip(&mut b, 0x0F);
    query_every(&mut b, "adxl345", 4.0 / 3200.0);
    set_reg(&mut b, 0x2D, 0x08);
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();
    let mut msgs = Vec::new();
    let mut max_po = 0;
    let mut max_buffered = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        b.settle(Duration::from_millis(100));
        msgs.extend(b.take_all("sensor_bulk_data"));
        let st = bulk_status(&mut b, "adxl345");
        max_po = max_po.max(st.int("possible_overflows"));
        max_buffered = max_buffered.max(st.int("buffered"));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_ticks(pid);
    set_reg(&mut b, 0x2D, 0x00);
    stop_query(&mut b, "adxl345");
    b.settle(Duration::from_millis(100));
    msgs.extend(b.take_all("sensor_bulk_data"));
    let chip = b.ctl("chip adxl345 status");
    let mut samples = samples_of(&msgs);
    let skip = samples.iter().take_while(|s| s.2 == 0).count();
    samples.drain(..skip);
    let gaps: Vec<(usize, i32)> = samples
        .windows(2)
        .enumerate()
        .map(|(k, w)| (k, (w[1].0 - w[0].0).rem_euclid(8192) - 1))
        .filter(|g| g.1 != 0)
        .collect();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (cpu1 - cpu0) as f64 / hz;
    eprintln!(
        "ADXL345 3200 Hz for {elapsed:.1} s (SCHED_FIFO: {rt}): {} samples ({:.1}/s), \
         {} messages, possible_overflows max {max_po}, buffered max {max_buffered} bytes, \
         MCU CPU {cpu:.2} s = {:.2} %, gaps (index, samples lost) {gaps:?}\n chip: {chip}",
        samples.len(),
        samples.len() as f64 / elapsed,
        msgs.len(),
        100.0 * cpu / elapsed
    );
    assert!(gaps.is_empty(), "samples lost: {gaps:?}");
    assert_eq!(max_po, 0);
    assert_eq!(field(&chip, "overflowed"), 0, "{chip}");
    let want = 3200.0 * elapsed;
    assert!((samples.len() as f64 - want).abs() < want * 0.02);
    b.assert_not_shutdown();
}

// ---------------------------------------------------------------------------
// LIS2DW (spidev0.1 and i2c.1 0x19), ICM-20948 (i2c.1 0x69), BMI160
// (spidev0.2).

/// How a test reaches a chip's registers (bus oid 0), as klippy's drivers.
#[derive(Clone, Copy)]
enum Via {
    Spi,
    I2c,
}

fn rd(b: &mut Board, via: Via, reg: u8, n: usize) -> Vec<u8> {
    match via {
        Via::Spi => {
            let mut d = vec![0u8; n + 1];
            d[0] = reg | 0x80;
            let r = b.request(
                &format!("spi_transfer oid=0 data={}", hex(&d)),
                "spi_transfer_response",
            );
            r.bytes("response")[1..].to_vec()
        }
        Via::I2c => {
            let r = b.request(
                &format!("i2c_read oid=0 reg={} read_len={n}", hex(&[reg])),
                "i2c_read_response",
            );
            r.bytes("response").to_vec()
        }
    }
}

fn wr(b: &mut Board, via: Via, reg: u8, val: u8) {
    match via {
        Via::Spi => b.send(&format!("spi_send oid=0 data={}", hex(&[reg, val]))),
        Via::I2c => b.send(&format!("i2c_write oid=0 data={}", hex(&[reg, val]))),
    }
}

/// klippy's `set_reg` (write, then read back and compare).
fn wr_check(b: &mut Board, via: Via, reg: u8, val: u8) {
    wr(b, via, reg, val);
    assert_eq!(rd(b, via, reg, 1)[0], val, "register {reg:#x}");
}

/// [`framed`] messages of 8 samples of 6 bytes; returns the samples
/// (`be`: big-endian, klippy's ">hhh", else "<hhh").
fn samples6(msgs: &[Response], be: bool) -> Vec<(i32, i32, i32)> {
    let mut out = Vec::new();
    for d in framed(msgs, 48) {
        for s in d.chunks(6) {
            let v = |i: usize| {
                let b = [s[i], s[i + 1]];
                (if be {
                    i16::from_be_bytes(b)
                } else {
                    i16::from_le_bytes(b)
                }) as i32
            };
            out.push((v(0), v(2), v(4)));
        }
    }
    out
}

/// A board with a LIS2DW (oid 1) on spidev0.1 (`via` Spi, as klippy with
/// a cs_pin) or on i2c.1 at 0x19 (I2C oid 0).
fn lis_board(via: Via) -> Board {
    let bus = match via {
        Via::Spi => spi(1),
        Via::I2c => i2c(25),
    };
    let t = via as u8;
    let config = format!("config_lis2dw oid=1 bus_oid=0 bus_oid_type={t} lis_chip_type=0");
    accel_board(bus, &config, "lis2dw")
}

/// The simulated LIS2DW's name on the control socket.
fn lis_name(via: Via) -> &'static str {
    match via {
        Via::Spi => "lis2dw",
        Via::I2c => "lis2dw-i2c",
    }
}

/// klippy's lis2dw.py `_start_measurements` up to the query (LIS2DW).
fn lis_start(b: &mut Board, via: Via) {
    assert_eq!(rd(b, via, 0x0F, 1)[0], 0x44, "WHO_AM_I");
    if let Via::Spi = via {
        wr_check(b, via, 0x21, 0x06);
    }
    wr_check(b, via, 0x25, 0x34);
    wr_check(b, via, 0x2E, 0xC0);
    wr_check(b, via, 0x20, 0x94);
}

/// Stream a LIS2DW for `ms` as klippy does; returns the samples (raw
/// 16-bit), the last status and the chip's status.
fn lis_stream(b: &mut Board, via: Via, ms: u64) -> (Vec<(i32, i32, i32)>, Response, String) {
    lis_start(b, via);
    query_every(b, "lis2dw", 4.0 / 1600.0);
    wr_check(b, via, 0x2E, 0xC0);
    b.settle(Duration::from_millis(ms));
    let st = bulk_status(b, "lis2dw");
    // _finish_measurements; the query stops first here, as samples read
    // after the FIFO is put in bypass (klippy's order) are not data.
    stop_query(b, "lis2dw");
    wr_check(b, via, 0x2E, 0x00);
    b.settle(Duration::from_millis(50));
    let chip = b.ctl(&format!("chip {} status", lis_name(via)));
    let s = samples6(&b.take_all("sensor_bulk_data"), false);
    (s, st, chip)
}

/// The samples are 14-bit values left-justified; with the counter
/// waveform x (>> 2) counts from -4096, y and z as set.
fn check_lis_samples(s: &[(i32, i32, i32)], y: i32, z: i32) {
    assert!(s.iter().all(|v| (v.0 | v.1 | v.2) & 3 == 0), "low bits set");
    let bad: Vec<_> = s
        .iter()
        .enumerate()
        .filter(|(_, v)| v.1 != y << 2 || v.2 != z << 2)
        .collect();
    assert!(
        bad.is_empty(),
        "{} samples, bad: {:?}",
        s.len(),
        &bad[..bad.len().min(8)]
    );
    let xs: Vec<(i32, i32, i32)> = s.iter().map(|v| (v.0 >> 2, 0, 0)).collect();
    assert_eq!(xs[0].0, -4096, "the first sample is sample 0");
    assert_contiguous(&xs);
}

#[test]
fn lis2dw_registers_through_spi() {
    let mut b = lis_board(Via::Spi);
    let v = Via::Spi;
    assert_eq!(rd(&mut b, v, 0x0F, 1), [0x44]);
    // Reset values: CTRL2 IF_ADD_INC, powered down, FIFO in bypass.
    assert_eq!(rd(&mut b, v, 0x20, 2), [0x00, 0x04]);
    assert_eq!(b.ctl("chip lis2dw const 1000 -2000 512"), "ok");
    lis_start(&mut b, v);
    let st = b.ctl("chip lis2dw status");
    assert!(
        st.contains("reg20=0x94") && st.contains("reg21=0x06") && st.contains("reg25=0x34"),
        "{st}"
    );
    assert_eq!(field(&st, "rate"), 1600);
    std::thread::sleep(Duration::from_millis(50));
    // 32 samples after 20 ms at 1600/s, then overwritten: FIFO_OVR.
    let fs = rd(&mut b, v, 0x2F, 1)[0];
    assert_eq!(fs & 0x7f, 0x40 | 32, "FIFO_SAMPLES {fs:#x}");
    // Powered down, it makes no more samples and keeps its FIFO: what
    // follows does not depend on the host's round trips (a sample every
    // 0.6 ms).
    wr_check(&mut b, v, 0x20, 0x00);
    // One burst from OUT_X_L rolls over at OUT_Z_H: 3 samples, popped.
    let d = rd(&mut b, v, 0x28, 18);
    for s in d.chunks(6) {
        let w = |i: usize| i16::from_le_bytes([s[i], s[i + 1]]);
        assert_eq!((w(0), w(2), w(4)), (4000, -8000, 2048));
    }
    let fs = rd(&mut b, v, 0x2F, 1)[0];
    assert!(fs & 0x40 == 0 && fs & 0x3f == 29, "{fs:#x}");
    // Bypass mode empties the FIFO; the OUT registers show the newest.
    wr_check(&mut b, v, 0x2E, 0x00);
    assert_eq!(rd(&mut b, v, 0x2F, 1)[0] & 0x7f, 0);
    assert_eq!(rd(&mut b, v, 0x2C, 2), (2048i16).to_le_bytes());
    // SOFT_RESET: back to the reset values.
    wr(&mut b, v, 0x21, 0x40);
    assert_eq!(rd(&mut b, v, 0x20, 2), [0x00, 0x04]);
    assert_eq!(field(&b.ctl("chip lis2dw status"), "measuring"), 0);
    b.assert_not_shutdown();
}

/// A LIS2DW on `via` streams the counter waveform for `ms` without a loss:
/// `samples` (a range) samples, y 100 and z 512; returns the board, the
/// samples, the status and the chip's status.
fn lis_counter_stream(
    via: Via,
    ms: u64,
    samples: std::ops::RangeInclusive<usize>,
) -> (Board, Vec<(i32, i32, i32)>, Response, String) {
    let mut b = lis_board(via);
    let name = lis_name(via);
    assert_eq!(b.ctl(&format!("chip {name} counter")), "ok");
    let (s, st, chip) = lis_stream(&mut b, via, ms);
    eprintln!("{st:?}\n{chip}");
    // 32 entries at 1600/s.
    if machine_excuses(&b, &chip, Duration::from_millis(20)) {
        let xs: Vec<i32> = s.iter().map(|v| v.0 >> 2).collect();
        assert_loss_reported(&st, &chip, &xs);
        return (b, s, st, chip);
    }
    assert_eq!(st.int("possible_overflows"), 0);
    assert_eq!(field(&chip, "overflowed"), 0, "{chip}");
    assert!(
        samples.contains(&s.len()),
        "{} samples in ~{ms} ms at 1600/s",
        s.len()
    );
    check_lis_samples(&s, 100, 512);
    (b, s, st, chip)
}

#[test]
fn lis2dw_streams_framed_samples_over_spi() {
    let (mut b, s, st, chip) = lis_counter_stream(Via::Spi, 1000, 1200..=2000);
    assert!(st.int("query_ticks") >= 0 && st.int("query_ticks") < 50_000);
    // buffered: FIFO_SAMPLES x 6, below one block plus a few samples.
    let buffered = st.int("buffered");
    assert!(buffered % 6 == 0 && buffered <= 32 * 6, "{st:?}");
    // Every sample read is in the messages (whole blocks only).
    assert_eq!(field(&chip, "read"), s.len() as u64, "{chip}");
    b.assert_not_shutdown();
    b.settle(Duration::from_millis(100));
    assert!(b.take_all("sensor_bulk_data").is_empty());
}

#[test]
fn lis2dw_streams_framed_samples_over_i2c() {
    let (mut b, ..) = lis_counter_stream(Via::I2c, 700, 800..=1400);
    // The SPI chip saw nothing.
    assert_eq!(field(&b.ctl("chip lis2dw status"), "transfers"), 0);
    b.assert_not_shutdown();
}

#[test]
fn lis2dw_sine_waveform() {
    let mut b = lis_board(Via::Spi);
    assert_eq!(b.ctl("chip lis2dw wave 3000 100 -50 512"), "ok");
    let (s, _, _) = lis_stream(&mut b, Via::Spi, 300);
    assert!(s.len() >= 300, "{} samples", s.len());
    // x = 3000 sin(2π 100 n / 1600), from sample 0.
    for (k, v) in s.iter().take(64).enumerate() {
        let want =
            (3000.0 * (2.0 * std::f64::consts::PI * 100.0 * k as f64 / 1600.0).sin()).round();
        assert_eq!(v.0, (want as i32) << 2, "sample {k}");
    }
    assert!(s.iter().all(|v| v.1 == -50 << 2 && v.2 == 512 << 2));
}

#[test]
fn lis2dw_overflow_accounting_when_read_too_seldom() {
    let mut b = counting(lis_board(Via::Spi), "lis2dw", |b| lis_start(b, Via::Spi));
    // Wake every 50 ms: 80 samples arrive, the FIFO holds 32.
    query_every(&mut b, "lis2dw", 0.05);
    b.settle(Duration::from_millis(600));
    // Stopped first, so that no wake follows the status read (which sets
    // the pending count) and every wake drained a whole FIFO.
    stop_query(&mut b, "lis2dw");
    let st = bulk_status(&mut b, "lis2dw");
    b.settle(Duration::from_millis(20));
    let chip = b.ctl("chip lis2dw status");
    let msgs = b.take_all("sensor_bulk_data");
    eprintln!("{st:?}\n{chip}");
    // Each wake's FIFO_SAMPLES read sees FIFO_OVR (one count per wake:
    // the 4 blocks of the 32 samples are then read without a new status
    // read), and the status query's read sees it again.
    let po = st.int("possible_overflows");
    assert!((8..=16).contains(&po), "possible_overflows {po}: {st:?}");
    assert!(field(&chip, "overflowed") > 400, "{chip}");
    // Whole FIFOs of 32 contiguous samples, 4 messages each, gaps between.
    let s = samples6(&msgs, false);
    assert_eq!(s.len() % 32, 0);
    for run in s.chunks(32) {
        let xs: Vec<(i32, i32, i32)> = run.iter().map(|v| (v.0 >> 2, 0, 0)).collect();
        assert_contiguous(&xs);
    }
    // A new query resets the counts.
    query_every(&mut b, "lis2dw", 4.0 / 1600.0);
    let st = bulk_status(&mut b, "lis2dw");
    assert!(st.int("possible_overflows") <= 1, "{st:?}");
    assert!(st.int("next_sequence") <= 4, "{st:?}");
    stop_query(&mut b, "lis2dw");
    b.assert_not_shutdown();
}

/// An ICM-20948 (oid 1) on i2c.1 at 0x69 (I2C oid 0).
fn icm_board() -> Board {
    accel_board(i2c(105), "config_icm20948 oid=1 i2c_oid=0", "icm20948")
}

/// klippy's icm20948.py `_start_measurements` up to the query.
fn icm_start(b: &mut Board) {
    let v = Via::I2c;
    assert_eq!(rd(b, v, 0x00, 1), [0xEA], "WHO_AM_I");
    for (reg, val) in [
        (0x06, 0x01),
        (0x07, 0x07),
        (0x10, 0x00),
        (0x11, 0x00),
        (0x7F, 0x20),
        (0x14, 0x06),
        (0x7F, 0x00),
        (0x67, 0x00),
        (0x03, 0x0E),
        (0x03, 0x40),
    ] {
        wr(b, v, reg, val);
    }
    rd(b, v, 0x19, 1);
}

#[test]
fn icm20948_registers_and_banks() {
    let mut b = icm_board();
    let v = Via::I2c;
    // Reset: asleep (PWR_MGMT_1 0x41); bank 2 ACCEL_CONFIG 0x01.
    assert_eq!(rd(&mut b, v, 0x06, 1), [0x41]);
    wr(&mut b, v, 0x7F, 0x20);
    assert_eq!(rd(&mut b, v, 0x14, 1), [0x01]);
    assert_eq!(rd(&mut b, v, 0x7F, 1), [0x20]);
    wr(&mut b, v, 0x7F, 0x00);
    icm_start(&mut b);
    let st = b.ctl("chip icm20948 status");
    assert!(
        st.contains("accel_config=0x06") && st.contains("user_ctrl=0x40"),
        "{st}"
    );
    assert_eq!(field(&st, "rate"), 4500);
    assert_eq!(field(&st, "fifo_bytes"), 0, "FIFO_EN_2 off: no entries");
    wr(&mut b, v, 0x67, 0x10);
    std::thread::sleep(Duration::from_millis(50));
    // Full (85 entries in 19 ms), overflowed: INT_STATUS_2, cleared by
    // reading it.
    assert_eq!(rd(&mut b, v, 0x70, 2), [0x01, 0xFE]);
    assert_eq!(rd(&mut b, v, 0x1B, 1)[0] & 0x0f, 0x01);
    // FIFO_RST empties it, and holds it empty while bit 0 is set (read
    // then: once released, how much it holds again depends on the host's
    // round trip, 10 entries in 2.2 ms).
    wr(&mut b, v, 0x68, 0x1F);
    assert_eq!(rd(&mut b, v, 0x70, 2), [0, 0]);
    wr(&mut b, v, 0x68, 0x00);
    b.assert_not_shutdown();
}

#[test]
fn icm20948_streams_fifo_blocks_over_i2c() {
    let mut b = counting(icm_board(), "icm20948", icm_start);
    query_every(&mut b, "icm20948", 4.0 / 4500.0);
    wr(&mut b, Via::I2c, 0x67, 0x10);
    let off = |b: &mut Board| {
        wr(b, Via::I2c, 0x67, 0x00);
        stop_query(b, "icm20948");
        wr(b, Via::I2c, 0x06, 0x41);
        wr(b, Via::I2c, 0x07, 0x3F);
    };
    let (st, msgs, chip) = finish_stream(&mut b, "icm20948", 1000, off, 50);
    let s = samples6(&msgs, true);
    // 85 entries at 4500/s.
    if machine_excuses(&b, &chip, Duration::from_micros(18_900)) {
        let xs: Vec<i32> = s.iter().map(|s| s.0).collect();
        return assert_loss_reported(&st, &chip, &xs);
    }
    assert_none_lost(&st, &chip);
    assert_eq!(field(&chip, "measuring"), 0, "asleep again");
    // At least 1 s at 4500/s (the test may have slept longer: the chip's
    // own count bounds the rest).
    assert!(
        s.len() >= 3500,
        "{} samples in at least 1 s at 4500/s",
        s.len()
    );
    assert!(s.iter().all(|v| v.1 == 100 && v.2 == 2048));
    // The counter runs from the chip's wake-up, the FIFO fills from
    // FIFO_EN_2, one host round trip later (longer on a busy machine):
    // the first sample in the FIFO is not sample 0, but every entry read
    // from the chip reached the host, in order, but for a last partial
    // message (the query stopped).
    let read = field(&chip, "read") as usize;
    assert!(
        s.len() <= read && read - s.len() < 10,
        "{} samples, {read} read from the chip: {chip}",
        s.len()
    );
    assert_contiguous(&s);
    b.assert_not_shutdown();
}

#[test]
fn icm20948_overflow_is_counted_from_int_status_2() {
    let mut b = icm_board();
    icm_start(&mut b);
    wr(&mut b, Via::I2c, 0x67, 0x10);
    // Not reading: 85 entries fill in ~19 ms. Reading INT_STATUS_2
    // clears it; 85 entries take 19 ms to overflow again.
    assert_one_overflow_while_unread(&mut b, "icm20948");
    // Read too seldom (every 50 ms): the streaming wakes don't look at
    // INT_STATUS_2; only the status queries count.
    query_every(&mut b, "icm20948", 0.05);
    b.settle(Duration::from_millis(300));
    let st = bulk_status(&mut b, "icm20948");
    assert_eq!(st.int("possible_overflows"), 1, "{st:?}");
    stop_query(&mut b, "icm20948");
    assert!(field(&b.ctl("chip icm20948 status"), "overflowed") > 500);
    b.assert_not_shutdown();
}

/// A BMI160 (oid 1) on spidev0.2 (SPI oid 0).
fn bmi_board() -> Board {
    accel_board(
        spi(2),
        "config_bmi160 oid=1 bus_oid=0 bus_oid_type=0",
        "bmi160",
    )
}

/// klippy's bmi160.py `_start_measurements` up to the query (its
/// `set_reg` is an spi_transfer; registers from 0x40 read back).
fn bmi_start(b: &mut Board) {
    let v = Via::Spi;
    // Dummy read: switches the chip to SPI.
    assert_eq!(rd(b, v, 0x7F, 1), [0x00]);
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(rd(b, v, 0x00, 1), [0xD1], "CHIP_ID");
    let set = |b: &mut Board, reg: u8, val: u8| {
        b.request(
            &format!("spi_transfer oid=0 data={}", hex(&[reg, val])),
            "spi_transfer_response",
        );
        if reg >= 0x40 && reg != 0x7E {
            assert_eq!(rd(b, v, reg, 1)[0], val, "register {reg:#x}");
        }
    };
    set(b, 0x7E, 0x11);
    set(b, 0x40, 0x2C);
    set(b, 0x41, 0x0C);
    set(b, 0x45, 0x00);
    set(b, 0x47, 0x40);
    set(b, 0x7E, 0xB0);
}

#[test]
fn bmi160_registers_through_spi() {
    let mut b = bmi_board();
    let v = Via::Spi;
    // In I2C mode until the first chip-selected transfer.
    assert_eq!(rd(&mut b, v, 0x00, 1), [0x00]);
    assert_eq!(rd(&mut b, v, 0x00, 1), [0xD1]);
    // Reset values: ACC_CONF 0x28, ACC_RANGE 0x03; suspended.
    assert_eq!(rd(&mut b, v, 0x40, 2), [0x28, 0x03]);
    assert_eq!(rd(&mut b, v, 0x03, 1), [0x00], "PMU_STATUS");
    assert_eq!(b.ctl("chip bmi160 const 1000 -2000 2048"), "ok");
    bmi_start(&mut b);
    assert_eq!(rd(&mut b, v, 0x03, 1), [0x10], "PMU_STATUS: acc normal");
    let st = b.ctl("chip bmi160 status");
    assert_eq!(field(&st, "rate"), 1600, "{st}");
    std::thread::sleep(Duration::from_millis(200));
    // Full: 170 frames of 6 bytes, the oldest overwritten.
    assert_eq!(rd(&mut b, v, 0x22, 2), [0xFC, 0x03], "FIFO_LENGTH 1020");
    // FIFO_DATA does not auto-increment: a burst reads 2 frames.
    let d = rd(&mut b, v, 0x24, 12);
    for s in d.chunks(6) {
        let w = |i: usize| i16::from_le_bytes([s[i], s[i + 1]]);
        assert_eq!((w(0), w(2), w(4)), (1000, -2000, 2048));
    }
    // The data registers (0x12..0x17) in one burst.
    let d = rd(&mut b, v, 0x12, 6);
    assert_eq!(i16::from_le_bytes([d[4], d[5]]), 2048);
    // FIFO flush; suspend stops it.
    b.send("spi_send oid=0 data=7e10");
    b.send("spi_send oid=0 data=7eb0");
    assert_eq!(rd(&mut b, v, 0x22, 2), [0, 0]);
    // Reading an empty FIFO: over-read bytes 0x80.
    assert_eq!(rd(&mut b, v, 0x24, 2), [0x80, 0x80]);
    b.assert_not_shutdown();
}

#[test]
fn bmi160_streams_framed_samples() {
    let mut b = counting(bmi_board(), "bmi160", bmi_start);
    query_every(&mut b, "bmi160", 4.0 / 1600.0);
    // _finish_measurements: suspend, then stop the query.
    let off = |b: &mut Board| {
        b.send("spi_send oid=0 data=7e10");
        stop_query(b, "bmi160");
    };
    let (st, msgs, chip) = finish_stream(&mut b, "bmi160", 1000, off, 50);
    let s = samples6(&msgs, false);
    // 170 entries at 1600/s.
    if machine_excuses(&b, &chip, Duration::from_millis(106)) {
        let xs: Vec<i32> = s.iter().map(|s| s.0).collect();
        return assert_loss_reported(&st, &chip, &xs);
    }
    assert_none_lost(&st, &chip);
    assert_eq!(field(&chip, "measuring"), 0);
    assert!(
        (1200..=2000).contains(&s.len()),
        "{} samples in ~1 s at 1600/s",
        s.len()
    );
    assert!(s.iter().all(|v| v.1 == 100 && v.2 == 2048));
    // The flush came 2 ms (klippy's pause) or more after the start: the
    // stream starts a few samples in, then nothing is lost.
    assert!(s[0].0 >= -4096 && s[0].0 < -4096 + 800, "{:?}", s[0]);
    assert_contiguous(&s);
    b.assert_not_shutdown();
}

#[test]
fn bmi160_overflow_is_not_seen_by_the_length_check() {
    let mut b = counting(bmi_board(), "bmi160", bmi_start);
    // Wake every 200 ms: 320 samples arrive, the FIFO holds 170.
    query_every(&mut b, "bmi160", 0.2);
    b.settle(Duration::from_millis(700));
    let st = bulk_status(&mut b, "bmi160");
    stop_query(&mut b, "bmi160");
    b.settle(Duration::from_millis(20));
    let chip = b.ctl("chip bmi160 status");
    let s = samples6(&b.take_all("sensor_bulk_data"), false);
    eprintln!("{st:?}\n{chip}");
    // sensor_bmi160.c counts an overflow only for a FIFO_LENGTH over 1024,
    // which the chip (1020 bytes of frames at most) never reports: samples
    // are lost (gaps in the counter) while possible_overflows stays 0.
    assert_eq!(st.int("possible_overflows"), 0, "{st:?}");
    assert!(st.int("buffered") <= 1020, "{st:?}");
    assert!(field(&chip, "overflowed") > 200, "{chip}");
    let gaps = s
        .windows(2)
        .filter(|w| (w[1].0 - w[0].0).rem_euclid(8192) != 1)
        .count();
    assert!(gaps >= 2, "{gaps} gaps in {} samples", s.len());
    b.assert_not_shutdown();
}

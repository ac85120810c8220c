//! The MCU binary driven through its pseudo-terminal, as klippy drives it:
//! identification, configuration, clocks, acks and naks, bad input and
//! shutdowns, debug commands, statistics, config_reset's re-execution, the
//! `-I` link, and a command flood. Each test starts its own process.

mod common;

use std::time::{Duration, Instant};

use common::{Mcu, TempDir, TIMEOUT};
use klipper_protocol::dictionary::Json;
use klipper_protocol::host::Response;

/// The block of sequence `seq` is acked, alone, and the MCU still
/// answers, not shut down.
fn acked_and_healthy(m: &mut Mcu, seq: u8) {
    assert_eq!(m.wait_acks(1), vec![ack_of(seq)]);
    m.assert_healthy();
}

/// The ack of the block sent with sequence `seq`.
fn ack_of(seq: u8) -> u8 {
    0x10 | ((seq + 1) & 0x0f)
}

// ---------------------------------------------------------------------------
// 1. identify

#[test]
fn identify_serves_the_dictionary() {
    let mut m = Mcu::start();
    let d = m.dict().clone();
    for key in ["version", "build_versions", "app", "license"] {
        assert!(
            d.json.get(key).and_then(Json::as_str).is_some(),
            "dictionary has no string `{key}`: {}",
            d.json
        );
    }
    assert_eq!(d.constant("MCU").and_then(Json::as_str), Some("linux"));
    assert_eq!(
        d.constant("CLOCK_FREQ").and_then(Json::as_i64),
        Some(50_000_000)
    );
    assert_eq!(
        d.constant("STATS_SUMSQ_BASE").and_then(Json::as_i64),
        Some(256)
    );
    assert_eq!(d.commands.get("identify").map(|c| c.id), Some(1));
    assert_eq!(
        d.commands["identify"].format.format,
        "identify offset=%u count=%c"
    );
    assert_eq!(
        d.responses.get(&0).map(|r| r.format.name.as_str()),
        Some("identify_response")
    );
    let ss = d
        .enumerations
        .get("static_string_id")
        .and_then(Json::as_object)
        .expect("static_string_id enumeration");
    assert!(!ss.is_empty());
    let pins = d
        .enumerations
        .get("pin")
        .and_then(Json::as_object)
        .expect("pin enumeration");
    assert_eq!(pins.get("gpio0"), Some(&Json::from(vec![0, 288])));
    assert_eq!(d.enum_value("pin", "gpio17"), Some(17));
    // `starting` is written right after the link is made; the slave side
    // stays open in the MCU, so the terminal keeps it until we read it.
    assert!(m.saw_starting, "no `starting` message; got {:?}", m.msgs);
    // The dictionary is served the same way at any offset.
    let r = m.request("identify offset=3 count=5", "identify_response");
    assert_eq!(r.int("offset"), 3);
    assert_eq!(r.bytes("data").len(), 5);
    m.assert_alive();
}

// ---------------------------------------------------------------------------
// 2. configure

#[test]
fn configure_and_finalize() {
    let mut m = Mcu::start();
    let c = m.config();
    assert_eq!(c.int("is_config"), 0);
    assert_eq!(c.int("is_shutdown"), 0);
    m.send("allocate_oids count=3");
    m.send("finalize_config crc=1234");
    let c = m.config();
    assert_eq!(c.int("is_config"), 1, "{c:?}");
    assert_eq!(c.int("crc"), 1234);
    assert_eq!(c.int("is_shutdown"), 0);
    assert!(c.int("move_count") > 0, "{c:?}");
    assert!(!m.has_msg("shutdown"), "{:?}", m.msgs);

    m.send("finalize_config crc=1234");
    assert_eq!(m.wait_shutdown(), "Already finalized");
    let c = m.config();
    assert_eq!(c.int("is_shutdown"), 1);
    assert_eq!(c.int("is_config"), 1);
    m.assert_alive();
}

#[test]
fn allocate_oids_twice_shuts_down() {
    let mut m = Mcu::start();
    m.send("allocate_oids count=3");
    m.send("allocate_oids count=3");
    m.assert_shut_down("oids already allocated");
    m.assert_alive();
}

// ---------------------------------------------------------------------------
// 3. clock

#[test]
fn clock_runs_at_50mhz() {
    let mut m = Mcu::start();
    let t0 = Instant::now();
    let c1 = m.request("get_clock", "clock").int("clock") as u32;
    let t1 = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    let t2 = Instant::now();
    let c2 = m.request("get_clock", "clock").int("clock") as u32;
    let t3 = Instant::now();
    let ticks = c2.wrapping_sub(c1) as f64;
    // Bounds on the host time between the two clock readings.
    let min = (t2 - t1).as_secs_f64();
    let max = (t3 - t0).as_secs_f64();
    assert!(
        ticks >= 0.5 * min * 50e6 && ticks <= 3.0 * max * 50e6,
        "{ticks} ticks in {min:.3}..{max:.3} s"
    );

    // get_uptime and get_clock in one block: the same clock.
    let p = [m.encode("get_clock"), m.encode("get_uptime")].concat();
    m.send_payload(&p);
    let c = m.wait_msg("clock").int("clock") as u32;
    let u = m.wait_msg("uptime");
    // The process is young: the high word is still 0.
    assert_eq!(u.int("high"), 0, "{u:?}");
    let uc = u.int("clock") as u32;
    let diff = uc.wrapping_sub(c) as i32;
    assert!(
        (0..50_000_000).contains(&diff),
        "uptime clock {uc} vs clock {c}"
    );
}

// ---------------------------------------------------------------------------
// 4. acks

#[test]
fn every_block_is_acked_and_sequences_wrap() {
    let mut m = Mcu::start();
    let first = m.codec.seq();
    let mut blocks = Vec::new();
    for _ in 0..40 {
        let p = m.encode("get_clock");
        blocks.extend(m.codec.frame(&p));
    }
    m.write_raw(&blocks);
    let acks = m.wait_acks(40);
    let want: Vec<u8> = (0..40u8).map(|i| ack_of((first + i) & 0x0f)).collect();
    assert_eq!(acks, want);
    m.wait_until("40 clocks", |m| {
        m.msgs.iter().filter(|r| r.name == "clock").count() >= 40
    });
    // One at a time, too, across another wrap.
    for _ in 0..20 {
        let seq = m.codec.seq();
        m.send("get_clock");
        m.wait_msg("clock");
        assert_eq!(m.wait_acks(1), vec![ack_of(seq)]);
    }
    assert!(!m.has_msg("shutdown"));
}

// ---------------------------------------------------------------------------
// 5. bad input

#[test]
fn garbage_gets_one_nak() {
    let mut m = Mcu::start();
    let expected = m.expected_seq();
    // Bytes that are never a sync byte, nor a valid length.
    let garbage: Vec<u8> = (0..300u32)
        .map(|i| 0x80 | (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    m.write_raw(&garbage);
    m.settle(Duration::from_millis(100));
    m.write_raw(&[0x7e]);
    m.settle(Duration::from_millis(100));
    let seq = m.codec.seq();
    m.assert_alive();
    m.settle(Duration::from_millis(100));
    // Exactly one nak, with the unchanged sequence; then get_clock's ack.
    assert_eq!(m.acks, vec![expected, ack_of(seq)]);
    assert!(!m.has_msg("shutdown"), "{:?}", m.msgs);
    assert_eq!(m.config().int("is_shutdown"), 0);
}

#[test]
fn truncated_block_is_completed_later() {
    let mut m = Mcu::start();
    let seq = m.codec.seq();
    let b = m.frame_text("debug_ping data=0102030405060708090a");
    m.write_raw(&b[..7]);
    m.settle(Duration::from_millis(200));
    assert!(
        m.acks.is_empty(),
        "acks for an incomplete block: {:02x?}",
        m.acks
    );
    assert!(m.msgs.is_empty(), "{:?}", m.msgs);
    m.write_raw(&b[7..]);
    let r = m.wait_msg("pong");
    assert_eq!(r.bytes("data"), &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    acked_and_healthy(&mut m, seq);
}

#[test]
fn truncated_block_then_new_block_is_resynced() {
    let mut m = Mcu::start();
    let seq = m.codec.seq();
    let a = m.frame_text("get_clock");
    let b = m.frame_text("debug_ping data=11223344");
    assert!(
        !b[..b.len() - 1].contains(&0x7e),
        "test block has an inner sync byte"
    );
    // The rest of `a` is lost; `b` follows.
    let mut stream = a[..3].to_vec();
    stream.extend_from_slice(&b);
    m.write_raw(&stream);
    let naks = m.wait_acks(1);
    assert_eq!(naks, vec![0x10 | seq], "one nak with the expected sequence");
    m.settle(Duration::from_millis(200));
    assert!(m.acks.is_empty(), "more naks: {:02x?}", m.acks);
    assert!(m.msgs.is_empty(), "{:?}", m.msgs);
    // The host retransmits from the nak'ed sequence.
    m.write_raw(&[a.clone(), b.clone()].concat());
    m.wait_msg("clock");
    assert_eq!(m.wait_msg("pong").bytes("data"), &[0x11, 0x22, 0x33, 0x44]);
    m.wait_until("2 acks", |m| m.acks.len() >= 2);
    assert_eq!(m.acks, vec![ack_of(seq), ack_of(seq + 1)]);
    m.acks.clear();
    m.assert_healthy();
}

#[test]
fn bad_crc_is_naked_and_retransmission_accepted() {
    let mut m = Mcu::start();
    let seq = m.codec.seq();
    let b = m.frame_text("debug_ping data=abcdef");
    let mut bad = b.clone();
    let n = bad.len();
    bad[n - 2] ^= if bad[n - 2] ^ 0x01 == 0x7e {
        0x02
    } else {
        0x01
    };
    m.write_raw(&bad);
    assert_eq!(m.wait_acks(1), vec![0x10 | seq]);
    m.settle(Duration::from_millis(100));
    assert!(m.msgs.is_empty(), "{:?}", m.msgs);
    m.write_raw(&b);
    assert_eq!(m.wait_msg("pong").bytes("data"), &[0xab, 0xcd, 0xef]);
    acked_and_healthy(&mut m, seq);
}

#[test]
fn wrong_sequence_is_naked() {
    let mut m = Mcu::start();
    let seq = m.codec.seq();
    m.codec.set_seq(seq + 3);
    m.send("get_clock");
    m.codec.set_seq(seq);
    assert_eq!(m.wait_acks(1), vec![0x10 | seq]);
    m.settle(Duration::from_millis(100));
    assert!(m.msgs.is_empty(), "future block processed: {:?}", m.msgs);
    m.send("get_clock");
    m.wait_msg("clock");
    acked_and_healthy(&mut m, seq);
}

/// `cmd`, which may not run while shut down, is answered with
/// `is_shutdown` giving `reason`; returns that answer.
fn refused_in_shutdown(m: &mut Mcu, cmd: &str, reason: &str) -> Response {
    m.send(cmd);
    let r = m.wait_msg("is_shutdown");
    assert_eq!(m.static_string(r.int("static_string_id")), reason);
    r
}

#[test]
fn unknown_command_shuts_down() {
    let mut m = Mcu::start();
    assert!(
        m.dict().commands.values().all(|c| c.id != 0x3fff),
        "0x3fff is a real command"
    );
    m.send_payload(&[0xff, 0x7f]);
    assert_eq!(m.wait_shutdown(), "Invalid command");
    m.assert_alive();
    let c = m.config();
    assert_eq!(c.int("is_shutdown"), 1);
    let reason = m.dict().enum_value("static_string_id", "Invalid command");
    let r = refused_in_shutdown(&mut m, "allocate_oids count=1", "Invalid command");
    assert_eq!(Some(r.int("static_string_id")), reason);
}

#[test]
fn buffer_past_end_is_a_parser_error() {
    let mut m = Mcu::start();
    let mut p = m.encode("debug_ping data=");
    // Claim 50 bytes, give 3.
    *p.last_mut().unwrap() = 50;
    p.extend_from_slice(&[1, 2, 3]);
    m.send_payload(&p);
    m.assert_shut_down("Command parser error");
    m.assert_alive();
    assert!(!m.has_msg("pong"), "{:?}", m.msgs);
}

#[test]
fn clear_shutdown_recovers_and_is_refused_when_running() {
    let mut m = Mcu::start();
    m.send("emergency_stop");
    m.assert_shut_down("Command request");
    m.send("clear_shutdown");
    assert_eq!(m.config().int("is_shutdown"), 0);
    m.assert_healthy();
    // Running normally again: a non-in-shutdown command works.
    m.send("allocate_oids count=1");
    assert_eq!(m.config().int("is_shutdown"), 0);
    assert!(!m.has_msg("is_shutdown"), "{:?}", m.msgs);

    m.send("clear_shutdown");
    m.assert_shut_down("Shutdown cleared when not shutdown");
    m.assert_alive();
}

#[test]
fn emergency_stop_is_a_command_request() {
    let mut m = Mcu::start();
    m.send("emergency_stop");
    assert_eq!(m.wait_shutdown(), "Command request");
    m.assert_alive();
    let c = m.config();
    assert_eq!(c.int("is_shutdown"), 1);
    refused_in_shutdown(&mut m, "finalize_config crc=1", "Command request");
}

#[test]
fn force_shutdown_text() {
    let mut m = Mcu::start();
    m.assert_alive();
    let seq = m.expected_seq();
    m.acks.clear();
    m.write_raw(b"FORCE_SHUTDOWN\n");
    assert_eq!(m.wait_shutdown(), "Force shutdown command");
    // The text is not a block: one nak.
    assert_eq!(m.wait_acks(1), vec![seq]);
    // The text had no sync byte, so the receiver waits for one (as the
    // reference does); a host resynchronises with a lone sync byte.
    m.write_raw(&[0x7e]);
    m.assert_alive();
    assert_eq!(m.config().int("is_shutdown"), 1);
}

/// Needs config_digital_out, which the simulated board (`--sim`) offers.
#[test]
fn oid_out_of_range_cannot_be_assigned() {
    let mut m = Mcu::spawn_in(TempDir::new("pty-sim"), &["--sim"]);
    if let Err(e) = m.wait_link(None, TIMEOUT) {
        panic!("klipper_mcu --sim did not start (is --sim implemented yet?): {e}");
    }
    m.open();
    m.identify();
    if !m.dict().commands.contains_key("config_digital_out") {
        panic!("the dictionary of `klipper_mcu --sim` has no config_digital_out yet");
    }
    m.send("allocate_oids count=2");
    m.send("config_digital_out oid=5 pin=gpio17 value=0 default_value=0 max_duration=0");
    m.assert_shut_down("Can't assign oid");
    m.assert_alive();
}

// ---------------------------------------------------------------------------
// 6. debug

#[test]
fn debug_commands() {
    let mut m = Mcu::start();
    let r = m.request("debug_ping data=00017e7d10ff", "pong");
    assert_eq!(r.bytes("data"), &[0x00, 0x01, 0x7e, 0x7d, 0x10, 0xff]);
    let r = m.request("debug_ping data=", "pong");
    assert_eq!(r.bytes("data"), &[] as &[u8]);
    let long: String = (0..40).map(|i| format!("{:02x}", i * 5)).collect();
    let r = m.request(&format!("debug_ping data={long}"), "pong");
    assert_eq!(r.bytes("data"), (0..40).map(|i| i * 5).collect::<Vec<u8>>());

    m.send(&format!("debug_write order=2 addr=16 val={}", 0x1234_5678));
    let r = m.request("debug_read order=2 addr=16", "debug_result");
    assert_eq!(r.int("val"), 0x1234_5678);
    let r = m.request("debug_read order=0 addr=17", "debug_result");
    assert_eq!(r.int("val"), 0x56);
    let r = m.request("debug_read order=1 addr=18", "debug_result");
    assert_eq!(r.int("val"), 0x1234);
    for addr in [254u32, 256, 1000, 0x8000_0000, u32::MAX] {
        let r = m.request(&format!("debug_read order=2 addr={addr}"), "debug_result");
        assert_eq!(r.int("val"), 0, "read at {addr:#x}");
    }
    // Writes out of range are ignored, and do not shut down.
    m.send(&format!("debug_write order=2 addr={} val=1", u32::MAX));
    m.assert_healthy();
}

// ---------------------------------------------------------------------------
// 7. stats

#[test]
fn stats_are_reported() {
    let mut m = Mcu::start();
    let deadline = Instant::now() + Duration::from_secs(12);
    while !m.has_msg("stats") {
        assert!(
            Instant::now() < deadline,
            "no stats within 12 s: {:?}",
            m.msgs
        );
        m.send("get_clock");
        m.settle(Duration::from_millis(200));
    }
    let s = m.wait_msg("stats");
    assert!(s.int("count") > 0, "{s:?}");
}

// ---------------------------------------------------------------------------
// 8. config_reset

#[test]
fn config_reset_refused_when_running() {
    let mut m = Mcu::start();
    m.send("config_reset");
    assert_eq!(
        m.wait_shutdown(),
        "config_reset only available when shutdown"
    );
    m.assert_alive();
}

#[test]
fn config_reset_reexecutes() {
    let mut m = Mcu::start();
    let pid = m.pid();
    m.send("allocate_oids count=2");
    m.send("finalize_config crc=77");
    assert_eq!(m.config().int("is_config"), 1);
    m.send("emergency_stop");
    assert_eq!(m.wait_shutdown(), "Command request");
    let old = m.tty.clone();
    m.send("config_reset");
    // Keep the old terminal open while waiting, so its number is not
    // reused and the new link is told apart.
    let new = match m.wait_link(Some(&old), TIMEOUT) {
        Ok(t) => t,
        Err(e) => m.fail(&format!("no new link after config_reset: {e}")),
    };
    assert_ne!(new, old);
    assert_eq!(m.pid(), pid);
    assert!(
        m.child.try_wait().unwrap().is_none(),
        "the process exited instead of re-executing"
    );
    // Same process: it holds the new terminal open.
    let holds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|t| t == new);
    assert!(holds, "process {pid} does not hold {}", new.display());
    m.close();
    m.open();
    m.identify();
    let c = m.config();
    assert_eq!(c.int("is_config"), 0, "{c:?}");
    assert_eq!(c.int("is_shutdown"), 0, "{c:?}");
    assert_eq!(c.int("crc"), 0, "{c:?}");
    m.send("allocate_oids count=2");
    m.send("finalize_config crc=78");
    assert_eq!(m.config().int("crc"), 78);
    assert!(!m.has_msg("shutdown"), "{:?}", m.msgs);
}

// ---------------------------------------------------------------------------
// 9. the -I link

#[test]
fn stale_link_is_replaced() {
    let dir = TempDir::new("pty-stale");
    let link = dir.path.join("tty");
    std::os::unix::fs::symlink("/nonexistent/klipper-mcu-test/pts/99", &link).unwrap();
    let mut m = Mcu::spawn_in(dir, &[]);
    let target = match m.wait_link(None, TIMEOUT) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    assert!(target.starts_with("/dev/pts"), "{}", target.display());
    m.open();
    m.identify();
    m.assert_alive();
}

#[test]
fn regular_file_at_link_path_is_refused() {
    let dir = TempDir::new("pty-file");
    let path = dir.path.join("tty");
    std::fs::write(&path, b"precious\n").unwrap();
    let mut m = Mcu::spawn_in(dir, &[]);
    let st = m
        .wait_exit(TIMEOUT)
        .unwrap_or_else(|| panic!("still running with a file at the -I path"));
    assert!(!st.success(), "exit status {st}");
    let err = m.stderr();
    assert!(
        err.contains(&path.display().to_string()),
        "stderr does not name {}: {err}",
        path.display()
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"precious\n");
    assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
}

#[test]
fn sigterm_exits_cleanly_and_unlinks() {
    let mut m = Mcu::start();
    m.assert_alive();
    m.signal(nix::sys::signal::Signal::SIGTERM);
    let st = m
        .wait_exit(TIMEOUT)
        .unwrap_or_else(|| panic!("still running after SIGTERM"));
    assert_eq!(
        st.code(),
        Some(0),
        "exit status {st}; stderr:\n{}",
        m.stderr()
    );
    assert!(
        std::fs::symlink_metadata(&m.link).is_err(),
        "{} still exists",
        m.link.display()
    );
}

/// SIGTERM must end the process whenever it arrives, also while the loop
/// is busy (between its check of the flag and its wait), as a regression
/// test: signals stay blocked except inside ppoll.
#[test]
fn sigterm_while_busy_exits() {
    let mut hung = Vec::new();
    for i in 0..60u64 {
        let mut m = Mcu::start();
        let p = m.encode("get_clock");
        let mut data = Vec::new();
        for _ in 0..600 {
            data.extend(m.codec.frame(&p));
        }
        m.write_raw(&data);
        let delay = (i % 20) * 10;
        std::thread::sleep(Duration::from_micros(delay));
        m.signal(nix::sys::signal::Signal::SIGTERM);
        if m.wait_exit(Duration::from_secs(2)).is_none() {
            let wchan = std::fs::read_to_string(format!("/proc/{}/wchan", m.pid()));
            hung.push((delay, wchan.unwrap_or_default()));
            if hung.len() >= 3 {
                break;
            }
        }
    }
    assert!(
        hung.is_empty(),
        "{} runs (of up to 60) still running 2 s after SIGTERM (delay us, wchan): {hung:?}",
        hung.len()
    );
}

// ---------------------------------------------------------------------------
// 10. a flood

#[test]
fn flood_of_nops() {
    let mut m = Mcu::start();
    let nop = m.encode("debug_nop");
    let cmds = vec![nop; 10_000];
    let first = m.codec.seq();
    let mut data = m.codec.frame_all(&cmds);
    let nblocks = cmds.len().div_ceil(59 / cmds[0].len());
    let p = m.encode("get_clock");
    data.extend(m.codec.frame(&p));
    m.write_raw(&data);
    m.wait_msg("clock");
    let acks = m.wait_acks(nblocks + 1);
    let want: Vec<u8> = (0..=nblocks)
        .map(|i| ack_of(((first as usize + i) & 0x0f) as u8))
        .collect();
    assert_eq!(acks.len(), want.len());
    assert_eq!(acks, want);
    m.settle(Duration::from_millis(100));
    assert!(m.acks.is_empty(), "extra acks/naks: {:02x?}", m.acks);
    assert!(!m.has_msg("shutdown"), "{:?}", m.msgs);
    assert_eq!(m.config().int("is_shutdown"), 0);
}

/// Commands are still read while the loop is busy with timers that never
/// leave it time to sleep (fast stepping): a `get_clock` sent in the middle
/// of a two-second step burst is answered long before the burst ends.
#[test]
fn commands_are_read_during_a_step_burst() {
    let mut m = Mcu::start_with(&["--sim"]);
    m.identify();
    m.send("allocate_oids count=1");
    m.send("config_stepper oid=0 step_pin=110 dir_pin=111 invert_step=-1 step_pulse_ticks=0");
    m.send("finalize_config crc=0");
    let now = m.request("get_clock", "clock").int("clock") as u32;
    let start = now.wrapping_add(5_000_000);
    // 100 ticks a step (2 us): too close together for the loop to sleep.
    m.send(&format!("reset_step_clock oid=0 clock={start}"));
    m.send("queue_step oid=0 interval=100 count=65535 add=0");
    m.send("queue_step oid=0 interval=100 count=65535 add=0");
    m.send("queue_step oid=0 interval=100 count=65535 add=0");
    // Well inside the burst (it runs from 0.1 s to 0.49 s after `now`).
    std::thread::sleep(Duration::from_millis(200));
    let c = m.request("get_clock", "clock").int("clock") as u32;
    let end = start.wrapping_add(3 * 65535 * 100);
    assert!(
        (c.wrapping_sub(end) as i32) < 0,
        "get_clock was answered only after the burst ({c} >= {end})"
    );
    let cfg = m.config();
    assert_eq!(cfg.int("is_shutdown"), 0, "{}", m.stderr());
}

//! The GPIO command families on the simulated board (`--sim`): digital
//! outputs and software PWM, steppers, endstops with trsync homing,
//! buttons and pulse counters, each checked against the semantics of the
//! reference (Klipper's gpiocmds.c, stepper.c, endstop.c, trsync.c,
//! buttons.c, pulse_counter.c). Output timing is read back from the
//! board's write history; inputs are driven through its control socket.
//! Each test starts its own MCU.

mod simboard;

use std::time::Duration;

use simboard::{assert_on_time, diff, median, ms, Board, LATE_TOLERANCE};

/// Comparisons between a clock from the simulator (history, `clock`) and
/// one from the MCU allow this much: `Board` corrects the simulator's
/// clock offset (see `sim_clock_is_the_mcu_clock`) with a lower bound that
/// may be off by a round trip or a stall of the measurement.
const SIM_CLOCK_SLACK: i64 = ms(1) as i64;

/// Writes of `pin` recorded after `since`, a simulator clock (take it with
/// `sim_clock()` after configuring: configuration writes come before).
fn writes_after(b: &mut Board, pin: u32, since: u32) -> Vec<(u32, u8)> {
    b.history(pin, 512)
        .into_iter()
        .filter(|&(c, _)| diff(c, since) > 0)
        .collect()
}

/// A simulated board (see [`Board::sim_realtime`]) configured with `cmds`
/// for `oids` object ids.
fn configured(oids: u32, cmds: &[String]) -> Board {
    let mut b = Board::sim_realtime();
    b.configure(oids, cmds);
    b
}

/// `config_digital_out` oid 0 on `pin`.
fn digital_out(pin: u32, value: u32, default: u32, max_duration: u32) -> String {
    format!(
        "config_digital_out oid=0 pin={pin} value={value} default_value={default} \
         max_duration={max_duration}"
    )
}

/// The simulator clock now (for [`writes_after`]) and an MCU clock 150 ms
/// ahead, to schedule from.
fn mark_and_start(b: &mut Board) -> (u32, u32) {
    let mark = b.sim_clock();
    let now = b.clock();
    (mark, now.wrapping_add(ms(150)))
}

/// Clocks of the writes of `value` among `w`.
fn edges(w: &[(u32, u8)], value: u8) -> Vec<u32> {
    w.iter().filter(|e| e.1 == value).map(|e| e.0).collect()
}

// ---------------------------------------------------------------------------
// Digital outputs

#[test]
fn digital_out_initial_level_and_queued_edges_on_time() {
    let mut b = configured(
        2,
        &[
            "config_digital_out oid=0 pin=17 value=1 default_value=0 max_duration=0".into(),
            "config_digital_out oid=1 pin=18 value=0 default_value=0 max_duration=0".into(),
        ],
    );
    b.assert_output(17, 1, "gpio17");
    b.assert_output(18, 0, "gpio18");

    let (mark, t) = mark_and_start(&mut b);
    // gpio17: off at t, then on/off every 10 ms; gpio18: on at t+10ms,
    // off at t+30ms.
    let ideal17: Vec<u32> = (0..6).map(|k| t + k * ms(10)).collect();
    let mut cmds: Vec<String> = ideal17
        .iter()
        .enumerate()
        .map(|(k, c)| format!("queue_digital_out oid=0 clock={c} on_ticks={}", k % 2))
        .collect();
    cmds.push(format!(
        "queue_digital_out oid=1 clock={} on_ticks=1",
        t + ms(10)
    ));
    cmds.push(format!(
        "queue_digital_out oid=1 clock={} on_ticks=0",
        t + ms(30)
    ));
    b.send_all(&cmds);
    b.wait_until_clock(t + ms(80));
    let w17 = writes_after(&mut b, 17, mark);
    assert_eq!(
        w17.iter().map(|e| e.1).collect::<Vec<_>>(),
        [0, 1, 0, 1, 0, 1],
        "{w17:?}"
    );
    assert_on_time(
        "gpio17",
        &w17.iter().map(|e| e.0).collect::<Vec<_>>(),
        &ideal17,
        LATE_TOLERANCE,
    );
    let w18 = writes_after(&mut b, 18, mark);
    assert_eq!(
        w18.iter().map(|e| e.1).collect::<Vec<_>>(),
        [1, 0],
        "{w18:?}"
    );
    assert_on_time(
        "gpio18",
        &w18.iter().map(|e| e.0).collect::<Vec<_>>(),
        &[t + ms(10), t + ms(30)],
        LATE_TOLERANCE,
    );
    assert_eq!(b.get(17).level, 1);
    assert_eq!(b.get(18).level, 0);
    b.assert_not_shutdown();
}

#[test]
fn update_and_set_digital_out_act_at_once() {
    let mut b = configured(
        1,
        &["config_digital_out oid=0 pin=20 value=0 default_value=0 max_duration=0".into()],
    );
    b.send("update_digital_out oid=0 value=1");
    // The MCU runs commands in order: once get_clock is answered, the
    // update is done.
    let c1 = b.clock();
    assert_eq!(b.get(20).level, 1);
    let last = *b.history(20, 1).last().unwrap();
    assert_eq!(last.1, 1);
    // (Up to the simulator's clock offset, see `sim_clock_is_the_mcu_clock`.)
    assert!(
        diff(last.0, c1) <= SIM_CLOCK_SLACK,
        "write at {} after clock {c1}",
        last.0
    );
    b.send("update_digital_out oid=0 value=0");
    b.clock();
    assert_eq!(b.get(20).level, 0);

    // set_digital_out: any line, no oid, at once.
    b.send("set_digital_out pin=21 value=1");
    b.clock();
    b.assert_output(21, 1, "gpio21");
    b.send("set_digital_out pin=21 value=0");
    b.clock();
    assert_eq!(b.get(21).level, 0);
    b.assert_not_shutdown();
}

#[test]
fn soft_pwm_cycle_and_duty() {
    let cycle = ms(2);
    let on = ms(2) / 4;
    let mut b = configured(
        1,
        &[
            "config_digital_out oid=0 pin=22 value=0 default_value=0 max_duration=0".into(),
            format!("set_digital_out_pwm_cycle oid=0 cycle_ticks={cycle}"),
        ],
    );
    let (mark, t) = mark_and_start(&mut b);
    let end = t + 20 * cycle;
    b.send_all(&[
        format!("queue_digital_out oid=0 clock={t} on_ticks={on}"),
        format!("queue_digital_out oid=0 clock={end} on_ticks=0"),
    ]);
    b.wait_until_clock(end + ms(30));
    let w = writes_after(&mut b, 22, mark);
    let rises = edges(&w, 1);
    let falls = edges(&w, 0);
    let ideal_rises: Vec<u32> = (0..20).map(|k| t + k * cycle).collect();
    let mut ideal_falls: Vec<u32> = ideal_rises.iter().map(|r| r + on).collect();
    // The final setting (off) is written at `end`, after the last fall.
    ideal_falls.push(end);
    assert_on_time("pwm rising edges", &rises, &ideal_rises, LATE_TOLERANCE);
    assert_on_time("pwm falling edges", &falls, &ideal_falls, LATE_TOLERANCE);
    // Rises are a cycle apart, pulses on_ticks long (medians: a stall of
    // the process may delay one edge).
    let spacing: Vec<i64> = rises.windows(2).map(|p| diff(p[1], p[0])).collect();
    let m = median(&spacing);
    assert!(
        (m - cycle as i64).abs() <= LATE_TOLERANCE as i64,
        "rise spacing {spacing:?}"
    );
    let width: Vec<i64> = rises
        .iter()
        .zip(&falls)
        .map(|(r, f)| diff(*f, *r))
        .collect();
    let m = median(&width);
    assert!(
        (m - on as i64).abs() <= LATE_TOLERANCE as i64,
        "pulse widths {width:?}"
    );
    // Stopped: no writes after the final one.
    let count = writes_after(&mut b, 22, mark).len();
    b.settle(Duration::from_millis(50));
    assert_eq!(writes_after(&mut b, 22, mark).len(), count);
    assert_eq!(b.get(22).level, 0);
    b.assert_not_shutdown();
}

#[test]
fn max_duration_returns_to_default_and_shuts_down() {
    let max = ms(50);
    let mut b = configured(1, &[digital_out(23, 0, 0, max)]);
    let (mark, t) = mark_and_start(&mut b);
    b.send(&format!("queue_digital_out oid=0 clock={t} on_ticks=1"));
    let (sclock, reason) = b.wait_shutdown();
    assert_eq!(reason, "Missed scheduling of next digital out event");
    let d = diff(sclock, t + max);
    assert!(
        (0..=simboard::MAX_LATE as i64).contains(&d),
        "shutdown at {sclock}, expected at {} (+{d})",
        t + max
    );
    let w = writes_after(&mut b, 23, mark);
    assert_eq!(w.iter().map(|e| e.1).collect::<Vec<_>>(), [1, 0], "{w:?}");
    assert_on_time(
        "max_duration",
        &[w[0].0, w[1].0],
        &[t, t + max],
        LATE_TOLERANCE,
    );
    assert_eq!(b.get(23).level, 0);
    let c = b.request("get_config", "config");
    assert_eq!(c.int("is_shutdown"), 1);
}

#[test]
fn update_digital_out_max_duration_expires() {
    let max = ms(40);
    let mut b = configured(1, &[digital_out(24, 1, 1, max)]);
    // Setting it to its default is not timed.
    b.send("update_digital_out oid=0 value=1");
    b.settle(Duration::from_millis(100));
    b.assert_not_shutdown();
    // Away from its default, not refreshed: back to default and shutdown.
    let c0 = b.clock();
    b.send("update_digital_out oid=0 value=0");
    let (sclock, reason) = b.wait_shutdown();
    assert_eq!(reason, "Missed scheduling of next digital out event");
    assert!(diff(sclock, c0) >= max as i64, "{sclock} vs {c0}");
    assert_eq!(b.get(24).level, 1);
}

#[test]
fn emergency_stop_returns_outputs_to_defaults() {
    let mut b = configured(
        4,
        &[
            "config_digital_out oid=0 pin=25 value=1 default_value=0 max_duration=0".into(),
            "config_digital_out oid=1 pin=26 value=0 default_value=1 max_duration=0".into(),
            "config_digital_out oid=2 pin=27 value=0 default_value=0 max_duration=0".into(),
            "config_digital_out oid=3 pin=28 value=0 default_value=0 max_duration=0".into(),
            format!("set_digital_out_pwm_cycle oid=3 cycle_ticks={}", ms(1)),
        ],
    );
    let now = b.clock();
    let t = now.wrapping_add(ms(150));
    b.send_all(&[
        format!("queue_digital_out oid=3 clock={t} on_ticks={}", ms(1) / 2),
        // Pending when the stop comes: must never happen.
        format!("queue_digital_out oid=2 clock={} on_ticks=1", t + ms(100)),
    ]);
    b.wait_until_clock(t + ms(20));
    assert!(b.get(28).rises >= 5, "soft PWM is not running");
    b.send("emergency_stop");
    let (_, reason) = b.wait_shutdown();
    assert_eq!(reason, "Command request");
    let stop = b.sim_clock();
    assert_eq!(b.get(25).level, 0, "gpio25 not back to default 0");
    assert_eq!(b.get(26).level, 1, "gpio26 not back to default 1");
    assert_eq!(b.get(28).level, 0, "PWM gpio28 not back to default 0");
    b.wait_until_clock(t + ms(150));
    assert_eq!(b.get(27).level, 0, "a queued event ran after shutdown");
    assert!(
        writes_after(&mut b, 28, stop).is_empty(),
        "soft PWM still toggling after shutdown"
    );
    assert!(writes_after(&mut b, 27, stop).is_empty());
}

// ---------------------------------------------------------------------------
// Steppers

const STEP: u32 = 30;
const DIR: u32 = 31;

/// Ideal step times of a move starting from `last` (reset clock or the
/// previous step): interval, then interval+add, ...
fn step_times(last: u32, interval: u32, count: u32, add: i32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut t = last;
    let mut iv = interval;
    for _ in 0..count {
        t = t.wrapping_add(iv);
        out.push(t);
        iv = iv.wrapping_add(add as u32);
    }
    out
}

fn stepper_board(invert_step: i32, pulse: u32) -> Board {
    configured(
        1,
        &[format!(
            "config_stepper oid=0 step_pin={STEP} dir_pin={DIR} invert_step={invert_step} \
             step_pulse_ticks={pulse}"
        )],
    )
}

fn position(b: &mut Board) -> i64 {
    b.request("stepper_get_position oid=0", "stepper_position")
        .int("pos")
}

#[test]
fn stepper_steps_follow_interval_add_and_direction() {
    let mut b = stepper_board(0, 100);
    assert_eq!(position(&mut b), 0);
    let (mark, t0) = mark_and_start(&mut b);
    let (i1, n1, a1) = (ms(1), 20, 2_000);
    let (i2, n2, a2) = (ms(2), 12, -3_000);
    b.send_all(&[
        format!("reset_step_clock oid=0 clock={t0}"),
        "set_next_step_dir oid=0 dir=1".into(),
        format!("queue_step oid=0 interval={i1} count={n1} add={a1}"),
        "set_next_step_dir oid=0 dir=0".into(),
        format!("queue_step oid=0 interval={i2} count={n2} add={a2}"),
    ]);
    let mut ideal = step_times(t0, i1, n1, a1);
    let last1 = *ideal.last().unwrap();
    ideal.extend(step_times(last1, i2, n2, a2));
    let done = *ideal.last().unwrap();
    b.wait_until_clock(done + ms(20));

    let w = writes_after(&mut b, STEP, mark);
    let rises = edges(&w, 1);
    assert_eq!(rises.len(), (n1 + n2) as usize, "step writes {w:?}");
    assert_on_time("step rising edges", &rises, &ideal, LATE_TOLERANCE);
    // Each step is a pulse: writes alternate 1, 0, and the line ends low.
    for (k, e) in w.iter().enumerate() {
        assert_eq!(e.1, if k % 2 == 0 { 1 } else { 0 }, "{w:?}");
    }
    let st = b.get(STEP);
    assert_eq!((st.level, st.rises), (0, n1 + n2), "{st:?}");

    // Direction: high before the first move's first step, low between the
    // last step of the first move and the first of the second.
    let d = writes_after(&mut b, DIR, mark);
    assert_eq!(d.iter().map(|e| e.1).collect::<Vec<_>>(), [1, 0], "{d:?}");
    assert!(diff(d[0].0, rises[0]) < 0, "dir {d:?} steps {rises:?}");
    let k = n1 as usize;
    assert!(
        diff(d[1].0, rises[k - 1]) > 0 && diff(d[1].0, rises[k]) < 0,
        "dir change at {} not between steps {} and {}",
        d[1].0,
        rises[k - 1],
        rises[k]
    );
    // Reference convention: dir=1 steps count up, dir=0 steps count down.
    assert_eq!(position(&mut b), n1 as i64 - n2 as i64);
    b.assert_not_shutdown();
}

#[test]
fn stepper_position_counts_down_with_dir_zero() {
    let mut b = stepper_board(0, 100);
    let now = b.clock();
    let t0 = now.wrapping_add(ms(100));
    b.send_all(&[
        format!("reset_step_clock oid=0 clock={t0}"),
        format!("queue_step oid=0 interval={} count=7 add=0", ms(1)),
    ]);
    b.wait_until_clock(t0 + ms(30));
    assert_eq!(position(&mut b), -7);
    assert_eq!(b.get(DIR).level, 0);
    assert_eq!(b.get(STEP).rises, 7);
}

#[test]
fn stepper_both_edge_counts_every_toggle() {
    let mut b = stepper_board(-1, 0);
    let both = b.dict().constant("STEPPER_STEP_BOTH_EDGE").cloned();
    assert_eq!(both.and_then(|v| v.as_i64()), Some(1));
    let (mark, t0) = mark_and_start(&mut b);
    let n = 15;
    b.send_all(&[
        format!("reset_step_clock oid=0 clock={t0}"),
        format!("queue_step oid=0 interval={} count={n} add=0", ms(1)),
    ]);
    let ideal = step_times(t0, ms(1), n, 0);
    b.wait_until_clock(ideal[n as usize - 1] + ms(20));
    let w = writes_after(&mut b, STEP, mark);
    assert_eq!(w.len(), n as usize, "one write per step: {w:?}");
    for (k, e) in w.iter().enumerate() {
        assert_eq!(e.1, if k % 2 == 0 { 1 } else { 0 }, "toggles: {w:?}");
    }
    let times: Vec<u32> = w.iter().map(|e| e.0).collect();
    assert_on_time("both-edge steps", &times, &ideal, LATE_TOLERANCE);
    assert_eq!(position(&mut b), -(n as i64));
    b.assert_not_shutdown();
}

/// A stepper board (see [`stepper_board`], 100-tick pulses) sent, in one
/// go, `reset_step_clock` at `from(now)` and then `moves(t0)` (t0: now +
/// 100 ms) shuts down for `reason`; returns the board and t0.
fn steps_shut_down(
    from: impl FnOnce(u32) -> u32,
    moves: impl FnOnce(u32) -> Vec<String>,
    reason: &str,
) -> (Board, u32) {
    let mut b = stepper_board(0, 100);
    let now = b.clock();
    let t0 = now.wrapping_add(ms(100));
    let mut cmds = vec![format!("reset_step_clock oid=0 clock={}", from(now))];
    cmds.extend(moves(t0));
    b.send_all(&cmds);
    let (_, why) = b.wait_shutdown();
    assert_eq!(why, reason);
    (b, t0)
}

/// now + 100 ms, the usual start of a move (see [`steps_shut_down`]).
fn soon(now: u32) -> u32 {
    now.wrapping_add(ms(100))
}

#[test]
fn queue_step_with_zero_count_shuts_down() {
    let (mut b, _) = steps_shut_down(
        soon,
        |_| vec![format!("queue_step oid=0 interval={} count=0 add=0", ms(1))],
        "Invalid count parameter",
    );
    assert_eq!(b.get(STEP).rises, 0);
}

#[test]
fn step_clock_in_the_past_is_timer_too_close() {
    steps_shut_down(
        |now| now.wrapping_sub(ms(50)),
        |_| vec!["queue_step oid=0 interval=100 count=5 add=0".into()],
        "Timer too close",
    );
}

#[test]
fn next_move_far_before_last_step_is_too_far_in_past() {
    // The second move's first step would be 10 ms before the first
    // move's last step (a wrapped interval): more than the 1000 us the
    // reference allows.
    let back = 0u32.wrapping_sub(ms(10));
    let (mut b, _) = steps_shut_down(
        soon,
        |_| {
            vec![
                format!("queue_step oid=0 interval={} count=2 add=0", ms(1)),
                format!("queue_step oid=0 interval={back} count=1 add=0"),
            ]
        },
        "Stepper too far in past",
    );
    assert_eq!(b.get(STEP).rises, 2);
}

#[test]
fn reset_step_clock_while_active_shuts_down() {
    let (mut b, t0) = steps_shut_down(
        soon,
        |t0| {
            vec![
                format!("queue_step oid=0 interval={} count=1000 add=0", ms(1)),
                format!("reset_step_clock oid=0 clock={}", t0 + ms(5)),
            ]
        },
        "Can't reset time when stepper active",
    );
    // Shutdown stops the stepper before it starts.
    b.wait_until_clock(t0 + ms(20));
    assert_eq!(b.get(STEP).rises, 0);
}

// ---------------------------------------------------------------------------
// Endstops and trsync

#[test]
fn endstop_pull_up_and_query_state() {
    let mut b = configured(
        3,
        &[
            "config_endstop oid=0 pin=110 pull_up=1".into(),
            "config_endstop oid=1 pin=111 pull_up=0".into(),
            "config_endstop oid=2 pin=112 pull_up=-1".into(),
        ],
    );
    let p = b.get(110);
    assert_eq!((p.bias.as_str(), p.output, p.level), ("pull-up", 0, 1));
    assert_eq!(b.get(111).bias, "as-is");
    assert_eq!(b.get(112).bias, "pull-down");
    let q = |b: &mut Board| b.request("endstop_query_state oid=0", "endstop_state");
    let r = q(&mut b);
    assert_eq!((r.int("pin_value"), r.int("homing")), (1, 0), "{r:?}");
    b.set(110, 0);
    assert_eq!(q(&mut b).int("pin_value"), 0);
    b.set(110, 1);
    assert_eq!(q(&mut b).int("pin_value"), 1);
}

const H_STEP: u32 = 50;
const H_DIR: u32 = 51;
const H_ENDSTOP: u32 = 52;

/// [`homing_board`] sent, in one go, trsync_start of oid 2 at t0 = now +
/// 100 ms (no periodic report, `expire_reason`) and `cmds(t0)`; returns
/// the board and t0.
fn homing_from(expire_reason: u32, cmds: impl FnOnce(u32) -> Vec<String>) -> (Board, u32) {
    let mut b = homing_board();
    let t0 = b.clock().wrapping_add(ms(100));
    let mut all = vec![format!(
        "trsync_start oid=2 report_clock={t0} report_ticks=0 expire_reason={expire_reason}"
    )];
    all.extend(cmds(t0));
    b.send_all(&all);
    (b, t0)
}

/// The stepper stops when trsync 2 triggers; 1000 steps 1 ms apart from
/// `t0`.
fn stepping_stops_on_trigger(t0: u32) -> Vec<String> {
    vec![
        "stepper_stop_on_trigger oid=0 trsync_oid=2".into(),
        format!("reset_step_clock oid=0 clock={t0}"),
        format!("queue_step oid=0 interval={} count=1000 add=0", ms(1)),
    ]
}

/// Stepper oid 0, endstop oid 1 (pulled up), trsync oid 2.
fn homing_board() -> Board {
    configured(
        3,
        &[
            format!(
                "config_stepper oid=0 step_pin={H_STEP} dir_pin={H_DIR} invert_step=0 \
                 step_pulse_ticks=100"
            ),
            format!("config_endstop oid=1 pin={H_ENDSTOP} pull_up=1"),
            "config_trsync oid=2".into(),
        ],
    )
}

#[test]
fn homing_stops_the_stepper_when_the_endstop_triggers() {
    let mut b = homing_board();
    let (mark, t0) = mark_and_start(&mut b);
    let report = ms(10);
    b.send_all(&[
        format!("trsync_start oid=2 report_clock={t0} report_ticks={report} expire_reason=4"),
        "stepper_stop_on_trigger oid=0 trsync_oid=2".into(),
        format!(
            "trsync_set_timeout oid=2 clock={}",
            t0.wrapping_add(ms(10_000))
        ),
        format!(
            "endstop_home oid=1 clock={t0} sample_ticks=500 sample_count=4 rest_ticks=5000 \
             pin_value=0 trsync_oid=2 trigger_reason=1"
        ),
        format!("reset_step_clock oid=0 clock={t0}"),
        "set_next_step_dir oid=0 dir=1".into(),
        format!("queue_step oid=0 interval={} count=2000 add=0", ms(1)),
    ]);
    // Periodic reports while armed.
    let mut clocks = Vec::new();
    for _ in 0..3 {
        let r = b.wait_msg("trsync_state");
        assert_eq!((r.int("oid"), r.int("can_trigger")), (2, 1), "{r:?}");
        clocks.push(r.int("clock") as u32);
    }
    for p in clocks.windows(2) {
        let d = diff(p[1], p[0]);
        assert!(
            d > 0 && d < 4 * report as i64,
            "report clocks not about {report} apart: {clocks:?}"
        );
    }
    assert!(diff(clocks[0], t0) >= 0, "report before report_clock");

    let q = b.request("endstop_query_state oid=1", "endstop_state");
    assert_eq!((q.int("homing"), q.int("pin_value")), (1, 1), "{q:?}");

    // Let it step a while, then hit the endstop.
    b.wait_until_clock(t0 + ms(60));
    assert!(b.get(H_STEP).rises >= 40);
    b.set(H_ENDSTOP, 0);
    let r = b.wait_msg_where("trsync_state", |r| r.int("can_trigger") == 0);
    assert_eq!((r.int("oid"), r.int("trigger_reason")), (2, 1), "{r:?}");
    let trig = r.int("clock") as u32;

    let st = b.get(H_STEP);
    assert!(
        st.rises > 40 && st.rises < 2000,
        "stepper did not stop mid-move: {st:?}"
    );
    assert_eq!(st.level, 0, "step line not back to idle");
    let w = writes_after(&mut b, H_STEP, mark);
    let last_rise = *edges(&w, 1).last().unwrap();
    assert!(
        diff(last_rise, trig) <= SIM_CLOCK_SLACK,
        "a step after the trigger"
    );
    let pos = position(&mut b);
    assert_eq!(pos, st.rises as i64, "position vs step edges counted");
    assert_eq!(b.get(H_DIR).level, 0, "stop resets the direction line");

    // Stopped for good, and further moves are dropped until
    // reset_step_clock.
    b.settle(Duration::from_millis(30));
    assert_eq!(b.get(H_STEP).rises, st.rises);
    let c = b.clock();
    b.send(&format!(
        "queue_step oid=0 interval={} count=10 add=0",
        ms(1)
    ));
    b.wait_until_clock(c + ms(100));
    assert_eq!(b.get(H_STEP).rises, st.rises, "queue_step not ignored");
    assert_eq!(position(&mut b), pos);

    let c = b.clock();
    let t1 = c.wrapping_add(ms(100));
    b.send_all(&[
        format!("reset_step_clock oid=0 clock={t1}"),
        "set_next_step_dir oid=0 dir=1".into(),
        format!("queue_step oid=0 interval={} count=10 add=0", ms(1)),
    ]);
    b.wait_until_clock(t1 + ms(30));
    assert_eq!(b.get(H_STEP).rises, st.rises + 10);
    assert_eq!(position(&mut b), pos + 10);
    b.assert_not_shutdown();
}

#[test]
fn endstop_needs_sample_count_consecutive_matches() {
    // 4 samples 20 ms apart: a glitch shorter than that never triggers.
    let (mut b, t0) = homing_from(4, |t0| {
        vec![format!(
            "endstop_home oid=1 clock={t0} sample_ticks={} sample_count=4 rest_ticks={} \
             pin_value=0 trsync_oid=2 trigger_reason=1",
            ms(20),
            ms(5)
        )]
    });
    b.wait_until_clock(t0 + ms(20));
    b.set(H_ENDSTOP, 0);
    b.set(H_ENDSTOP, 1);
    let got = b.try_wait_msg("trsync_state", &|_| true, Duration::from_millis(300));
    assert!(got.is_none(), "glitch triggered: {got:?}");
    let set_at = b.sim_clock();
    b.set(H_ENDSTOP, 0);
    let r = b.wait_msg("trsync_state");
    assert_eq!((r.int("can_trigger"), r.int("trigger_reason")), (0, 1));
    // First match, then three more samples sample_ticks apart.
    let d = diff(r.int("clock") as u32, set_at);
    assert!(
        d >= 3 * ms(20) as i64 - SIM_CLOCK_SLACK,
        "triggered after only {d} ticks"
    );
}

#[test]
fn trsync_timeout_triggers_with_expire_reason() {
    let (mut b, t0) = homing_from(3, |t0| {
        let mut cmds = stepping_stops_on_trigger(t0);
        cmds.insert(1, format!("trsync_set_timeout oid=2 clock={}", t0 + ms(50)));
        cmds
    });
    let expire = t0 + ms(50);
    let r = b.wait_msg("trsync_state");
    assert_eq!(
        (r.int("oid"), r.int("can_trigger"), r.int("trigger_reason")),
        (2, 0, 3),
        "{r:?}"
    );
    assert!(diff(r.int("clock") as u32, expire) >= 0, "{r:?}");
    let rises = b.get(H_STEP).rises;
    assert!(
        (40..=60).contains(&rises),
        "about 50 steps before the timeout, got {rises}"
    );
    b.settle(Duration::from_millis(30));
    assert_eq!(b.get(H_STEP).rises, rises, "stepper not stopped");
    assert_eq!(position(&mut b), -(rises as i64));
    b.assert_not_shutdown();
}

#[test]
fn trsync_trigger_from_host_answers_at_once() {
    let (mut b, t0) = homing_from(3, stepping_stops_on_trigger);
    b.wait_until_clock(t0 + ms(20));
    let r = b.request("trsync_trigger oid=2 reason=2", "trsync_state");
    assert_eq!(
        (
            r.int("oid"),
            r.int("can_trigger"),
            r.int("trigger_reason"),
            r.int("clock")
        ),
        (2, 0, 2, 0),
        "{r:?}"
    );
    let rises = b.get(H_STEP).rises;
    assert!(rises > 0 && rises < 1000);
    // Exactly one report, and the stepper stays stopped.
    b.assert_none_for(Duration::from_millis(100), "trsync_state", "extra reports");
    assert_eq!(b.get(H_STEP).rises, rises);
    // Triggering again reports the first reason (it cannot trigger twice).
    let r = b.request("trsync_trigger oid=2 reason=5", "trsync_state");
    assert_eq!((r.int("can_trigger"), r.int("trigger_reason")), (0, 2));
    b.assert_not_shutdown();
}

// ---------------------------------------------------------------------------
// Buttons

/// Two buttons (lines 120 and 121) sampled `rest` ticks apart from 100 ms
/// from now, waited for until `wait` ticks after that start.
fn buttons_queried(rest: u32, retransmit_count: u32, wait: u32) -> Board {
    let mut b = configured(
        1,
        &[
            "config_buttons oid=0 button_count=2".into(),
            "buttons_add oid=0 pos=0 pin=120 pull_up=0".into(),
            "buttons_add oid=0 pos=1 pin=121 pull_up=0".into(),
        ],
    );
    let t0 = b.clock().wrapping_add(ms(100));
    b.send(&format!(
        "buttons_query oid=0 clock={t0} rest_ticks={rest} retransmit_count={retransmit_count} \
         invert=0"
    ));
    b.wait_until_clock(t0 + wait);
    b
}

#[test]
fn buttons_report_changes_with_ack_count() {
    // The longest retransmit window (127 samples): the acks below come in
    // well before it runs out (see `buttons_retransmit_until_acked`).
    let mut b = buttons_queried(ms(2), 127, ms(20));
    b.settle(Duration::from_millis(20));
    assert!(
        b.take_all("buttons_state").is_empty(),
        "report without change"
    );

    b.set(120, 1);
    let r = b.wait_msg("buttons_state");
    b.send("buttons_ack oid=0 count=1");
    assert_eq!((r.int("oid"), r.int("ack_count")), (0, 0), "{r:?}");
    assert_eq!(r.bytes("state"), [0x01]);

    b.set(121, 1);
    let r = b.wait_msg("buttons_state");
    b.send("buttons_ack oid=0 count=1");
    assert_eq!(r.int("ack_count"), 1, "{r:?}");
    assert_eq!(r.bytes("state"), [0x03]);

    b.set(120, 0);
    let r = b.wait_msg("buttons_state");
    b.send("buttons_ack oid=0 count=1");
    assert_eq!(r.int("ack_count"), 2, "{r:?}");
    assert_eq!(r.bytes("state"), [0x02]);

    // All acknowledged: nothing more, even after the retransmit window.
    b.assert_none_for(
        Duration::from_millis(400),
        "buttons_state",
        "sent again after ack",
    );
    b.assert_not_shutdown();
}

/// buttons.c retransmits an unacknowledged report every
/// retransmit_count+1 samples: the retransmit state counts down through
/// 0 to 0xff (uint8 wrap-around). Regression test: a plain `- 1` on the
/// u8 once panicked in debug builds here instead of retransmitting.
#[test]
fn buttons_retransmit_until_acked() {
    let rest = ms(2);
    let retransmit = 10u32;
    let mut b = buttons_queried(rest, retransmit, ms(20));
    b.set(120, 1);
    let r = b.wait_msg("buttons_state");
    assert_eq!((r.int("ack_count"), r.bytes("state")), (0, &[1u8][..]));
    // Not acknowledged: sent again every retransmit_count+1 samples.
    let mut at = vec![b.sim_clock()];
    for _ in 0..2 {
        let r = b.wait_msg("buttons_state");
        at.push(b.sim_clock());
        assert_eq!((r.int("ack_count"), r.bytes("state")), (0, &[1u8][..]));
    }
    let period = diff(at[2], at[1]);
    let want = ((retransmit + 1) * rest) as i64;
    assert!(
        period > want / 2 && period < want * 4,
        "retransmitted {period} ticks apart, expected about {want}"
    );
    // After the ack: no more.
    b.send("buttons_ack oid=0 count=1");
    b.settle(Duration::from_millis(20));
    b.take_all("buttons_state");
    b.assert_none_for(
        Duration::from_millis(150),
        "buttons_state",
        "retransmitted after ack",
    );
    b.assert_not_shutdown();
}

#[test]
fn buttons_debounce_ignores_a_single_sample() {
    // Samples 100 ms apart: a short glitch is seen by one sample at most,
    // and a change needs two equal samples in a row.
    let rest = ms(100);
    let mut b = buttons_queried(rest, 50, ms(50));
    b.set(120, 1);
    b.set(120, 0);
    b.assert_none_for(
        Duration::from_millis(600),
        "buttons_state",
        "glitch reported",
    );
    let set_at = b.sim_clock();
    b.set(121, 1);
    let r = b.wait_msg("buttons_state");
    let seen = b.sim_clock();
    assert_eq!(r.bytes("state"), [0x02]);
    // Two samples must see it: at least one full rest interval.
    assert!(
        diff(seen, set_at) >= rest as i64,
        "reported after {} ticks, before a second sample",
        diff(seen, set_at)
    );
}

// ---------------------------------------------------------------------------
// Pulse counters

#[test]
fn counter_counts_changes() {
    let mut b = configured(1, &["config_counter oid=0 pin=130 pull_up=0".into()]);
    let poll = ms(1);
    let sample = ms(20);
    let t0 = b.clock().wrapping_add(ms(100));
    b.send(&format!(
        "query_counter oid=0 clock={t0} poll_ticks={poll} sample_ticks={sample}"
    ));
    let first = b.wait_msg("counter_state");
    assert_eq!(first.int("count"), 0, "{first:?}");
    let next = first.int("next_clock") as u32;
    assert_eq!(
        diff(next, t0) % poll as i64,
        0,
        "next_clock off the poll grid"
    );

    let changes = 7;
    let mut last_set = 0;
    for k in 0..changes {
        last_set = b.sim_clock();
        b.set(130, (k % 2 == 0) as u8);
        // Longer than poll_ticks: every change is seen.
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = b.sim_clock();
    b.take_all("counter_state");
    let r = b.wait_msg_where("counter_state", |r| r.int("count") == changes);
    let cc = r.int("count_clock") as u32;
    let nc = r.int("next_clock") as u32;
    assert!(
        // count_clock is the scheduled poll time; a late poll may see a
        // change made just after it.
        diff(cc, last_set) >= -((2 * poll) as i64) - SIM_CLOCK_SLACK
            && diff(cc, after) <= ms(2) as i64,
        "count_clock {cc} not after the last change ({last_set}..{after})"
    );
    assert!(diff(nc, cc) > 0, "next_clock {nc} before count_clock {cc}");
    assert_eq!(
        diff(cc, t0) % poll as i64,
        0,
        "count_clock off the poll grid"
    );
    assert_eq!(
        diff(nc, t0) % poll as i64,
        0,
        "next_clock off the poll grid"
    );
    // Reports keep coming about sample_ticks apart, the count stays.
    let r2 = b.wait_msg_where("counter_state", |r| {
        diff(r.int("next_clock") as u32, nc) > 0
    });
    assert_eq!(r2.int("count"), changes);
    assert_eq!(r2.int("count_clock") as u32, cc);
    // The events are sample_ticks plus one poll apart. A report carries
    // the timer's next wake time as of when the task sends it (so does
    // the reference's): a task that runs late (an emulated MCU on busy
    // cores: CI once saw 2 polls) moves it on by the polls in between.
    let gap = diff(r2.int("next_clock") as u32, nc);
    let late = ms(10) as i64;
    assert!(
        (gap - (sample + poll) as i64).abs() <= late && gap % poll as i64 == 0,
        "reports {gap} ticks apart, sample_ticks {sample}, poll_ticks {poll}"
    );
    b.assert_not_shutdown();
}

// ---------------------------------------------------------------------------
// The simulator itself

/// The control socket reports `history` and `clock` in MCU clock ticks:
/// a `clock` request answered before a `get_clock` must not read later
/// than it. Regression test: the simulated board once started a clock of
/// its own, milliseconds ahead of the MCU's.
#[test]
fn sim_clock_is_the_mcu_clock() {
    let mut b = Board::sim_realtime();
    for _ in 0..20 {
        let s = b.raw_sim_clock();
        let c = b.clock();
        assert!(
            diff(c, s) >= 0,
            "get_clock {c} answered after sim clock {s} reads {} ticks earlier",
            -diff(c, s)
        );
    }
}

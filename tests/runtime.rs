//! The main loop's scheduler, driven in-process (no pty, no child
//! process): steppers configured through `dispatch_block` step on the
//! simulated board when `runtime::run_timers` runs their timers.

use std::ffi::CString;
use std::time::{Duration, Instant};

use klipper_mcu::commands::{registry, Dialect};
use klipper_mcu::hw::Board;
use klipper_mcu::mcu::Mcu;
use klipper_mcu::runtime;
use klipper_protocol::dictionary::Dictionary;
use klipper_protocol::host::HostCodec;

fn send(mcu: &mut Mcu, codec: &mut HostCodec, cmds: &[String]) {
    let enc: Vec<Vec<u8>> = cmds.iter().map(|c| codec.encode_text(c).unwrap()).collect();
    let block = codec.frame_all(&enc);
    mcu.dispatch_block(&block);
    let n = mcu.out.pending().len();
    mcu.out.consume(n);
}

#[test]
fn steppers_step_on_time_in_process() {
    let reg = registry(Dialect::Klipper);
    let mut codec = HostCodec::new();
    codec.dict = Dictionary::from_compressed(&reg.dictionary).unwrap();
    let tmp = std::env::temp_dir();
    let (board, state) = Board::sim(tmp.clone(), tmp);
    let mut mcu = Mcu::new(reg, vec![CString::new("t").unwrap()], board);
    let (steps, interval) = (50u32, 2_000u32);
    send(&mut mcu, &mut codec, &["allocate_oids count=4".into()]);
    for oid in 0..2 {
        let (step, dir) = (10 + 2 * oid, 11 + 2 * oid);
        send(
            &mut mcu,
            &mut codec,
            &[format!(
                "config_stepper oid={oid} step_pin={step} dir_pin={dir} invert_step=0 step_pulse_ticks=100"
            )],
        );
    }
    send(&mut mcu, &mut codec, &["finalize_config crc=0".into()]);
    // Far enough ahead that a loaded machine still queues in time.
    let start = mcu.clock.now().wrapping_add(25_000_000);
    for oid in 0..2 {
        send(
            &mut mcu,
            &mut codec,
            &[
                format!("reset_step_clock oid={oid} clock={start}"),
                format!("queue_step oid={oid} interval={interval} count={steps} add=0"),
            ],
        );
    }
    let t0 = Instant::now();
    while !mcu.timers.is_empty() && t0.elapsed() < Duration::from_secs(30) {
        runtime::run_timers(&mut mcu, runtime::TIMER_MIN_TRY_TICKS);
        mcu.run_tasks();
    }
    assert!(!mcu.is_shutdown());
    assert!(mcu.timers.is_empty(), "timers left after 30 s");
    let st = state.borrow();
    for pin in [10u32, 12] {
        let rises: Vec<_> = st
            .history(pin, 1000)
            .into_iter()
            .filter(|e| e.value)
            .collect();
        assert_eq!(rises.len(), steps as usize, "pin {pin}");
        // Every step at or after its scheduled time, never before.
        for (k, e) in rises.iter().enumerate() {
            let due = start.wrapping_add(interval * (k as u32 + 1));
            assert!(e.clock.wrapping_sub(due) as i32 >= 0, "step {k} early");
        }
    }
}

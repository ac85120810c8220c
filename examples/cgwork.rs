//! A fixed in-process workload for instruction counts (callgrind):
//! `cgwork dispatch` dispatches 100 000 `debug_nop`; `cgwork steppers N`
//! runs N steppers through 20 000 steps each on the simulated board (or,
//! with `linux` last, through the GPIO character device).
//! Run: `valgrind --tool=callgrind target/release/examples/cgwork steppers 3`.

use std::ffi::CString;

use klipper_mcu::commands::modules;
use klipper_mcu::hw::Board;
use klipper_mcu::mcu::Mcu;
use klipper_mcu::mcu::Registry;
use klipper_mcu::sched::TimerResult;
use klipper_protocol::dictionary::Dictionary;
use klipper_protocol::host::HostCodec;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let registry: &'static Registry = Box::leak(Box::new(Registry::new(&modules())));
    let mut codec = HostCodec::new();
    codec.dict = Dictionary::from_compressed(&registry.dictionary).unwrap();
    let tmp = std::env::temp_dir();
    // `linux` as the last argument: this computer's GPIO character device
    // (run it under shared/tools/fakegpio.c's preload), as the binary does.
    let board = if args.last().is_some_and(|a| a == "linux") {
        Board::linux("/dev".into(), "/sys".into())
    } else {
        Board::sim(tmp.clone(), tmp).0
    };
    let mut mcu = Mcu::new(registry, vec![CString::new("cgwork").unwrap()], board);
    let mut send = |mcu: &mut Mcu, cmds: &[&str]| {
        let enc: Vec<Vec<u8>> = cmds.iter().map(|c| codec.encode_text(c).unwrap()).collect();
        let block = codec.frame_all(&enc);
        mcu.dispatch_block(&block);
        let n = mcu.out.pending().len();
        mcu.out.consume(n);
    };
    match args.get(1).map(String::as_str) {
        Some("dispatch") => {
            let nops: Vec<&str> = vec!["debug_nop"; 50];
            for _ in 0..2000 {
                send(&mut mcu, &nops);
            }
        }
        _ => {
            let n: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
            send(&mut mcu, &["allocate_oids count=10"]);
            for i in 0..n {
                let c = format!(
                    "config_stepper oid={i} step_pin={} dir_pin={} invert_step=0 step_pulse_ticks=40",
                    2 * i + 10,
                    2 * i + 11
                );
                send(&mut mcu, &[&c]);
            }
            send(&mut mcu, &["finalize_config crc=0"]);
            let start = mcu.clock.now().wrapping_add(50_000_000);
            for i in 0..n {
                send(
                    &mut mcu,
                    &[&format!("reset_step_clock oid={i} clock={start}")],
                );
                for _ in 0..20 {
                    send(
                        &mut mcu,
                        &[&format!(
                            "queue_step oid={i} interval=50000 count=1000 add=0"
                        )],
                    );
                }
            }
            let mut events = 0u64;
            while let Some((waketime, id)) = mcu.timers.pop() {
                events += 1;
                match mcu.run_timer(id, waketime) {
                    Ok(TimerResult::Reschedule(t)) => mcu.timers.insert(id, t),
                    Ok(TimerResult::Done) => {}
                    Err(r) => panic!("{r:?}"),
                }
            }
            assert!(!mcu.is_shutdown());
            println!("{events} timer events");
        }
    }
}

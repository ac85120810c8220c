//! Random commands with random arguments never panic the MCU: every
//! command of the dictionary is dispatched, in-process against the
//! simulated board, with random (mostly small, sometimes extreme) integers
//! and random buffers, and due timers are run in between, as the loop
//! would. Errors must end in a shutdown, which is then cleared.

use std::ffi::CString;

use klipper_mcu::commands::modules;
use klipper_mcu::hw::Board;
use klipper_mcu::mcu::Mcu;
use klipper_mcu::mcu::Registry;
use klipper_mcu::sched::TimerResult;
use klipper_protocol::block::{frame_vec, MESSAGE_DEST, MESSAGE_PAYLOAD_MAX};
use klipper_protocol::dictionary::Dictionary;
use klipper_protocol::format::ParamType;
use klipper_protocol::vlq;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Mostly small values (oids, pins, counts), sometimes anything.
    fn int(&mut self) -> u32 {
        match self.below(10) {
            0 => self.next() as u32,
            1 => u32::MAX - self.below(4) as u32,
            2..=4 => self.below(300) as u32,
            _ => self.below(8) as u32,
        }
    }
}

/// Commands that would end or stall the test process: re-execution, and
/// the bit-banged buses whose delays the host sets (bounded, but random
/// 32-bit delays would take minutes).
const SKIP: &[&str] = &["config_reset", "spi_set_sw_bus", "i2c_set_sw_bus"];

#[test]
fn random_commands_never_panic() {
    for seed in 1..=4u64 {
        run(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), 60_000);
    }
}

fn run(seed: u64, rounds: usize) {
    let registry: &'static Registry = Box::leak(Box::new(Registry::new(&modules())));
    let dict = Dictionary::from_compressed(&registry.dictionary).unwrap();
    let sysfs = std::env::temp_dir().join(format!("kmcu_fuzz_{}", std::process::id()));
    std::fs::create_dir_all(&sysfs).unwrap();
    let (board, _state) = Board::sim(sysfs.clone(), sysfs.clone());
    let mut mcu = Mcu::new(registry, vec![CString::new("klipper_mcu").unwrap()], board);
    let cmds: Vec<_> = dict
        .commands
        .values()
        .filter(|m| !SKIP.contains(&m.format.name.as_str()))
        .cloned()
        .collect();
    let mut rng = Rng(seed);
    let mut seq = 0u8;
    let (mut shutdowns, mut dispatched) = (0, 0);
    for round in 0..rounds {
        // Start over now and then, so that configuration commands run too.
        if round % 3000 == 0 {
            mcu.oids = None;
            mcu.move_count = 0;
        }
        let m = &cmds[rng.below(cmds.len() as u64) as usize];
        let mut payload = Vec::new();
        let mut id = [0u8; 2];
        let n = vlq::encode_msgid(m.id, &mut id);
        payload.extend_from_slice(&id[..n]);
        for (_, t) in &m.format.params {
            match t {
                ParamType::Buffer | ParamType::String | ParamType::ProgmemBuffer => {
                    let len = rng.below(24) as usize;
                    payload.push(len as u8);
                    payload.extend((0..len).map(|_| rng.next() as u8));
                }
                _ => vlq::push(rng.int(), &mut payload),
            }
        }
        // Sometimes a truncated or corrupt command.
        if rng.below(20) == 0 && payload.len() > 1 {
            payload.truncate(rng.below(payload.len() as u64) as usize);
        }
        payload.truncate(MESSAGE_PAYLOAD_MAX);
        let block = frame_vec(MESSAGE_DEST | (seq & 0x0f), &payload);
        seq = seq.wrapping_add(1);
        mcu.dispatch_block(&block);
        dispatched += 1;
        // Run the timers that are due, as the loop would (bounded).
        for _ in 0..50 {
            let now = mcu.clock.now();
            match mcu.timers.next_wake() {
                Some(t) if (t.wrapping_sub(now) as i32) <= 0 => {}
                _ => break,
            }
            let (waketime, tid) = mcu.timers.pop().unwrap();
            match mcu.run_timer(tid, waketime) {
                Ok(TimerResult::Reschedule(t)) => mcu.timers.insert(tid, t),
                Ok(TimerResult::Done) => {}
                Err(reason) => mcu.shutdown(reason),
            }
        }
        mcu.run_tasks();
        if mcu.is_shutdown() {
            shutdowns += 1;
            let _ = mcu.clear_shutdown();
        }
        // The output never fills: drop what the host would have read.
        let n = mcu.out.pending().len();
        mcu.out.consume(n);
    }
    let _ = std::fs::remove_dir_all(&sysfs);
    assert_eq!(dispatched, rounds);
    assert!(
        shutdowns > 100,
        "random input should shut down often: {shutdowns}"
    );
}

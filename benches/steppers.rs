//! The timer pass of N steppers, in-process: the cost per step edge of
//! the loop (`runtime::run_timers`) with a stand-in GPIO that pays one
//! system call per write, as a line-handle ioctl does. Each sample is an
//! overloaded burst (every step already due), so it measures throughput,
//! not waiting: edges per second, and time per edge.
//!
//! Run: `cargo bench --bench steppers`. The end-to-end figure the README
//! quotes comes from `shared/tools/stepbisect.sh`, through klippy's host
//! library and the fakegpio preload.

use std::ffi::CString;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use klipper_mcu::commands::{registry, Dialect};
use klipper_mcu::hw::{Bias, Board, Gpio, GpioIn, GpioOut};
use klipper_mcu::mcu::Mcu;
use klipper_mcu::runtime;
use klipper_mcu::shutdown::Shutdown;
use klipper_protocol::dictionary::Dictionary;
use klipper_protocol::host::HostCodec;

/// Steps per stepper in one burst.
const STEPS: u32 = 2000;

/// GPIO whose write costs one (cheap) system call, like a GPIO ioctl.
struct OneSyscallGpio;

impl Gpio for OneSyscallGpio {
    fn setup_output(&mut self, pin: u32, _value: bool) -> Result<GpioOut, Shutdown> {
        Ok(GpioOut { pin })
    }
    fn setup_input(&mut self, pin: u32, _bias: Bias) -> Result<GpioIn, Shutdown> {
        Ok(GpioIn { pin })
    }
    #[inline(never)]
    fn write(&mut self, out: GpioOut, value: bool) {
        // SAFETY: getppid has no arguments and no effect.
        let r = unsafe { libc::syscall(libc::SYS_getppid) };
        std::hint::black_box((r, out.pin, value));
    }
    fn read(&mut self, _inp: GpioIn) -> bool {
        false
    }
}

/// Dispatch `cmds`; a shutdown on the way panics with its message.
fn send(mcu: &mut Mcu, codec: &mut HostCodec, cmds: &[String]) {
    let enc: Vec<Vec<u8>> = cmds.iter().map(|c| codec.encode_text(c).unwrap()).collect();
    mcu.dispatch_block(&codec.frame_all(&enc));
    check(mcu, codec);
}

fn check(mcu: &mut Mcu, codec: &mut HostCodec) {
    let out = mcu.out.pending().to_vec();
    mcu.out.consume(out.len());
    for b in codec.feed(&out) {
        for r in codec.decode(&b.payload).unwrap_or_default() {
            if r.name.contains("shutdown") {
                let id = r.int("static_string_id");
                let names = &codec.dict.enumerations["static_string_id"];
                let why = names
                    .as_object()
                    .and_then(|m| m.iter().find(|(_, v)| v.as_i64() == Some(id)))
                    .map(|(k, _)| k.clone());
                panic!("shut down: {why:?}");
            }
        }
    }
    assert!(!mcu.is_shutdown(), "shut down, output {out:?}");
}

fn setup(n: u32) -> (Mcu, HostCodec) {
    let reg = registry(Dialect::Klipper);
    let mut codec = HostCodec::new();
    codec.dict = Dictionary::from_compressed(&reg.dictionary).unwrap();
    let tmp = std::env::temp_dir();
    let mut board = Board::linux(tmp.clone(), tmp);
    board.gpio = Box::new(OneSyscallGpio);
    let mut mcu = Mcu::new(reg, vec![CString::new("bench").unwrap()], board);
    send(&mut mcu, &mut codec, &[format!("allocate_oids count={n}")]);
    for oid in 0..n {
        let (step, dir) = (2 * oid, 2 * oid + 1);
        send(
            &mut mcu,
            &mut codec,
            // As mcubench's step-rate test: a 100 ns pulse.
            &[format!(
                "config_stepper oid={oid} step_pin={step} dir_pin={dir} invert_step=0 step_pulse_ticks=5"
            )],
        );
    }
    send(&mut mcu, &mut codec, &["finalize_config crc=0".into()]);
    (mcu, codec)
}

/// One burst: every stepper's STEPS steps due at once; the time to run
/// them all.
fn burst(mcu: &mut Mcu, codec: &mut HostCodec, n: u32) -> Duration {
    // Far enough ahead that queueing never makes a timer "too close".
    let start = mcu.clock.now().wrapping_add(25_000);
    for oid in 0..n {
        send(
            mcu,
            codec,
            &[
                format!("reset_step_clock oid={oid} clock={start}"),
                format!("queue_step oid={oid} interval=1 count={STEPS} add=0"),
            ],
        );
    }
    while (mcu.clock.now().wrapping_sub(start) as i32) < 0 {}
    let t0 = Instant::now();
    while !mcu.timers.is_empty() {
        // As the loop: the input wants a look every INPUT_CHECK_TICKS.
        let input_due = mcu.clock.now().wrapping_add(runtime::INPUT_CHECK_TICKS);
        runtime::run_timers(mcu, runtime::TIMER_MIN_TRY_TICKS, input_due);
    }
    let t = t0.elapsed();
    check(mcu, codec);
    t
}

fn steppers(c: &mut Criterion) {
    let mut g = c.benchmark_group("step_edges");
    for n in [1u32, 3] {
        let (mut mcu, mut codec) = setup(n);
        g.throughput(Throughput::Elements(2 * STEPS as u64 * n as u64));
        g.bench_function(BenchmarkId::from_parameter(format!("{n}_steppers")), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| burst(&mut mcu, &mut codec, n)).sum())
        });
    }
    g.finish();
}

criterion_group!(benches, steppers);
criterion_main!(benches);

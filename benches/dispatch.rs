//! Command dispatch rate, measured as Klipper's benchmark measures it (and
//! as `mcubench.py -- dispatch` does through klippy's library): a
//! `get_uptime`, a flood of `debug_nop` queued behind it, a second
//! `get_uptime`; the rate is the flood's size over the MCU's own clock
//! difference between the two answers.
//!
//! Run: `cargo bench --bench dispatch`. It starts the release binary on a
//! pty and talks to it with the project's host codec.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use klipper_protocol::dictionary::Dictionary;
use klipper_protocol::host::{HostCodec, Response};

const FLOOD: u64 = 100_000;

struct Mcu {
    child: Child,
    tty: File,
    codec: HostCodec,
    _dir: std::path::PathBuf,
}

impl Drop for Mcu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

impl Mcu {
    fn start() -> Mcu {
        let dir = std::env::temp_dir().join(format!("klipper_mcu_bench_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("tty");
        let child = Command::new(env!("CARGO_BIN_EXE_klipper_mcu"))
            .arg("-I")
            .arg(&link)
            .spawn()
            .expect("start klipper_mcu");
        let t0 = Instant::now();
        while !link.exists() {
            assert!(t0.elapsed() < Duration::from_secs(10), "no pty link");
            std::thread::sleep(Duration::from_millis(5));
        }
        let tty = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&link)
            .unwrap();
        let mut t = nix::sys::termios::tcgetattr(&tty).unwrap();
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&tty, nix::sys::termios::SetArg::TCSANOW, &t).unwrap();
        let mut m = Mcu {
            child,
            tty,
            codec: HostCodec::new(),
            _dir: dir,
        };
        let mut data = Vec::new();
        loop {
            let cmd = m
                .codec
                .encode_text(&format!("identify offset={} count=40", data.len()))
                .unwrap();
            let r = m.request(&[cmd], "identify_response");
            let chunk = r.bytes("data").to_vec();
            if chunk.is_empty() {
                break;
            }
            data.extend_from_slice(&chunk);
        }
        m.codec.dict = Dictionary::from_compressed(&data).unwrap();
        m
    }

    /// Send commands and wait for the first response named `name`.
    fn request(&mut self, cmds: &[Vec<u8>], name: &str) -> Response {
        let bytes = self.codec.frame_all(cmds);
        self.tty.write_all(&bytes).unwrap();
        self.wait_for(name, 1).pop().unwrap()
    }

    fn wait_for(&mut self, name: &str, n: usize) -> Vec<Response> {
        let mut found = Vec::new();
        let mut buf = [0u8; 4096];
        while found.len() < n {
            let k = self.tty.read(&mut buf).unwrap();
            for b in self.codec.feed(&buf[..k]) {
                // Before the dictionary is known, other messages (such as
                // `starting`) cannot be decoded: skip them.
                for r in self.codec.decode(&b.payload).unwrap_or_default() {
                    if r.name == name {
                        found.push(r);
                    }
                }
            }
        }
        found
    }
}

fn uptime(r: &Response) -> u64 {
    ((r.int("high") as u64) << 32) | r.int("clock") as u64
}

fn dispatch(c: &mut Criterion) {
    let mut mcu = Mcu::start();
    let up = mcu.codec.encode("get_uptime", &[]).unwrap();
    let nop = mcu.codec.encode("debug_nop", &[]).unwrap();
    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(FLOOD));
    g.sample_size(10);
    g.bench_function("debug_nop", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut cmds = vec![up.clone()];
                cmds.extend(std::iter::repeat_n(nop.clone(), FLOOD as usize));
                cmds.push(up.clone());
                let bytes = mcu.codec.frame_all(&cmds);
                // Write from a thread: the pty holds only a few KiB, and
                // the answers must be read while the flood goes in.
                let mut w = mcu.tty.try_clone().unwrap();
                let writer = std::thread::spawn(move || w.write_all(&bytes).unwrap());
                let ups = mcu.wait_for("uptime", 2);
                writer.join().unwrap();
                let ticks = uptime(&ups[1]) - uptime(&ups[0]);
                total += Duration::from_nanos(ticks * 20);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);

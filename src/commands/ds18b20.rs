//! DS18B20 1-wire thermometers through the kernel's w1 driver (the
//! reference's linux/sensor_ds18b20.c). Reading `w1_slave` blocks for the
//! ~750 ms conversion, so each sensor has a reader thread; the real-time
//! thread only exchanges a few words with it under a lock.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use klipper_protocol::format::Arg;

use crate::command::{Args, CmdResult, Module, Response, Shutdown};
use crate::mcu::Mcu;
use crate::sched::TimerResult;

static DS18B20_RESULT: Response =
    Response::new("ds18b20_result oid=%c next_clock=%u value=%i fault=%u");

const BAD_SERIAL: Shutdown = Shutdown("Invalid DS18B20 serial id, must not contain '/'");
const CANT_OPEN: Shutdown = Shutdown("Invalid DS18B20 serial id, could not open for reading");
const NO_THREAD: Shutdown = Shutdown("Could not start DS18B20 reader thread");
const READ_ERROR: Shutdown = Shutdown("Error reading DS18B20 sensor");
const OUT_OF_RANGE: Shutdown = Shutdown("DS18B20 out of range");
const TIMED_OUT: Shutdown = Shutdown("DS18B20 sensor didn't respond in time");

/// A read that takes longer than this means the reader is stuck.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Idle,
    ReadRequested,
    Ready,
    Error,
}

struct Shared {
    status: Status,
    temperature: i32,
    error_count: u8,
    request_time: Instant,
}

type Channel = Arc<(Mutex<Shared>, Condvar)>;

pub struct Ds18b20 {
    oid: u8,
    rest_time: u32,
    min_value: i32,
    max_value: i32,
    max_error_count: u8,
    waketime: u32,
    pending: bool,
    /// Kalico's `ignore_limits`: report out-of-range readings without
    /// shutting down.
    ignore_limits: bool,
    shared: Channel,
}

/// The temperature (milli-degrees) in a `w1_slave` report, after "t=".
fn parse_w1(text: &str) -> Option<i32> {
    let t = &text[text.find("t=")? + 2..];
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(t.len());
    t[..end].parse().ok()
}

fn reader(file: File, shared: Channel, max_error_count: u8) {
    let (lock, cond) = &*shared;
    let mut buf = [0u8; 128];
    loop {
        {
            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
            while s.status != Status::ReadRequested {
                s = cond.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        }
        // The slow part, outside the lock.
        let value = file
            .read_at(&mut buf, 0)
            .ok()
            .and_then(|n| parse_w1(&String::from_utf8_lossy(&buf[..n])));
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        match value {
            Some(v) => {
                s.temperature = v;
                s.status = Status::Ready;
            }
            None => {
                s.status = Status::Error;
                s.error_count = s.error_count.saturating_add(1);
                if s.error_count > max_error_count {
                    return;
                }
            }
        }
    }
}

fn run_timer(mcu: &mut Mcu, i: u32, waketime: u32) -> Result<TimerResult, Shutdown> {
    let i = i as usize;
    let d = &mut mcu.objs.of::<Ds18b20>()[i];
    d.pending = true;
    d.waketime = waketime.wrapping_add(d.rest_time);
    let next = d.waketime;
    mcu.wake_task(&MODULE);
    Ok(TimerResult::Reschedule(next))
}

crate::command!(CMD_CONFIG_DS18B20 = "config_ds18b20 oid=%c serial=%*s max_error_count=%c" => config_ds18b20);
fn config_ds18b20(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, serial: buf, max_error_count);
    config(mcu, oid, serial, max_error_count, false)
}

crate::command!(CONFIG_DS18B20 = "config_ds18b20 oid=%c serial=%*s max_error_count=%c ignore_limits=%c" => config_ds18b20_kalico);
/// Kalico's form, with `ignore_limits`.
fn config_ds18b20_kalico(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, serial: buf, max_error_count, ignore_limits);
    config(mcu, oid, serial, max_error_count, ignore_limits != 0)
}

fn config(
    mcu: &mut Mcu,
    oid: u32,
    serial: &[u8],
    max_error_count: u32,
    ignore_limits: bool,
) -> CmdResult {
    if serial.contains(&b'/') {
        return Err(BAD_SERIAL);
    }
    let serial = String::from_utf8_lossy(serial).into_owned();
    let path = mcu
        .sysfs_root
        .join("bus/w1/devices")
        .join(&serial)
        .join("w1_slave");
    let file = File::open(&path).map_err(|e| {
        crate::hw::sysfs::report(&path, "cannot open DS18B20", &e);
        CANT_OPEN
    })?;
    let max_error_count = max_error_count as u8;
    let shared: Channel = Arc::new((
        Mutex::new(Shared {
            status: Status::Idle,
            temperature: 0,
            error_count: 0,
            request_time: Instant::now(),
        }),
        Condvar::new(),
    ));
    let s2 = shared.clone();
    std::thread::Builder::new()
        .name(format!("ds18b20-{serial}"))
        .spawn(move || reader(file, s2, max_error_count))
        .map_err(|_| NO_THREAD)?;
    mcu.oid_new::<Ds18b20>(oid)?;
    mcu.objs.push(Ds18b20 {
        oid: oid as u8,
        rest_time: 0,
        min_value: 0,
        max_value: 0,
        max_error_count,
        waketime: 0,
        pending: false,
        ignore_limits,
        shared,
    });
    Ok(())
}

crate::command!(QUERY_DS18B20 = "query_ds18b20 oid=%c clock=%u rest_ticks=%u min_value=%i max_value=%i" => query_ds18b20);
fn query_ds18b20(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, clock, rest_ticks, min_value, max_value);
    let (i, id) = mcu.oid_stop_timer::<Ds18b20>(oid, run_timer)?;
    let d = &mut mcu.objs.of::<Ds18b20>()[i];
    d.waketime = clock;
    d.rest_time = rest_ticks;
    if d.rest_time == 0 {
        return Ok(());
    }
    d.min_value = min_value as i32;
    d.max_value = max_value as i32;
    let when = d.waketime;
    mcu.add_timer(id, when)
}

/// Report the last reading and ask the reader thread for the next one.
pub fn task(mcu: &mut Mcu) {
    for i in 0..mcu.objs.of::<Ds18b20>().len() {
        if !mcu.objs.of::<Ds18b20>()[i].pending {
            continue;
        }
        mcu.objs.of::<Ds18b20>()[i].pending = false;
        let d = &mcu.objs.of::<Ds18b20>()[i];
        let (oid, next, max_err) = (d.oid, d.waketime, d.max_error_count);
        let (min, max) = if d.ignore_limits {
            (i32::MIN, i32::MAX)
        } else {
            (d.min_value, d.max_value)
        };
        let shared = d.shared.clone();
        let (lock, cond) = &*shared;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut report = None;
        let mut fail = None;
        match s.status {
            Status::Error if s.error_count > max_err => fail = Some(READ_ERROR),
            Status::Error => {
                report = Some((s.temperature, s.error_count as u32));
                s.status = Status::ReadRequested;
            }
            Status::Idle => {
                s.request_time = Instant::now();
                s.status = Status::ReadRequested;
            }
            Status::Ready => {
                report = Some((s.temperature, 0));
                if s.temperature < min || s.temperature > max {
                    fail = Some(OUT_OF_RANGE);
                } else {
                    s.request_time = Instant::now();
                    s.status = Status::ReadRequested;
                    s.error_count = 0;
                }
            }
            Status::ReadRequested => {
                if s.request_time.elapsed() > READ_TIMEOUT {
                    fail = Some(TIMED_OUT);
                }
            }
        }
        cond.notify_one();
        drop(s);
        if let Some((value, fault)) = report {
            let args = [
                Arg::Int(oid as u32),
                Arg::Int(next),
                Arg::Int(value as u32),
                Arg::Int(fault),
            ];
            mcu.send(&DS18B20_RESULT, &args);
        }
        if let Some(reason) = fail {
            mcu.try_shutdown(reason);
        }
    }
}

/// Kalico 2026.10's form (see `commands::dialect_overrides`).
pub static KALICO: Module<Mcu> = Module {
    commands: &[CONFIG_DS18B20],
    ..Module::EMPTY
};

pub static MODULE: Module<Mcu> = Module {
    commands: &[CMD_CONFIG_DS18B20, QUERY_DS18B20],
    responses: &[&DS18B20_RESULT],
    static_strings: &[
        BAD_SERIAL.0,
        CANT_OPEN.0,
        NO_THREAD.0,
        READ_ERROR.0,
        OUT_OF_RANGE.0,
        TIMED_OUT.0,
    ],
    task: Some(task),
    ..Module::EMPTY
};

#[cfg(test)]
mod tests {
    #[test]
    fn parses_w1_slave() {
        let t = "31 00 4b 46 7f ff 0c 10 77 : crc=77 YES\n31 00 4b 46 7f ff 0c 10 77 t=3062\n";
        assert_eq!(super::parse_w1(t), Some(3062));
        assert_eq!(super::parse_w1("t=-1250\n"), Some(-1250));
        assert_eq!(super::parse_w1("crc=00 NO\n"), None);
    }
}

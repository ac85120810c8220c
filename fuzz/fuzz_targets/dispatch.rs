//! Whole command streams dispatched in-process on the simulated board, as
//! the main loop would: every command of the dictionary (software SPI and
//! I2C buses, `config_reset`, `clear_shutdown`, `emergency_stop`
//! included), in either host dialect, in random orders, with edge-case
//! arguments; timers and tasks run between blocks. The input is
//! structured (`arbitrary`), so the fuzzer builds configurations and
//! drives the objects it made instead of failing at the first byte.
//!
//! Checks, besides "no panic, no hang, no leak" (libFuzzer and ASan):
//! every block the MCU sends is well framed and decodes with its own
//! dictionary, nothing is dropped while the host reads, a shut-down MCU
//! runs no timer, and the MCU still answers `get_clock` at the end.
#![no_main]

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use klipper_mcu::clock::from_us;
use klipper_mcu::commands::{registry, Dialect};
use klipper_mcu::hw::Board;
use klipper_mcu::mcu::Mcu;
use klipper_mcu::mcu::Registry;
use klipper_mcu::sched::{TimerResult, MAX_TIMER_LATENESS, RESCHEDULED_IN_PAST};
use klipper_protocol::block::{check_frame, frame_vec, MESSAGE_DEST, MESSAGE_PAYLOAD_MAX};
use klipper_protocol::dictionary::Dictionary;
use klipper_protocol::format::ParamType;
use klipper_protocol::host::HostCodec;
use klipper_protocol::vlq;
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzzing/known_bugs.rs"]
mod known_bugs;
use known_bugs::{steer_off_queue, sw_bus_delay_param};

struct Host {
    registry: &'static Registry,
    codec: HostCodec,
    /// (name, encoded id, parameter types, parameter kinds), by id.
    cmds: Vec<(String, u16, Vec<ParamType>, Vec<Kind>)>,
}

impl Host {
    fn new(dialect: Dialect) -> Host {
        let registry = registry(dialect);
        let dict = Dictionary::from_compressed(&registry.dictionary).expect("dictionary");
        let mut cmds: Vec<_> = dict
            .commands
            .values()
            .map(|m| {
                let kinds = m.format.params.iter().map(|(n, _)| Kind::of(n)).collect();
                (m.format.name.clone(), m.id, m.format.types(), kinds)
            })
            .collect();
        cmds.sort_by_key(|c| c.1);
        let mut codec = HostCodec::new();
        codec.dict = dict;
        Host {
            registry,
            codec,
            cmds,
        }
    }
    fn id(&self, name: &str) -> usize {
        self.cmds.iter().position(|c| c.0 == name).expect(name)
    }
}

fn host(kalico: bool) -> &'static Host {
    static KLIPPER: OnceLock<Host> = OnceLock::new();
    static KALICO: OnceLock<Host> = OnceLock::new();
    // Ids live in each registry, so both dialects' hosts coexist.
    if kalico {
        KALICO.get_or_init(|| Host::new(Dialect::Kalico))
    } else {
        KLIPPER.get_or_init(|| Host::new(Dialect::Klipper))
    }
}

/// `config_reset` re-executes the program; here it starts a fresh MCU.
static RESET: AtomicBool = AtomicBool::new(false);

fn no_reexec(_: &mut Mcu) {
    RESET.store(true, Ordering::Relaxed);
}

type SimState = std::rc::Rc<std::cell::RefCell<klipper_mcu::hw::sim::SimState>>;

fn new_mcu(h: &Host) -> (Mcu, SimState) {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("kmcu-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        d
    });
    let (board, state) = Board::sim(dir.clone(), dir.clone());
    let mut mcu = Mcu::new(
        h.registry,
        vec![CString::new("klipper_mcu").unwrap()],
        board,
    );
    mcu.reexec = no_reexec;
    (mcu, state)
}

/// What a parameter's name says it holds: the fuzzer's small values are
/// mapped into its useful range (an oid the configuration made, a clock
/// near now), so that configurations line up and objects get driven;
/// the extreme values go through as they are.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Oid,
    Pin,
    Clock,
    Ticks,
    Plain,
}

impl Kind {
    fn of(name: &str) -> Kind {
        if name == "oid" || name.ends_with("_oid") {
            Kind::Oid
        } else if name == "pin" || name.ends_with("_pin") {
            Kind::Pin
        } else if name.contains("clock") {
            Kind::Clock
        } else if name.contains("ticks") || name == "interval" || name == "bit_time" {
            Kind::Ticks
        } else {
            Kind::Plain
        }
    }
}

/// An argument value: edge cases more often than not.
#[derive(Arbitrary, Debug, Clone)]
enum Val {
    Zero,
    One,
    Small(u8),
    Max,
    NearMax(u8),
    I32Min,
    Neg(u8),
    Any(u32),
    /// A clock time near now, in 1 us steps (for schedules).
    Clock(i8),
    /// A duration in ticks, within a millisecond.
    Ticks(u16),
    Bytes(Vec<u8>),
}

impl Val {
    /// The value for a parameter of `kind`.
    fn for_kind(&self, kind: Kind, now: u32) -> u32 {
        let small = match self {
            Val::Zero => 0,
            Val::One => 1,
            Val::Small(v) => *v as u32,
            Val::Ticks(v) => *v as u32,
            _ => return self.int(now),
        };
        match kind {
            Kind::Oid => small % 6,
            Kind::Pin => small % 24,
            // 0 to 2.5 ms ahead.
            Kind::Clock => now.wrapping_add(2_000 + small.min(255) * 500),
            // 20 us to 1.3 ms.
            Kind::Ticks => 1_000 + small.min(65_535),
            Kind::Plain => small,
        }
    }

    fn int(&self, now: u32) -> u32 {
        match self {
            Val::Zero => 0,
            Val::One => 1,
            Val::Small(v) => *v as u32,
            Val::Max => u32::MAX,
            Val::NearMax(v) => u32::MAX - *v as u32,
            Val::I32Min => i32::MIN as u32,
            Val::Neg(v) => (-(*v as i32)) as u32,
            Val::Any(v) => *v,
            Val::Clock(v) => now.wrapping_add((*v as i32 * 50) as u32),
            Val::Ticks(v) => *v as u32,
            Val::Bytes(b) => b.len() as u32,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Cmd {
    pick: u16,
    args: Vec<Val>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// One block of commands (as many as fit).
    Block(Vec<Cmd>),
    /// A block whose payload has one byte replaced, or is cut short.
    Mangled {
        cmds: Vec<Cmd>,
        at: u8,
        byte: u8,
        cut: bool,
    },
    /// A payload of raw bytes.
    Raw(Vec<u8>),
    /// Passes of the main loop: due timers (spinning up to 50 us), tasks.
    Loop(u8),
    /// Let time pass (up to 2.5 ms, spinning through due timers).
    Wait(u8),
    Alloc(u8),
    Finalize(u32),
    ClearShutdown,
    EmergencyStop,
    ConfigReset,
    /// Drive a simulated input line.
    Pin {
        line: u8,
        high: bool,
    },
    /// A known-good configuration and use of one family (see RECIPES),
    /// for the fuzzer to mutate around.
    Recipe {
        which: u8,
        oid: u8,
    },
}

/// Well-formed command sequences, one per family: `{o}` and `{p}` are two
/// oids, `{c}` a clock 2 ms ahead, `{P0}`.. distinct pins per oid. One
/// command per block; a line the dialect cannot encode is left out.
/// Before `finalize_config` the `config_` lines are sent, after it the
/// lines marked `!`; the others at any time. So recipe, finalize, same
/// recipe configures an object and then drives it.
const RECIPES: &[&[&str]] = &[
    &[
        "config_digital_out oid={o} pin={P0} value=0 default_value=0 max_duration=0",
        "!queue_digital_out oid={o} clock={c} on_ticks=1000",
        "update_digital_out oid={o} value=1",
    ],
    &[
        "config_stepper oid={o} step_pin={P0} dir_pin={P1} invert_step=0 step_pulse_ticks=100",
        "!reset_step_clock oid={o} clock={c}",
        "!queue_step oid={o} interval=2000 count=20 add=0",
        "!set_next_step_dir oid={o} dir=1",
        "!queue_step oid={o} interval=3000 count=5 add=-10",
        "stepper_get_position oid={o}",
    ],
    &[
        "config_trsync oid={p}",
        "config_endstop oid={o} pin={P0} pull_up=1",
        "trsync_start oid={p} report_clock={c} report_ticks=50000 expire_reason=4",
        "endstop_home oid={o} clock={c} sample_ticks=500 sample_count=4 rest_ticks=1000 \
         pin_value=1 trsync_oid={p} trigger_reason=1",
        "trsync_set_timeout oid={p} clock={c}",
    ],
    &[
        "config_spi oid={o} pin={P0} cs_active_high=0",
        "spi_set_sw_bus oid={o} miso_pin={P1} mosi_pin={P2} sclk_pin={P3} mode=0 pulse_ticks=100",
        "spi_transfer oid={o} data=0102",
        "spi_send oid={o} data=03",
    ],
    &[
        "config_spi_without_cs oid={o}",
        "spi_set_bus oid={o} spi_bus=0 mode=3 rate=5000000",
        "spi_transfer oid={o} data=8000",
        "config_adxl345 oid={p} spi_oid={o}",
        "query_adxl345 oid={p} rest_ticks=10000",
        "query_adxl345_status oid={p}",
    ],
    &[
        "config_i2c oid={o}",
        "i2c_set_sw_bus oid={o} scl_pin={P0} sda_pin={P1} pulse_ticks=100 address=104",
        "i2c_read oid={o} reg=75 read_len=1",
        "i2c_write oid={o} data=6b00",
    ],
    &[
        "config_i2c oid={o}",
        "i2c_set_bus oid={o} i2c_bus=1 rate=400000 address=104",
        "i2c_read oid={o} reg=75 read_len=1",
        "config_mpu9250 oid={p} i2c_oid={o}",
        "query_mpu9250 oid={p} rest_ticks=10000",
        "query_mpu9250_status oid={p}",
    ],
    &[
        "config_pwm_out oid={o} pin={P0} cycle_ticks=10000 value=0 default_value=0 max_duration=0",
        "!queue_pwm_out oid={o} clock={c} value=500",
    ],
    &[
        "config_buttons oid={o} button_count=2",
        "buttons_add oid={o} pos=0 pin={P0} pull_up=1",
        "buttons_add oid={o} pos=1 pin={P1} pull_up=0",
        "buttons_query oid={o} clock={c} rest_ticks=1000 retransmit_count=3 invert=0",
        "buttons_ack oid={o} count=1",
    ],
    &[
        "config_counter oid={o} pin={P0} pull_up=1",
        "query_counter oid={o} clock={c} poll_ticks=1000 sample_ticks=5000",
    ],
    &[
        "config_neopixel oid={o} pin={P0} data_size=12 bit_max_ticks=1000 reset_min_ticks=1000",
        "neopixel_update oid={o} pos=0 data=010203",
        "neopixel_send oid={o}",
    ],
    &[
        "config_tmcuart oid={o} rx_pin={P0} pull_up=1 tx_pin={P1} bit_time=500",
        "tmcuart_send oid={o} write=05000000 read=8",
    ],
    &[
        "config_hd44780 oid={o} rs_pin={P0} e_pin={P1} d4_pin={P2} d5_pin={P3} d6_pin={P4} \
         d7_pin={P5} delay_ticks=100",
        "hd44780_send_cmds oid={o} cmds=0102",
        "hd44780_send_data oid={o} data=4142",
    ],
    &[
        "config_st7920 oid={o} cs_pin={P0} sclk_pin={P1} sid_pin={P2} sync_delay_ticks=100 \
         cmd_delay_ticks=100",
        "st7920_send_cmds oid={o} cmds=01",
        "st7920_send_data oid={o} data=41",
    ],
    &[
        "config_analog_in oid={o} pin={P0}",
        "query_analog_in oid={o} clock={c} sample_ticks=500 sample_count=4 rest_ticks=10000 \
         bytes_per_report=4 min_value=0 max_value=4095 range_check_count=0",
        "query_analog_in oid={o} clock={c} sample_ticks=500 sample_count=4 rest_ticks=10000 \
         min_value=0 max_value=4095 range_check_count=0",
    ],
    &[
        "stepper_stop_on_trigger oid={o} trsync_oid={p}",
        "trsync_trigger oid={p} reason=2",
    ],
    &["finalize_config crc=0"],
];

struct Run<'a> {
    h: &'a Host,
    mcu: Mcu,
    state: SimState,
    seq: u8,
    clocks: usize,
    /// The last payload sent, for failure messages.
    last: Vec<u8>,
}

impl Run<'_> {
    fn encode(&self, c: &Cmd, out: &mut Vec<u8>) {
        let (name, id, types, kinds) = &self.h.cmds[c.pick as usize % self.h.cmds.len()];
        if steer_off_queue(name) && !self.mcu.is_finalized() {
            return;
        }
        let now = self.mcu.clock.now();
        let mut tmp = [0u8; 2];
        let n = vlq::encode_msgid(*id, &mut tmp);
        out.extend_from_slice(&tmp[..n]);
        for (i, t) in types.iter().enumerate() {
            let v = c.args.get(i).cloned().unwrap_or(Val::Zero);
            if t.is_buffer() {
                let b = match v {
                    Val::Bytes(b) => b,
                    other => vec![0x5a; (other.int(now) as usize) % 64],
                };
                let b = &b[..b.len().min(255)];
                out.push(b.len() as u8);
                out.extend_from_slice(b);
            } else {
                let mut x = v.for_kind(kinds[i], now);
                if sw_bus_delay_param(name, i) {
                    x %= 1000;
                }
                vlq::push(x, out);
            }
        }
    }

    fn send(&mut self, payload: &[u8]) {
        for chunk in payload.chunks(MESSAGE_PAYLOAD_MAX) {
            self.last = chunk.to_vec();
            let block = frame_vec(MESSAGE_DEST | (self.seq & 0x0f), chunk);
            self.seq = self.seq.wrapping_add(1);
            self.mcu.dispatch_block(&block);
            self.mcu.out.send_ack();
            if RESET.swap(false, Ordering::Relaxed) {
                (self.mcu, self.state) = new_mcu(self.h);
            }
            self.drain();
        }
    }

    fn send_cmds(&mut self, cmds: &[Cmd]) -> Vec<u8> {
        let mut p = Vec::new();
        for c in cmds {
            let before = p.len();
            self.encode(c, &mut p);
            if p.len() > MESSAGE_PAYLOAD_MAX {
                p.truncate(before);
                break;
            }
        }
        p
    }

    fn named(&mut self, name: &str, args: &[u32]) {
        let (_, id, _, _) = &self.h.cmds[self.h.id(name)];
        let mut p = Vec::new();
        let mut tmp = [0u8; 2];
        let n = vlq::encode_msgid(*id, &mut tmp);
        p.extend_from_slice(&tmp[..n]);
        for a in args {
            vlq::push(*a, &mut p);
        }
        self.send(&p);
    }

    fn recipe(&mut self, which: u8, oid: u8) {
        let o = oid as u32 % 5;
        let c = self.mcu.clock.now().wrapping_add(100_000);
        for line in RECIPES[which as usize % RECIPES.len()] {
            let mut t = line
                .replace("{o}", &o.to_string())
                .replace("{p}", &(o + 1).to_string())
                .replace("{c}", &c.to_string());
            for k in 0..6 {
                t = t.replace(&format!("{{P{k}}}"), &(2 + o * 8 + k).to_string());
            }
            let finalized = self.mcu.is_finalized();
            let (after, t) = match t.strip_prefix('!') {
                Some(rest) => (true, rest.to_string()),
                None => (false, t),
            };
            if (after && !finalized) || (t.starts_with("config_") && finalized) {
                continue;
            }
            if let Ok(p) = self.h.codec.encode_text(&t) {
                self.send(&p);
            }
        }
    }

    /// Take what the MCU sent, as the host would, and check it.
    fn drain(&mut self) {
        let pending = self.mcu.out.pending();
        let mut pos = 0;
        while pos < pending.len() {
            let len = match check_frame(&pending[pos..]) {
                Ok(Some(len)) => len,
                other => panic!("the MCU sent a bad block: {other:?}"),
            };
            let payload = &pending[pos + 2..pos + len - 3];
            match self.h.codec.decode(payload) {
                Ok(msgs) => {
                    self.clocks += msgs.iter().filter(|m| m.name == "clock").count();
                }
                Err(e) => panic!("the MCU sent an undecodable message {payload:02x?}: {e}"),
            }
            pos += len;
        }
        let n = pending.len();
        self.mcu.out.consume(n);
        if self.mcu.out.dropped != 0 {
            panic!(
                "a message was dropped or not encodable after {}",
                self.describe()
            );
        }
    }

    /// The commands of the last payload, by name and raw arguments.
    fn describe(&self) -> String {
        let p = &self.last;
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < p.len() {
            let Ok(id) = vlq::decode_msgid(p, &mut pos) else {
                break;
            };
            let Some((name, _, types, _)) = self.h.cmds.iter().find(|c| c.1 == id) else {
                out.push(format!("unknown id {id}"));
                break;
            };
            let mut a = Vec::new();
            for t in types {
                if t.is_buffer() {
                    let Some(&n) = p.get(pos) else { break };
                    a.push(format!("{:02x?}", p.get(pos + 1..pos + 1 + n as usize)));
                    pos += 1 + n as usize;
                } else {
                    match vlq::decode(p, &mut pos) {
                        Ok(v) => a.push(v.to_string()),
                        Err(_) => break,
                    }
                }
            }
            out.push(format!("{name} {}", a.join(" ")));
        }
        out.join("; ")
    }

    /// One pass of the main loop's timer and task work.
    fn pass(&mut self) {
        let spin = from_us(50);
        let mut now = self.mcu.clock.now();
        for _ in 0..20 {
            let Some(next) = self.mcu.timers.next_wake() else {
                break;
            };
            let mut diff = next.wrapping_sub(now) as i32;
            if diff > spin as i32 {
                now = self.mcu.clock.now();
                diff = next.wrapping_sub(now) as i32;
                if diff > spin as i32 {
                    break;
                }
            }
            if diff < -(MAX_TIMER_LATENESS as i32) {
                self.mcu.try_shutdown(RESCHEDULED_IN_PAST);
                break;
            }
            while diff > 0 {
                now = self.mcu.clock.now();
                diff = next.wrapping_sub(now) as i32;
            }
            let (waketime, id) = self.mcu.timers.pop().expect("a timer");
            match self.mcu.run_timer(id, waketime) {
                Ok(TimerResult::Done) => {}
                Ok(TimerResult::Reschedule(t)) => self.mcu.timers.insert(id, t),
                Err(reason) => {
                    self.mcu.shutdown(reason);
                    break;
                }
            }
            self.drain();
        }
        // Tasks that wake themselves run again, a bounded number of times.
        for _ in 0..8 {
            self.mcu.run_tasks();
            self.drain();
            if self.mcu.tasks == 0 {
                break;
            }
        }
        if self.mcu.is_shutdown() {
            assert!(
                self.mcu.timers.next_wake().is_none(),
                "a timer runs after shutdown"
            );
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    kalico: bool,
    /// Start with `allocate_oids count=6`, as klippy does.
    prelude: bool,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let h = host(input.kalico);
    let (mcu, state) = new_mcu(h);
    let mut r = Run {
        h,
        mcu,
        state,
        seq: 0,
        clocks: 0,
        last: Vec::new(),
    };
    if input.prelude {
        r.named("allocate_oids", &[6]);
    }
    for op in input.ops.iter().take(64) {
        match op {
            Op::Block(cmds) => {
                let p = r.send_cmds(cmds);
                r.send(&p);
            }
            Op::Mangled {
                cmds,
                at,
                byte,
                cut,
            } => {
                let mut p = r.send_cmds(cmds);
                if !p.is_empty() {
                    let i = *at as usize % p.len();
                    if *cut {
                        p.truncate(i);
                    } else {
                        p[i] = *byte;
                    }
                }
                r.send(&p);
            }
            Op::Raw(bytes) => r.send(&bytes[..bytes.len().min(MESSAGE_PAYLOAD_MAX)]),
            Op::Loop(n) => {
                for _ in 0..(*n % 16) {
                    r.pass();
                }
            }
            Op::Wait(n) => {
                let until = r.mcu.clock.now().wrapping_add(*n as u32 * 500);
                while (r.mcu.clock.now().wrapping_sub(until) as i32) < 0 {
                    r.pass();
                }
            }
            Op::Alloc(n) => r.named("allocate_oids", &[*n as u32]),
            Op::Finalize(crc) => r.named("finalize_config", &[*crc]),
            Op::ClearShutdown => r.named("clear_shutdown", &[]),
            Op::EmergencyStop => r.named("emergency_stop", &[]),
            Op::ConfigReset => {
                r.named("emergency_stop", &[]);
                r.named("config_reset", &[]);
            }
            Op::Recipe { which, oid } => r.recipe(*which, *oid),
            Op::Pin { line, high } => {
                let _ = r
                    .state
                    .borrow_mut()
                    .control(&format!("set gpio{line} {}", *high as u8));
            }
        }
        r.pass();
    }
    // Whatever happened, the MCU still answers.
    let before = r.clocks;
    r.named("get_clock", &[]);
    assert_eq!(r.clocks, before + 1, "no answer to get_clock");
});

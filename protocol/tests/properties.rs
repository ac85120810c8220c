//! Property and table tests of the wire protocol's public API: VLQ and
//! message ids, message formats, block framing, the MCU's receiving state
//! machine, the host codec and the data dictionary.

use std::collections::HashSet;

use klipper_protocol::block::{
    check_frame, frame, frame_vec, Found, FrameError, Receiver, MESSAGE_DEST, MESSAGE_MAX,
    MESSAGE_MIN, MESSAGE_PAYLOAD_MAX, MESSAGE_SEQ_MASK, MESSAGE_SYNC,
};
use klipper_protocol::dictionary::{Dictionary, DictionaryBuilder, IDENTIFY, IDENTIFY_RESPONSE};
use klipper_protocol::format::{encode_args, parse_args, Arg, MessageFormat, ParamType, Value};
use klipper_protocol::host::HostCodec;
use klipper_protocol::vlq;
use klipper_protocol::ParseError;
use proptest::collection::vec;
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Helpers and strategies
// ---------------------------------------------------------------------------

/// `cases` cases (unless `PROPTEST_CASES` says otherwise), and no
/// regression files written next to this file.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Values at and around every encoded-length boundary of the VLQ.
fn vlq_boundaries() -> Vec<u32> {
    let mut out = Vec::new();
    let bases: [i64; 14] = [
        0,
        3 << 5,
        3 << 12,
        3 << 19,
        3 << 26,
        -(1 << 5),
        -(1 << 12),
        -(1 << 19),
        -(1 << 26),
        i32::MAX as i64,
        i32::MIN as i64,
        u32::MAX as i64,
        1 << 31,
        1 << 28,
    ];
    for base in bases {
        for d in -3..=3 {
            out.push((base + d) as u32);
        }
    }
    out
}

fn any_vlq_value() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => any::<u32>(),
        2 => any::<i8>().prop_map(|v| v as i32 as u32),
        2 => any::<i16>().prop_map(|v| v as i32 as u32),
        2 => prop::sample::select(vlq_boundaries()),
    ]
}

fn vlq_bytes(v: u32) -> Vec<u8> {
    let mut out = Vec::new();
    vlq::push(v, &mut out);
    out
}

const ALL_TYPES: [ParamType; 8] = [
    ParamType::Byte,
    ParamType::U16,
    ParamType::I16,
    ParamType::U32,
    ParamType::I32,
    ParamType::Buffer,
    ParamType::ProgmemBuffer,
    ParamType::String,
];

fn spec(t: ParamType) -> &'static str {
    match t {
        ParamType::U32 => "%u",
        ParamType::I32 => "%i",
        ParamType::U16 => "%hu",
        ParamType::I16 => "%hi",
        ParamType::Byte => "%c",
        ParamType::String => "%s",
        ParamType::Buffer => "%*s",
        ParamType::ProgmemBuffer => "%.*s",
    }
}

fn format_string(name: &str, types: &[ParamType]) -> String {
    let mut s = name.to_string();
    for (i, t) in types.iter().enumerate() {
        s.push_str(&format!(" p{i}={}", spec(*t)));
    }
    s
}

/// An integer value for a parameter of type `t`: sometimes anything (the
/// host sees it truncated), sometimes in the type's own range (exact).
fn int_for(t: ParamType) -> BoxedStrategy<i64> {
    let typed: BoxedStrategy<i64> = match t {
        ParamType::Byte => any::<u8>().prop_map(i64::from).boxed(),
        ParamType::U16 => any::<u16>().prop_map(i64::from).boxed(),
        ParamType::I16 => any::<i16>().prop_map(i64::from).boxed(),
        ParamType::U32 => any::<u32>().prop_map(i64::from).boxed(),
        _ => any::<i32>().prop_map(i64::from).boxed(),
    };
    prop_oneof![
        3 => typed,
        1 => any::<u32>().prop_map(i64::from),
        1 => any::<i32>().prop_map(i64::from),
        1 => prop::sample::select(vlq_boundaries()).prop_map(i64::from),
    ]
    .boxed()
}

fn bytes_for() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        6 => vec(any::<u8>(), 0..=16),
        3 => vec(any::<u8>(), 0..=64),
        1 => vec(any::<u8>(), 0..=255),
    ]
    .boxed()
}

fn value_for(t: ParamType) -> BoxedStrategy<Value> {
    if t.is_buffer() {
        bytes_for().prop_map(Value::Bytes).boxed()
    } else {
        int_for(t).prop_map(Value::Int).boxed()
    }
}

/// A random format with matching random values.
fn format_and_values() -> impl Strategy<Value = (MessageFormat, Vec<Value>)> {
    vec(prop::sample::select(ALL_TYPES.to_vec()), 0..8).prop_flat_map(|types| {
        let f = MessageFormat::parse(&format_string("msg", &types)).expect("valid format");
        let vals: Vec<BoxedStrategy<Value>> = types.iter().map(|t| value_for(*t)).collect();
        (Just(f), vals)
    })
}

/// What the host decodes for a value it encoded.
fn host_view(t: ParamType, v: &Value) -> Value {
    match v {
        Value::Int(i) => Value::Int(t.int_value(*i as u32)),
        Value::Bytes(b) => Value::Bytes(b.clone()),
    }
}

/// Split `data` into chunks whose sizes are taken from `sizes` in turn
/// (the last chunk takes the rest).
fn chunks<'a>(data: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let n = if sizes.is_empty() {
            data.len()
        } else {
            sizes[i % sizes.len()].max(1)
        };
        let end = (pos + n).min(data.len());
        out.push(&data[pos..end]);
        pos = end;
        i += 1;
    }
    out
}

fn seq_byte(i: usize) -> u8 {
    MESSAGE_DEST | (i as u8 & MESSAGE_SEQ_MASK)
}

/// The MCU's input loop around a [`Receiver`], with a persistent buffer.
struct Mcu {
    rx: Receiver,
    buf: Vec<u8>,
    payloads: Vec<Vec<u8>>,
    naks: usize,
    /// Hand the receiver at most `MESSAGE_MAX` bytes at a time, as the
    /// reference does; otherwise the whole buffer.
    window64: bool,
}

impl Mcu {
    fn new(window64: bool) -> Self {
        Mcu {
            rx: Receiver::new(),
            buf: Vec::new(),
            payloads: Vec::new(),
            naks: 0,
            window64,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        loop {
            let view = if self.window64 {
                &self.buf[..self.buf.len().min(MESSAGE_MAX)]
            } else {
                &self.buf[..]
            };
            match self.rx.find_block(view) {
                Found::NeedMore => break,
                Found::Block { len } => {
                    assert!(
                        len <= view.len(),
                        "block of {len} bytes past {} buffered",
                        view.len()
                    );
                    assert_eq!(
                        check_frame(view),
                        Ok(Some(len)),
                        "accepted an invalid block"
                    );
                    self.payloads.push(view[2..len - 3].to_vec());
                    self.buf.drain(..len);
                }
                Found::Skip { count, nak } => {
                    assert!(count >= 1, "skip of 0 bytes would never progress");
                    assert!(
                        count <= view.len(),
                        "skip of {count} past {} buffered",
                        view.len()
                    );
                    self.naks += nak as usize;
                    self.buf.drain(..count);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// VLQ and message ids
// ---------------------------------------------------------------------------

#[test]
fn vlq_boundaries_round_trip_table() {
    for v in vlq_boundaries() {
        let b = vlq_bytes(v);
        assert_eq!(b.len(), vlq::encoded_len(v), "{v:#x}");
        assert!(b.len() <= vlq::MAX_VLQ_LEN);
        let mut p = 0;
        assert_eq!(vlq::decode(&b, &mut p), Ok(v), "{v:#x}");
        assert_eq!(p, b.len());
    }
    // Lengths change exactly at the documented boundaries.
    let lens: &[(i64, usize)] = &[
        (-33, 2),
        (-32, 1),
        (95, 1),
        (96, 2),
        (-(1 << 12) - 1, 3),
        (-(1 << 12), 2),
        ((3 << 12) - 1, 2),
        (3 << 12, 3),
        ((3 << 19) - 1, 3),
        (3 << 19, 4),
        ((3 << 26) - 1, 4),
        (3 << 26, 5),
        (-(1 << 26), 4),
        (-(1 << 26) - 1, 5),
    ];
    for &(v, n) in lens {
        assert_eq!(vlq::encoded_len(v as u32), n, "{v}");
    }
}

#[test]
fn msgid_table() {
    for id in 0..12288u16 {
        let mut b = [0u8; 2];
        let n = vlq::encode_msgid(id, &mut b);
        assert_eq!(n, if id < 0x80 { 1 } else { 2 });
        let mut p = 0;
        assert_eq!(vlq::decode_msgid(&b[..n], &mut p), Ok(id));
        assert_eq!(p, n);
        // Any strict prefix is truncated.
        for cut in 0..n {
            let mut p = 0;
            assert_eq!(
                vlq::decode_msgid(&b[..cut], &mut p),
                Err(ParseError::Truncated)
            );
        }
        let dv = vlq::msgid_dictionary_value(id);
        assert_eq!(vlq::msgid_from_dictionary_value(dv), Some(id), "id {id}");
        // The host reads the same bytes as a VLQ and gets the dictionary value.
        let mut p = 0;
        assert_eq!(vlq::decode(&b[..n], &mut p), Ok(dv as u32));
        assert_eq!(p, n);
    }
    // Distinct ids have distinct dictionary values.
    let dvs: HashSet<i32> = (0..12288u16).map(vlq::msgid_dictionary_value).collect();
    assert_eq!(dvs.len(), 12288);
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn vlq_round_trip(v in any_vlq_value(), trailer in vec(any::<u8>(), 0..4)) {
        let mut buf = [0u8; vlq::MAX_VLQ_LEN];
        let n = vlq::encode(v, &mut buf);
        prop_assert_eq!(n, vlq::encoded_len(v));
        prop_assert!((1..=vlq::MAX_VLQ_LEN).contains(&n));
        prop_assert_eq!(&vlq_bytes(v)[..], &buf[..n]);
        // Decoding stops at the value's end, whatever follows.
        let mut data = buf[..n].to_vec();
        data.extend_from_slice(&trailer);
        let mut p = 0;
        prop_assert_eq!(vlq::decode(&data, &mut p), Ok(v));
        prop_assert_eq!(p, n);
        // Decoding at an offset works too.
        let mut data2 = trailer.clone();
        data2.extend_from_slice(&buf[..n]);
        let mut p = trailer.len();
        prop_assert_eq!(vlq::decode(&data2, &mut p), Ok(v));
        prop_assert_eq!(p, data2.len());
        // Every strict prefix is truncated, and leaves the position alone.
        for cut in 0..n {
            let mut p = 0;
            prop_assert_eq!(vlq::decode(&buf[..cut], &mut p), Err(ParseError::Truncated));
            prop_assert_eq!(p, 0);
        }
    }

    #[test]
    fn vlq_decode_arbitrary_bytes(data in vec(any::<u8>(), 0..24), start in 0usize..26) {
        let mut p = start;
        match vlq::decode(&data, &mut p) {
            Ok(v) => {
                prop_assert!(p > start && p <= data.len());
                // The value's bytes are a continuation run ended by a byte
                // without the top bit.
                prop_assert!(data[start..p - 1].iter().all(|b| b & 0x80 != 0));
                prop_assert_eq!(data[p - 1] & 0x80, 0);
                // Re-encoding and decoding the value is stable.
                let b = vlq_bytes(v);
                let mut q = 0;
                prop_assert_eq!(vlq::decode(&b, &mut q), Ok(v));
            }
            Err(e) => {
                prop_assert_eq!(e, ParseError::Truncated);
                prop_assert_eq!(p, start);
            }
        }
        let mut p = start;
        match vlq::decode_msgid(&data, &mut p) {
            Ok(id) => {
                prop_assert!(p > start && p <= data.len());
                prop_assert!(id < 1 << 14);
            }
            Err(_) => prop_assert_eq!(p, start),
        }
    }

    #[test]
    fn msgid_round_trip(id in 0u16..12288) {
        let mut b = [0u8; 2];
        let n = vlq::encode_msgid(id, &mut b);
        let mut p = 0;
        prop_assert_eq!(vlq::decode_msgid(&b[..n], &mut p), Ok(id));
        prop_assert_eq!(p, n);
        let dv = vlq::msgid_dictionary_value(id);
        prop_assert_eq!(vlq::msgid_from_dictionary_value(dv), Some(id));
    }

    #[test]
    fn msgid_from_any_dictionary_value(v in any::<i32>()) {
        // Whatever the value, a returned id is one the MCU can encode and
        // whose encoding a VLQ decoder reads back as a value that maps to
        // the same id.
        if let Some(id) = vlq::msgid_from_dictionary_value(v) {
            prop_assert!(id < 1 << 14);
            let dv = vlq::msgid_dictionary_value(id);
            prop_assert_eq!(vlq::msgid_from_dictionary_value(dv), Some(id));
        }
    }
}

// ---------------------------------------------------------------------------
// Message formats
// ---------------------------------------------------------------------------

#[test]
fn format_table() {
    // Every specifier parses to its type.
    for t in ALL_TYPES {
        let f = MessageFormat::parse(&format!("m x={}", spec(t))).unwrap();
        assert_eq!(f.types(), vec![t]);
        assert_eq!(ParamType::from_spec(&spec(t)[1..]), Some(t));
    }
    // Host view of integers.
    let cases: &[(ParamType, u32, i64)] = &[
        (ParamType::U32, 0xffff_ffff, 0xffff_ffff),
        (ParamType::I32, 0xffff_ffff, -1),
        (ParamType::I32, 0x8000_0000, i32::MIN as i64),
        (ParamType::U16, 0x1_2345, 0x2345),
        (ParamType::U16, 0xffff_ffff, 0xffff),
        (ParamType::I16, 0x8000, -32768),
        (ParamType::I16, 0x1_7fff, 32767),
        (ParamType::I16, 0xffff_ffff, -1),
        (ParamType::Byte, 0x1ff, 0xff),
        (ParamType::Byte, 0xffff_ff80, 0x80),
    ];
    for &(t, raw, want) in cases {
        assert_eq!(t.int_value(raw), want, "{t:?} {raw:#x}");
    }
    // Oversized buffers and mismatched values are errors, never cut.
    let f = MessageFormat::parse("m a=%*s").unwrap();
    let mut out = Vec::new();
    assert_eq!(
        f.encode(&[Value::Bytes(vec![0; 256])], &mut out),
        Err(ParseError::BadFormat)
    );
    assert!(f.encode(&[Value::Bytes(vec![0; 255])], &mut out).is_ok());
    assert_eq!(out.len(), 256);
    assert_eq!(
        f.encode(&[Value::Int(1)], &mut Vec::new()),
        Err(ParseError::BadFormat)
    );
    assert_eq!(f.encode(&[], &mut Vec::new()), Err(ParseError::BadFormat));
    let mut big = [0u8; 512];
    assert_eq!(
        encode_args(&[ParamType::Buffer], &[Arg::Bytes(&[0; 256])], &mut big),
        None
    );
    assert_eq!(
        encode_args(&[ParamType::Buffer], &[Arg::Bytes(&[0; 255])], &mut big),
        Some(256)
    );
    assert_eq!(
        encode_args(&[ParamType::U32], &[Arg::Bytes(&[])], &mut big),
        None
    );
    // Too few argument slots is an error, not a panic.
    let mut args = [0u32; 1];
    let mut pos = 0;
    assert_eq!(
        parse_args(&[ParamType::Buffer], &[1, 9], 2, &mut pos, &mut args),
        Err(ParseError::BadFormat)
    );
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn format_round_trip((f, vals) in format_and_values(), prefix in vec(any::<u8>(), 0..3)) {
        let types = f.types();
        let mut out = prefix.clone();
        f.encode(&vals, &mut out).unwrap();
        // MessageFormat::decode gives the host's view of every value.
        let mut pos = prefix.len();
        let dec = f.decode(&out, &mut pos).unwrap();
        prop_assert_eq!(pos, out.len());
        prop_assert_eq!(dec.len(), vals.len());
        for (i, ((name, got), (t, v))) in dec.iter().zip(types.iter().zip(&vals)).enumerate() {
            prop_assert_eq!(name, &format!("p{i}"));
            prop_assert_eq!(got, &host_view(*t, v));
        }

        // parse_args agrees: one slot per integer (the raw 32-bit value),
        // two per buffer (length, absolute offset).
        let mut want = Vec::new();
        let mut p = prefix.len();
        for v in &vals {
            match v {
                Value::Int(i) => {
                    want.push(*i as u32);
                    p += vlq::encoded_len(*i as u32);
                }
                Value::Bytes(b) => {
                    want.push(b.len() as u32);
                    want.push(p as u32 + 1);
                    p += 1 + b.len();
                }
            }
        }
        let mut args = vec![0u32; want.len()];
        let mut pos = prefix.len();
        let n = parse_args(&types, &out, out.len(), &mut pos, &mut args).unwrap();
        prop_assert_eq!(n, want.len());
        prop_assert_eq!(pos, out.len());
        prop_assert_eq!(&args, &want);
        // The buffers' slots point at the right bytes.
        let mut slot = 0;
        for v in &vals {
            match v {
                Value::Int(_) => slot += 1,
                Value::Bytes(b) => {
                    let (len, off) = (args[slot] as usize, args[slot + 1] as usize);
                    prop_assert_eq!(&out[off..off + len], &b[..]);
                    slot += 2;
                }
            }
        }
        if !want.is_empty() {
            // One slot short is an error.
            let mut short = vec![0u32; want.len() - 1];
            let mut pos = prefix.len();
            prop_assert!(parse_args(&types, &out, out.len(), &mut pos, &mut short).is_err());
        }

        // encode_args writes the same bytes as MessageFormat::encode.
        let as_args: Vec<Arg> = vals
            .iter()
            .map(|v| match v {
                Value::Int(i) => Arg::Int(*i as u32),
                Value::Bytes(b) => Arg::Bytes(b),
            })
            .collect();
        let body = &out[prefix.len()..];
        let mut buf = vec![0u8; body.len() + 8];
        prop_assert_eq!(encode_args(&types, &as_args, &mut buf), Some(body.len()));
        prop_assert_eq!(&buf[..body.len()], body);
        let mut exact = vec![0u8; body.len()];
        prop_assert_eq!(encode_args(&types, &as_args, &mut exact), Some(body.len()));
        // Any smaller output buffer is refused, never overrun.
        for size in 0..body.len() {
            let mut small = vec![0u8; size];
            prop_assert_eq!(encode_args(&types, &as_args, &mut small), None, "size {}", size);
        }

        // Truncation anywhere is an error for both decoders.
        for cut in prefix.len()..out.len() {
            let mut pos = prefix.len();
            prop_assert!(f.decode(&out[..cut], &mut pos).is_err(), "decode cut {}", cut);
            let mut pos = prefix.len();
            let mut args = vec![0u32; want.len()];
            prop_assert!(
                parse_args(&types, &out, cut, &mut pos, &mut args).is_err(),
                "parse_args cut {}", cut
            );
        }
    }

    #[test]
    fn format_decoders_never_panic(
        types in vec(prop::sample::select(ALL_TYPES.to_vec()), 0..8),
        data in vec(any::<u8>(), 0..40),
        end_frac in 0.0f64..=1.0,
        start_frac in 0.0f64..=1.0,
        nslots in 0usize..20,
    ) {
        let f = MessageFormat::parse(&format_string("m", &types)).unwrap();
        let end = (data.len() as f64 * end_frac) as usize;
        let start = (end as f64 * start_frac) as usize;
        let mut pos = start;
        let r1 = f.decode(&data[..end], &mut pos);
        if r1.is_ok() {
            prop_assert!(pos <= end);
        }
        let mut args = vec![0u32; nslots];
        let mut pos2 = start;
        let r2 = parse_args(&types, &data, end, &mut pos2, &mut args);
        if let Ok(n) = r2 {
            prop_assert!(n <= nslots);
            prop_assert!(pos2 <= end);
        }
        // When both succeed they agree on where the message ends.
        if let (Ok(dec), Ok(_)) = (&r1, &r2) {
            prop_assert_eq!(pos, pos2);
            let mut slot = 0;
            for ((_, v), t) in dec.iter().zip(&types) {
                match v {
                    Value::Int(i) => {
                        prop_assert_eq!(*i, t.int_value(args[slot]));
                        slot += 1;
                    }
                    Value::Bytes(b) => {
                        let (len, off) = (args[slot] as usize, args[slot + 1] as usize);
                        prop_assert_eq!(&data[off..off + len], &b[..]);
                        slot += 2;
                    }
                }
            }
        }
        // With enough slots, they succeed or fail together.
        if nslots >= 2 * types.len() {
            prop_assert_eq!(r1.is_ok(), r2.is_ok());
        }
    }
}

// ---------------------------------------------------------------------------
// Blocks
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn frame_round_trip(
        payload in vec(any::<u8>(), 0..=MESSAGE_PAYLOAD_MAX),
        seq in 0u8..16,
        trailer in vec(any::<u8>(), 0..8),
    ) {
        let b = frame_vec(MESSAGE_DEST | seq, &payload);
        let len = payload.len() + MESSAGE_MIN;
        prop_assert_eq!(b.len(), len);
        prop_assert_eq!(b[0] as usize, len);
        prop_assert_eq!(b[1], MESSAGE_DEST | seq);
        prop_assert_eq!(&b[2..len - 3], &payload[..]);
        prop_assert_eq!(b[len - 1], MESSAGE_SYNC);
        prop_assert_eq!(check_frame(&b), Ok(Some(len)));
        // `frame` into a larger buffer writes the same block.
        let mut out = [0xa5u8; MESSAGE_MAX + 4];
        prop_assert_eq!(frame(MESSAGE_DEST | seq, &payload, &mut out), len);
        prop_assert_eq!(&out[..len], &b[..]);
        prop_assert_eq!(out[len], 0xa5);
        // Whatever follows the block does not matter.
        let mut more = b.clone();
        more.extend_from_slice(&trailer);
        prop_assert_eq!(check_frame(&more), Ok(Some(len)));
        // Every strict prefix needs more data.
        for cut in 0..len {
            prop_assert_eq!(check_frame(&b[..cut]), Ok(None), "cut {}", cut);
        }
        // A sequence byte without the destination bits is refused.
        let bad = frame_vec(seq, &payload);
        prop_assert_eq!(check_frame(&bad), Err(FrameError::BadSequence));
    }

    #[test]
    fn single_bit_flip_is_rejected(
        payload in vec(any::<u8>(), 0..=MESSAGE_PAYLOAD_MAX),
        seq in 0u8..16,
    ) {
        let b = frame_vec(MESSAGE_DEST | seq, &payload);
        let len = b.len();
        for byte in 0..len {
            for bit in 0..8 {
                let mut f = b.clone();
                f[byte] ^= 1 << bit;
                let r = check_frame(&f);
                if byte == 0 {
                    // A new length may look truncated; it must never pass as
                    // this block.
                    prop_assert!(r != Ok(Some(len)), "byte {} bit {}: {:?}", byte, bit, r);
                    if (f[0] as usize) > len && (f[0] as usize) <= MESSAGE_MAX {
                        prop_assert_eq!(r, Ok(None));
                    } else if !(MESSAGE_MIN..=MESSAGE_MAX).contains(&(f[0] as usize)) {
                        prop_assert_eq!(r, Err(FrameError::BadLength));
                    }
                } else {
                    prop_assert!(r.is_err(), "byte {} bit {}: {:?}", byte, bit, r);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The MCU's receiver
// ---------------------------------------------------------------------------

#[test]
fn receiver_table() {
    // Leading sync bytes are dropped one at a time, silently.
    let mut r = Receiver::new();
    let b = frame_vec(seq_byte(0), &[1, 2, 3]);
    let mut data = vec![MESSAGE_SYNC; 3];
    data.extend_from_slice(&b);
    for i in 0..3 {
        assert_eq!(
            r.find_block(&data[i..]),
            Found::Skip {
                count: 1,
                nak: false
            }
        );
    }
    assert_eq!(r.find_block(&data[3..]), Found::Block { len: b.len() });
    // An empty buffer needs more, in any state.
    assert_eq!(r.find_block(&[]), Found::NeedMore);
    assert_eq!(r.find_block(&[0xff]), Found::NeedMore);
    assert_eq!(
        r.find_block(&[0xff, 0xff, 0xff, 0xff, 0xff]),
        Found::Skip {
            count: 5,
            nak: true
        }
    );
    assert_eq!(r.find_block(&[]), Found::NeedMore);
    assert_eq!(
        r.find_block(&[0xff, MESSAGE_SYNC]),
        Found::Skip {
            count: 2,
            nak: false
        }
    );
}

fn valid_blocks(max: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
    vec(
        prop_oneof![
            3 => vec(any::<u8>(), 0..=12),
            1 => vec(any::<u8>(), 0..=MESSAGE_PAYLOAD_MAX),
        ],
        0..max,
    )
}

fn garbage() -> impl Strategy<Value = Vec<u8>> {
    let byte = any::<u8>().prop_filter("no sync", |b| *b != MESSAGE_SYNC);
    prop_oneof![
        2 => Just(Vec::new()),
        4 => vec(byte.clone(), 1..12),
        1 => vec(byte, 60..140),
    ]
}

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn receiver_in_sequence_stream_in_chunks(
        payloads in valid_blocks(40),
        sizes in vec(1usize..80, 1..10),
        window64 in any::<bool>(),
    ) {
        let mut stream = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            stream.extend_from_slice(&frame_vec(seq_byte(i), p));
        }
        let mut mcu = Mcu::new(window64);
        for c in chunks(&stream, &sizes) {
            mcu.feed(c);
        }
        prop_assert_eq!(&mcu.payloads, &payloads);
        prop_assert_eq!(mcu.naks, 0);
        prop_assert!(mcu.buf.is_empty());
        prop_assert_eq!(mcu.rx.next_sequence(), seq_byte(payloads.len()));
    }

    #[test]
    fn receiver_resyncs_after_garbage(
        items in vec((garbage(), 0usize..3, vec(any::<u8>(), 0..=20)), 0..20),
        tail in prop_oneof![
            Just(Vec::new()),
            vec(any::<u8>().prop_filter("no sync", |b| *b != MESSAGE_SYNC), MESSAGE_MAX + 1..140),
        ],
        sizes in vec(1usize..80, 1..10),
        window64 in any::<bool>(),
    ) {
        // Each block is preceded by a garbage stretch (no sync byte inside)
        // closed by a sync byte, and optionally by extra sync bytes.
        let mut stream = Vec::new();
        let mut stretches = 0;
        for (i, (g, syncs, p)) in items.iter().enumerate() {
            if !g.is_empty() {
                stream.extend_from_slice(g);
                stream.push(MESSAGE_SYNC);
                stretches += 1;
            }
            stream.extend_from_slice(&vec![MESSAGE_SYNC; *syncs]);
            stream.extend_from_slice(&frame_vec(seq_byte(i), p));
        }
        // Trailing garbage without a sync, longer than any block (a
        // shorter one could still be the start of a block): dropped,
        // nak'ed once.
        stream.extend_from_slice(&tail);
        if !tail.is_empty() {
            stretches += 1;
        }
        // A stretch that starts like a block header (length 5..=64 and a
        // valid sequence byte) holds the receiver back until that many
        // bytes have arrived, as in the reference; an idle line's sync
        // bytes flush it (and are dropped silently).
        stream.extend_from_slice(&[MESSAGE_SYNC; MESSAGE_MAX]);
        let mut mcu = Mcu::new(window64);
        for c in chunks(&stream, &sizes) {
            mcu.feed(c);
        }
        let want: Vec<Vec<u8>> = items.iter().map(|(_, _, p)| p.clone()).collect();
        prop_assert_eq!(&mcu.payloads, &want);
        prop_assert_eq!(mcu.naks, stretches);
        prop_assert_eq!(mcu.rx.next_sequence(), seq_byte(items.len()));
        // Only an unfinished candidate block may remain buffered.
        prop_assert!(mcu.buf.len() < MESSAGE_MAX, "{} bytes left", mcu.buf.len());
    }

    #[test]
    fn receiver_never_panics_on_arbitrary_input(
        parts in vec(
            prop_oneof![
                vec(any::<u8>(), 0..40),
                vec(prop_oneof![Just(MESSAGE_SYNC), any::<u8>()], 0..40),
                (0u8..16, vec(any::<u8>(), 0..=MESSAGE_PAYLOAD_MAX))
                    .prop_map(|(s, p)| frame_vec(MESSAGE_DEST | s, &p)),
            ],
            0..12,
        ),
        sizes in vec(1usize..100, 1..10),
        window64 in any::<bool>(),
    ) {
        let stream: Vec<u8> = parts.concat();
        // The Mcu helper asserts progress, bounds and validity of blocks.
        let mut mcu = Mcu::new(window64);
        for c in chunks(&stream, &sizes) {
            mcu.feed(c);
        }
        // Every accepted block carries the expected sequence number.
        prop_assert_eq!(mcu.rx.next_sequence(), seq_byte(mcu.payloads.len()));
        prop_assert!(mcu.buf.len() < MESSAGE_MAX);
    }

    #[test]
    fn receiver_naks_wrong_sequence(
        before in 0usize..40,
        wrong_off in 1usize..16,
        p1 in vec(any::<u8>(), 0..=20),
        p2 in vec(any::<u8>(), 0..=20),
    ) {
        let mut r = Receiver::new();
        for i in 0..before {
            let b = frame_vec(seq_byte(i), &[i as u8]);
            prop_assert_eq!(r.find_block(&b), Found::Block { len: b.len() });
        }
        let expected = r.next_sequence();
        prop_assert_eq!(expected, seq_byte(before));
        let wrong = frame_vec(seq_byte(before + wrong_off), &p1);
        prop_assert_eq!(r.find_block(&wrong), Found::Skip { count: wrong.len(), nak: true });
        prop_assert_eq!(r.next_sequence(), expected);
        // Again: every wrong block is nak'ed, not just the first.
        prop_assert_eq!(r.find_block(&wrong), Found::Skip { count: wrong.len(), nak: true });
        prop_assert_eq!(r.next_sequence(), expected);
        let right = frame_vec(expected, &p2);
        prop_assert_eq!(r.find_block(&right), Found::Block { len: right.len() });
        prop_assert_eq!(r.next_sequence(), seq_byte(before + 1));
    }

    #[test]
    fn receiver_skips_leading_syncs_silently(
        n in 0usize..80,
        payload in vec(any::<u8>(), 0..=MESSAGE_PAYLOAD_MAX),
        sizes in vec(1usize..80, 1..10),
        window64 in any::<bool>(),
    ) {
        let mut stream = vec![MESSAGE_SYNC; n];
        stream.extend_from_slice(&frame_vec(seq_byte(0), &payload));
        let mut mcu = Mcu::new(window64);
        for c in chunks(&stream, &sizes) {
            mcu.feed(c);
        }
        prop_assert_eq!(mcu.payloads, vec![payload]);
        prop_assert_eq!(mcu.naks, 0);
        prop_assert!(mcu.buf.is_empty());
    }
}

// ---------------------------------------------------------------------------
// Host codec
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn host_frame_all_then_feed(
        cmds in vec(vec(any::<u8>(), 1..=MESSAGE_PAYLOAD_MAX), 0..30),
        start in 0u8..16,
        sizes in vec(1usize..100, 1..10),
        noise in vec(any::<u8>().prop_filter("no sync", |b| *b != MESSAGE_SYNC), 0..10),
    ) {
        let mut h = HostCodec::new();
        h.set_seq(start);
        prop_assert_eq!(h.seq(), start);
        let bytes = h.frame_all(&cmds);

        // The greedy packing: commands in order, never split, as few
        // blocks as fit.
        let mut groups: Vec<Vec<u8>> = Vec::new();
        let mut cur: Vec<u8> = Vec::new();
        for c in &cmds {
            if cur.len() + c.len() > MESSAGE_PAYLOAD_MAX {
                groups.push(std::mem::take(&mut cur));
            }
            cur.extend_from_slice(c);
        }
        if !cur.is_empty() {
            groups.push(cur);
        }
        prop_assert_eq!(h.seq(), ((start as usize + groups.len()) & 0xf) as u8);

        // Noise closed by a sync byte first, then the blocks, in chunks.
        let mut stream = noise.clone();
        if !noise.is_empty() {
            stream.push(MESSAGE_SYNC);
        }
        stream.extend_from_slice(&bytes);
        // Noise that starts like a block header waits for that many bytes:
        // flush it with sync bytes.
        stream.extend_from_slice(&[MESSAGE_SYNC; MESSAGE_MAX]);
        let mut rx = HostCodec::new();
        let mut blocks = Vec::new();
        for c in chunks(&stream, &sizes) {
            blocks.extend(rx.feed(c));
        }
        prop_assert_eq!(blocks.len(), groups.len());
        for (i, (b, g)) in blocks.iter().zip(&groups).enumerate() {
            prop_assert_eq!(b.seq, seq_byte(start as usize + i));
            prop_assert!(b.payload.len() <= MESSAGE_PAYLOAD_MAX);
            prop_assert_eq!(&b.payload, g);
        }
        let all: Vec<u8> = blocks.iter().flat_map(|b| b.payload.clone()).collect();
        prop_assert_eq!(all, cmds.concat());
    }
}

// ---------------------------------------------------------------------------
// Dictionary
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Msg {
    format: String,
    name: String,
    id: u16,
}

fn messages() -> impl Strategy<Value = (Vec<Msg>, Vec<Msg>)> {
    (
        prop::collection::hash_set(2u16..12288, 0..40),
        vec(vec(prop::sample::select(ALL_TYPES.to_vec()), 0..6), 40),
        vec("[a-z_]{1,8}", 40),
        0usize..=40,
    )
        .prop_map(|(ids, typess, suffixes, split)| {
            let mut cmds = Vec::new();
            let mut resps = Vec::new();
            for (i, id) in ids.into_iter().enumerate() {
                let name = format!("m{i}_{}", suffixes[i]);
                let m = Msg {
                    format: format_string(&name, &typess[i]),
                    name,
                    id,
                };
                if i < split {
                    cmds.push(m);
                } else {
                    resps.push(m);
                }
            }
            (cmds, resps)
        })
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn dictionary_round_trip((cmds, resps) in messages()) {
        let mut b = DictionaryBuilder::new("Klipper", "v0-test", "gcc", "GPL");
        b.command(IDENTIFY, vlq::msgid_dictionary_value(1));
        b.response(IDENTIFY_RESPONSE, vlq::msgid_dictionary_value(0));
        for m in &cmds {
            b.command(&m.format, vlq::msgid_dictionary_value(m.id));
        }
        for m in &resps {
            b.response(&m.format, vlq::msgid_dictionary_value(m.id));
        }
        let d = Dictionary::from_compressed(&b.compressed()).unwrap();
        // The JSON text parses the same way.
        let dj = Dictionary::from_json(&b.to_json()).unwrap();
        for d in [&d, &dj] {
            prop_assert_eq!(d.commands.len(), cmds.len() + 1);
            prop_assert_eq!(d.responses.len(), resps.len() + 1);
            prop_assert_eq!(d.commands["identify"].id, 1);
            prop_assert_eq!(&d.responses[&0u16].format.name, "identify_response");
            for m in &cmds {
                let got = &d.commands[&m.name];
                prop_assert_eq!(got.id, m.id);
                prop_assert_eq!(&got.format, &MessageFormat::parse(&m.format).unwrap());
                prop_assert_eq!(&got.format.format, &m.format);
            }
            for m in &resps {
                let got = &d.responses[&m.id];
                prop_assert_eq!(&got.format.name, &m.name);
                prop_assert_eq!(&got.format, &MessageFormat::parse(&m.format).unwrap());
            }
        }
    }
}

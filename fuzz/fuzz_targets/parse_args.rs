//! The MCU's argument parser (`parse_args`, VLQ and message ids) on
//! arbitrary bytes and parameter lists. Checks that it never reads past
//! the message's end, that buffers it hands out lie inside it, and that it
//! agrees with the host-side decoder (`MessageFormat::decode`) and with
//! the MCU's encoder (`encode_args`) on every value.
#![no_main]

use klipper_protocol::format::{encode_args, parse_args, Arg, MessageFormat, ParamType, Value};
use klipper_protocol::vlq;
use libfuzzer_sys::fuzz_target;

const SPECS: [(&str, ParamType); 8] = [
    ("u", ParamType::U32),
    ("i", ParamType::I32),
    ("hu", ParamType::U16),
    ("hi", ParamType::I16),
    ("c", ParamType::Byte),
    ("s", ParamType::String),
    ("*s", ParamType::Buffer),
    (".*s", ParamType::ProgmemBuffer),
];

fuzz_target!(|input: &[u8]| {
    // [ntypes] [types...] [cut] [data...]
    let Some((&ntypes, rest)) = input.split_first() else {
        return;
    };
    let ntypes = (ntypes as usize % 13).min(rest.len());
    let (tbytes, rest) = rest.split_at(ntypes);
    let Some((&cut, data)) = rest.split_first() else {
        return;
    };
    let types: Vec<ParamType> = tbytes.iter().map(|b| SPECS[*b as usize % 8].1).collect();
    let mut fmt = String::from("m");
    for (i, b) in tbytes.iter().enumerate() {
        fmt.push_str(&format!(" a{i}=%{}", SPECS[*b as usize % 8].0));
    }
    let mf = MessageFormat::parse(&fmt).expect("a valid format");
    assert_eq!(mf.types(), types);

    // The payload ends before the block's end: parse must not look past it.
    let end = data.len().saturating_sub(cut as usize % 4);
    let start = (cut as usize / 4) % (end + 1);
    let mut slots = [0u32; 24];
    let mut pos = start;
    let parsed = parse_args(&types, data, end, &mut pos, &mut slots);
    let mut hpos = start;
    let decoded = mf.decode(&data[..end], &mut hpos);
    match (&parsed, &decoded) {
        (Ok(n), Ok(values)) => {
            assert!(pos <= end);
            assert_eq!(pos, hpos, "MCU and host disagree on the length");
            let mut s = 0;
            let mut args = Vec::new();
            for (t, (_, v)) in types.iter().zip(values) {
                if t.is_buffer() {
                    let (len, off) = (slots[s] as usize, slots[s + 1] as usize);
                    assert!(off + len <= end, "buffer outside the message");
                    assert_eq!(v, &Value::Bytes(data[off..off + len].to_vec()));
                    args.push(Arg::Bytes(&data[off..off + len]));
                    s += 2;
                } else {
                    assert_eq!(v, &Value::Int(t.int_value(slots[s])));
                    args.push(Arg::Int(slots[s]));
                    s += 1;
                }
            }
            assert_eq!(s, *n);
            // What the MCU parsed, encoded again, parses to the same.
            let mut out = [0u8; 24 * 5 + 13 * 256];
            let m = encode_args(&types, &args, &mut out).expect("room for it");
            let mut p2 = 0;
            let mut slots2 = [0u32; 24];
            parse_args(&types, &out, m, &mut p2, &mut slots2).expect("re-parse");
            assert_eq!(p2, m);
            let ints = |sl: &[u32; 24]| -> Vec<u32> {
                let mut v = Vec::new();
                let mut s = 0;
                for t in &types {
                    if t.is_buffer() {
                        v.push(sl[s]);
                        s += 2;
                    } else {
                        v.push(sl[s]);
                        s += 1;
                    }
                }
                v
            };
            assert_eq!(ints(&slots), ints(&slots2));
        }
        (Err(_), Err(_)) => {}
        _ => panic!("MCU and host disagree: {parsed:?} vs {decoded:?}"),
    }

    // VLQ and message ids: every value round-trips, in the length told.
    let mut p = 0;
    while p + 4 <= data.len() {
        let v = u32::from_le_bytes(data[p..p + 4].try_into().unwrap());
        let mut b = [0u8; 5];
        let n = vlq::encode(v, &mut b);
        assert_eq!(n, vlq::encoded_len(v));
        let mut q = 0;
        assert_eq!(vlq::decode(&b[..n], &mut q), Ok(v));
        assert_eq!(q, n);
        let id = (v & 0x3fff) as u16;
        let mut m = [0u8; 2];
        let k = vlq::encode_msgid(id, &mut m);
        let mut q = 0;
        assert_eq!(vlq::decode_msgid(&m[..k], &mut q), Ok(id));
        assert_eq!(q, k);
        p += 4;
    }
    let mut q = 0;
    while q < data.len() {
        let before = q;
        if vlq::decode(data, &mut q).is_err() {
            break;
        }
        assert!(q > before && q <= data.len());
    }
});

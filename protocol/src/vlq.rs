//! Klipper's variable-length quantity: 7 bits a byte, most significant
//! first, with the top bits of the first byte giving the sign so that small
//! negative numbers stay short. Values are 32-bit and wrap.

use crate::ParseError;

/// Longest encoding of a 32-bit value.
pub const MAX_VLQ_LEN: usize = 5;

/// Number of bytes `v` encodes to.
#[inline]
pub fn encoded_len(v: u32) -> usize {
    let sv = v as i32;
    if (-(1 << 5)..(3 << 5)).contains(&sv) {
        1
    } else if (-(1 << 12)..(3 << 12)).contains(&sv) {
        2
    } else if (-(1 << 19)..(3 << 19)).contains(&sv) {
        3
    } else if (-(1 << 26)..(3 << 26)).contains(&sv) {
        4
    } else {
        5
    }
}

/// Encode `v` at the start of `out`, returning the bytes written.
/// `out` must hold at least [`encoded_len`] bytes (5 always suffice).
#[inline]
pub fn encode(v: u32, out: &mut [u8]) -> usize {
    let n = encoded_len(v);
    for (i, b) in out[..n].iter_mut().enumerate() {
        let shift = 7 * (n - 1 - i);
        let bits = ((v >> shift) & 0x7f) as u8;
        *b = if i + 1 < n { bits | 0x80 } else { bits };
    }
    n
}

/// Append the encoding of `v` to `out`.
pub fn push(v: u32, out: &mut Vec<u8>) {
    let mut tmp = [0u8; MAX_VLQ_LEN];
    let n = encode(v, &mut tmp);
    out.extend_from_slice(&tmp[..n]);
}

/// Decode a value at `*pos`, advancing it. Accepts exactly what the
/// reference's parser accepts, but never reads past the end of `data`.
#[inline]
pub fn decode(data: &[u8], pos: &mut usize) -> Result<u32, ParseError> {
    let mut p = *pos;
    let mut c = *data.get(p).ok_or(ParseError::Truncated)?;
    p += 1;
    let mut v = (c & 0x7f) as u32;
    if c & 0x60 == 0x60 {
        v |= (-0x20i32) as u32;
    }
    while c & 0x80 != 0 {
        c = *data.get(p).ok_or(ParseError::Truncated)?;
        p += 1;
        v = (v << 7) | (c & 0x7f) as u32;
    }
    *pos = p;
    Ok(v)
}

/// Bytes of an encoded message id. Message ids are numbered 0..16384 and
/// sent as one byte below 0x80, otherwise as two (the reference's layout).
#[inline]
pub fn encode_msgid(encoded_id: u16, out: &mut [u8]) -> usize {
    if encoded_id >= 0x80 {
        out[0] = ((encoded_id >> 7) as u8) | 0x80;
        out[1] = (encoded_id & 0x7f) as u8;
        2
    } else {
        out[0] = encoded_id as u8;
        1
    }
}

/// Parse a message id written by [`encode_msgid`].
#[inline]
pub fn decode_msgid(data: &[u8], pos: &mut usize) -> Result<u16, ParseError> {
    let c = *data.get(*pos).ok_or(ParseError::Truncated)? as u16;
    if c & 0x80 != 0 {
        let c2 = *data.get(*pos + 1).ok_or(ParseError::Truncated)? as u16;
        *pos += 2;
        Ok(((c & 0x7f) << 7) | (c2 & 0x7f))
    } else {
        *pos += 1;
        Ok(c)
    }
}

/// The number a host reads for an encoded id: its bytes decoded as a VLQ
/// (so some ids are negative). The data dictionary lists ids in this form.
pub fn msgid_dictionary_value(encoded_id: u16) -> i32 {
    let mut b = [0u8; 2];
    let n = encode_msgid(encoded_id, &mut b);
    let mut pos = 0;
    decode(&b[..n], &mut pos).expect("complete msgid") as i32
}

/// The encoded id for a dictionary value (inverse of
/// [`msgid_dictionary_value`]), or `None` if it is not a 1-2 byte id.
pub fn msgid_from_dictionary_value(v: i32) -> Option<u16> {
    let mut b = [0u8; MAX_VLQ_LEN];
    let n = encode(v as u32, &mut b);
    let mut pos = 0;
    let id = decode_msgid(&b[..n], &mut pos).ok()?;
    (pos == n && id < (1 << 14)).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(v: u32) {
        let mut b = [0u8; 5];
        let n = encode(v, &mut b);
        assert_eq!(n, encoded_len(v));
        let mut p = 0;
        assert_eq!(decode(&b[..n], &mut p), Ok(v));
        assert_eq!(p, n);
    }

    #[test]
    fn known_encodings() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (95, &[0x5f]),
            (96, &[0x80, 0x60]),
            (-1, &[0x7f]),
            (-32, &[0x60]),
            (-33, &[0xff, 0x5f]),
            (0x7fff_ffff, &[0x87, 0xff, 0xff, 0xff, 0x7f]),
            (0xffff_ffff, &[0x7f]),
            (50_000_000, &[0x97, 0xeb, 0xe1, 0x00]),
        ];
        for (v, bytes) in cases {
            let v = *v as u32;
            let mut b = [0u8; 5];
            let n = encode(v, &mut b);
            assert_eq!(&b[..n], *bytes, "value {v:#x}");
            rt(v);
        }
    }

    #[test]
    fn boundaries() {
        for base in [
            0i64,
            96,
            3 << 12,
            3 << 19,
            3 << 26,
            -32,
            -(1 << 12),
            -(1 << 19),
            -(1 << 26),
        ] {
            for d in -2..=2 {
                rt((base + d) as u32);
            }
        }
        rt(i32::MIN as u32);
        rt(i32::MAX as u32);
    }

    #[test]
    fn truncated() {
        let mut p = 0;
        assert_eq!(decode(&[0x81], &mut p), Err(ParseError::Truncated));
        assert_eq!(decode(&[], &mut p), Err(ParseError::Truncated));
        assert_eq!(decode_msgid(&[0x81], &mut p), Err(ParseError::Truncated));
    }

    #[test]
    fn msgids() {
        // Ids from 12288 up alias smaller ones in dictionary form; the
        // reference never gets near them.
        for id in 0..12288u16 {
            let mut b = [0u8; 2];
            let n = encode_msgid(id, &mut b);
            let mut p = 0;
            assert_eq!(decode_msgid(&b[..n], &mut p), Ok(id));
            let dv = msgid_dictionary_value(id);
            assert_eq!(msgid_from_dictionary_value(dv), Some(id));
            // A host parsing the bytes as a VLQ gets the dictionary value.
            let mut p = 0;
            assert_eq!(decode(&b[..n], &mut p), Ok(dv as u32));
        }
        assert_eq!(msgid_dictionary_value(96), -32);
        assert_eq!(msgid_dictionary_value(200), 200);
    }
}

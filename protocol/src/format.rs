//! Message-format strings (`"name a=%u b=%*s"`), their parameter types, and
//! encoding and decoding of messages.
//!
//! Two levels: [`parse_args`] and [`encode_args`] work on fixed slices and
//! never allocate (the MCU's real-time path); [`MessageFormat`] with
//! [`Value`] is the convenient, allocating host-side form.

use crate::vlq;
use crate::ParseError;

/// A parameter's type, from its `%` specifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamType {
    /// `%u`
    U32,
    /// `%i`
    I32,
    /// `%hu`
    U16,
    /// `%hi`
    I16,
    /// `%c`
    Byte,
    /// `%s`: a string (length-prefixed on the wire).
    String,
    /// `%*s`: a length-prefixed byte buffer.
    Buffer,
    /// `%.*s`: a length-prefixed buffer from constant data (identify).
    ProgmemBuffer,
}

impl ParamType {
    /// The type of a `%` specifier (without the `%`), e.g. `"hu"`.
    pub fn from_spec(spec: &str) -> Option<ParamType> {
        Some(match spec {
            "u" => ParamType::U32,
            "i" => ParamType::I32,
            "hu" => ParamType::U16,
            "hi" => ParamType::I16,
            "c" => ParamType::Byte,
            "s" => ParamType::String,
            "*s" => ParamType::Buffer,
            ".*s" => ParamType::ProgmemBuffer,
            _ => return None,
        })
    }

    pub fn is_buffer(self) -> bool {
        matches!(
            self,
            ParamType::String | ParamType::Buffer | ParamType::ProgmemBuffer
        )
    }

    /// An integer as the host sees it: truncated to the type's width and
    /// sign-extended for the signed types.
    pub fn int_value(self, raw: u32) -> i64 {
        match self {
            ParamType::U32 => raw as i64,
            ParamType::I32 => raw as i32 as i64,
            ParamType::U16 => (raw & 0xffff) as i64,
            ParamType::I16 => raw as u16 as i16 as i64,
            ParamType::Byte => (raw & 0xff) as i64,
            _ => raw as i64,
        }
    }
}

/// Parse a command's arguments at `*pos` into `args`, the reference's way:
/// each integer takes one slot; each buffer takes two, its length and then
/// its offset in `data`. `end` is where the message's payload ends.
/// Returns the number of slots filled.
#[inline]
pub fn parse_args(
    types: &[ParamType],
    data: &[u8],
    end: usize,
    pos: &mut usize,
    args: &mut [u32],
) -> Result<usize, ParseError> {
    let data = &data[..end];
    let mut slot = 0;
    for t in types {
        if *pos >= data.len() {
            return Err(ParseError::Truncated);
        }
        if t.is_buffer() {
            let len = data[*pos] as usize;
            *pos += 1;
            if *pos + len > data.len() {
                return Err(ParseError::BufferOverrun);
            }
            *args.get_mut(slot).ok_or(ParseError::BadFormat)? = len as u32;
            *args.get_mut(slot + 1).ok_or(ParseError::BadFormat)? = *pos as u32;
            slot += 2;
            *pos += len;
        } else {
            *args.get_mut(slot).ok_or(ParseError::BadFormat)? = vlq::decode(data, pos)?;
            slot += 1;
        }
    }
    Ok(slot)
}

/// One argument of an outgoing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg<'a> {
    Int(u32),
    Bytes(&'a [u8]),
}

/// Encode `args` (one per parameter) after a message id into `out`,
/// returning the bytes written, or `None` if `out` is too small or the
/// arguments do not fit the types. A buffer longer than 255 bytes or than
/// the space left is an error, never silently cut.
#[inline]
pub fn encode_args(types: &[ParamType], args: &[Arg], out: &mut [u8]) -> Option<usize> {
    if types.len() != args.len() {
        return None;
    }
    let mut n = 0;
    for (t, a) in types.iter().zip(args) {
        match (t.is_buffer(), a) {
            (false, Arg::Int(v)) => {
                if out.len() - n < vlq::encoded_len(*v) {
                    return None;
                }
                n += vlq::encode(*v, &mut out[n..]);
            }
            (true, Arg::Bytes(b)) => {
                if b.len() > 255 || out.len() - n < 1 + b.len() {
                    return None;
                }
                out[n] = b.len() as u8;
                out[n + 1..n + 1 + b.len()].copy_from_slice(b);
                n += 1 + b.len();
            }
            _ => return None,
        }
    }
    Some(n)
}

/// A parsed message format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFormat {
    /// The whole format string, as in the dictionary.
    pub format: String,
    /// The message name (first word).
    pub name: String,
    /// Parameter names and types, in order.
    pub params: Vec<(String, ParamType)>,
}

/// A decoded or to-be-encoded parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
}

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            Value::Bytes(_) => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            Value::Int(_) => None,
        }
    }
}

impl MessageFormat {
    /// Parse `"name p1=%u p2=%*s"`.
    pub fn parse(format: &str) -> Result<MessageFormat, ParseError> {
        let mut words = format.split_whitespace();
        let name = words.next().ok_or(ParseError::BadFormat)?.to_string();
        let mut params = Vec::new();
        for w in words {
            let (pname, spec) = w.split_once('=').ok_or(ParseError::BadFormat)?;
            let spec = spec.strip_prefix('%').ok_or(ParseError::BadFormat)?;
            let t = ParamType::from_spec(spec).ok_or(ParseError::BadFormat)?;
            if pname.is_empty() {
                return Err(ParseError::BadFormat);
            }
            params.push((pname.to_string(), t));
        }
        Ok(MessageFormat {
            format: format.to_string(),
            name,
            params,
        })
    }

    /// The parameter types, in order.
    pub fn types(&self) -> Vec<ParamType> {
        self.params.iter().map(|(_, t)| *t).collect()
    }

    /// Encode the parameters (message id excluded) and append them to `out`.
    pub fn encode(&self, values: &[Value], out: &mut Vec<u8>) -> Result<(), ParseError> {
        if values.len() != self.params.len() {
            return Err(ParseError::BadFormat);
        }
        for ((_, t), v) in self.params.iter().zip(values) {
            match (t.is_buffer(), v) {
                (false, Value::Int(i)) => vlq::push(*i as u32, out),
                (true, Value::Bytes(b)) if b.len() <= 255 => {
                    out.push(b.len() as u8);
                    out.extend_from_slice(b);
                }
                _ => return Err(ParseError::BadFormat),
            }
        }
        Ok(())
    }

    /// Decode the parameters at `*pos` (after the message id).
    pub fn decode(&self, data: &[u8], pos: &mut usize) -> Result<Vec<(String, Value)>, ParseError> {
        let mut out = Vec::with_capacity(self.params.len());
        for (name, t) in &self.params {
            let v = if t.is_buffer() {
                let len = *data.get(*pos).ok_or(ParseError::Truncated)? as usize;
                let start = *pos + 1;
                let b = data
                    .get(start..start + len)
                    .ok_or(ParseError::BufferOverrun)?;
                *pos = start + len;
                Value::Bytes(b.to_vec())
            } else {
                Value::Int(t.int_value(vlq::decode(data, pos)?))
            };
            out.push((name.clone(), v));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_formats() {
        let f = MessageFormat::parse("config is_config=%c crc=%u is_shutdown=%c move_count=%hu")
            .unwrap();
        assert_eq!(f.name, "config");
        assert_eq!(
            f.types(),
            vec![
                ParamType::Byte,
                ParamType::U32,
                ParamType::Byte,
                ParamType::U16
            ]
        );
        let f = MessageFormat::parse("identify_response offset=%u data=%.*s").unwrap();
        assert_eq!(f.types(), vec![ParamType::U32, ParamType::ProgmemBuffer]);
        let f = MessageFormat::parse("get_clock").unwrap();
        assert!(f.params.is_empty());
        assert!(MessageFormat::parse("x a=%q").is_err());
        assert!(MessageFormat::parse("x a").is_err());
        assert!(MessageFormat::parse("").is_err());
    }

    #[test]
    fn every_type_round_trips() {
        let f = MessageFormat::parse("m a=%u b=%i c=%hu d=%hi e=%c f=%*s g=%.*s h=%s").unwrap();
        let vals = vec![
            Value::Int(0xffff_fffe),
            Value::Int(-5),
            Value::Int(65535),
            Value::Int(-32768),
            Value::Int(255),
            Value::Bytes(vec![0, 0x7e, 0xff]),
            Value::Bytes(vec![]),
            Value::Bytes(b"hi".to_vec()),
        ];
        let mut out = Vec::new();
        f.encode(&vals, &mut out).unwrap();
        let mut pos = 0;
        let dec = f.decode(&out, &mut pos).unwrap();
        assert_eq!(pos, out.len());
        let got: Vec<Value> = dec.into_iter().map(|(_, v)| v).collect();
        assert_eq!(got, vals);
        // The allocation-free parser agrees.
        let mut args = [0u32; 16];
        let mut pos = 0;
        let n = parse_args(&f.types(), &out, out.len(), &mut pos, &mut args).unwrap();
        assert_eq!(n, 11);
        assert_eq!(args[0], 0xffff_fffe);
        assert_eq!(args[1] as i32, -5);
        assert_eq!(args[5], 3);
        let off = args[6] as usize;
        assert_eq!(&out[off..off + 3], &[0, 0x7e, 0xff]);
    }

    #[test]
    fn truncation_and_overrun_are_errors() {
        let f = MessageFormat::parse("m a=%u b=%*s").unwrap();
        let mut out = Vec::new();
        f.encode(&[Value::Int(1000), Value::Bytes(vec![1, 2, 3])], &mut out)
            .unwrap();
        let types = f.types();
        let mut args = [0u32; 4];
        for cut in 0..out.len() {
            let mut pos = 0;
            assert!(
                parse_args(&types, &out, cut, &mut pos, &mut args).is_err(),
                "cut {cut}"
            );
            let mut pos = 0;
            assert!(f.decode(&out[..cut], &mut pos).is_err());
        }
        // A length byte pointing past the end.
        let bad = [0x01, 0x09, 0x01];
        let mut pos = 0;
        assert_eq!(
            parse_args(&types, &bad, bad.len(), &mut pos, &mut args),
            Err(ParseError::BufferOverrun)
        );
    }

    #[test]
    fn encode_args_checks_space() {
        let types = [ParamType::U32, ParamType::Buffer];
        let mut out = [0u8; 8];
        assert_eq!(
            encode_args(&types, &[Arg::Int(5), Arg::Bytes(&[1, 2])], &mut out),
            Some(4)
        );
        assert_eq!(
            encode_args(&types, &[Arg::Int(5), Arg::Bytes(&[0; 7])], &mut out),
            None
        );
        assert_eq!(
            encode_args(&types, &[Arg::Bytes(&[]), Arg::Int(1)], &mut out),
            None
        );
        assert_eq!(encode_args(&types, &[Arg::Int(5)], &mut out), None);
    }
}

/// Most parameters a message may have.
pub const MAX_PARAMS: usize = 12;

/// A message's parameter types, worked out at compile time from its format
/// string so that the MCU's tables need no start-up parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamList {
    types: [ParamType; MAX_PARAMS],
    len: usize,
}

impl ParamList {
    /// Parse the parameter types of `format`; a malformed format is a
    /// compile-time error when called in a const context.
    pub const fn parse(format: &str) -> ParamList {
        let b = format.as_bytes();
        let mut types = [ParamType::U32; MAX_PARAMS];
        let mut len = 0;
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                // The specifier runs to the next space or the end.
                let mut j = i + 1;
                while j < b.len() && b[j] != b' ' {
                    j += 1;
                }
                let s = j - i - 1;
                let t = if s == 1 && b[i + 1] == b'u' {
                    ParamType::U32
                } else if s == 1 && b[i + 1] == b'i' {
                    ParamType::I32
                } else if s == 1 && b[i + 1] == b'c' {
                    ParamType::Byte
                } else if s == 1 && b[i + 1] == b's' {
                    ParamType::String
                } else if s == 2 && b[i + 1] == b'h' && b[i + 2] == b'u' {
                    ParamType::U16
                } else if s == 2 && b[i + 1] == b'h' && b[i + 2] == b'i' {
                    ParamType::I16
                } else if s == 2 && b[i + 1] == b'*' && b[i + 2] == b's' {
                    ParamType::Buffer
                } else if s == 3 && b[i + 1] == b'.' && b[i + 2] == b'*' && b[i + 3] == b's' {
                    ParamType::ProgmemBuffer
                } else {
                    panic!("bad format specifier");
                };
                assert!(len < MAX_PARAMS, "too many parameters");
                types[len] = t;
                len += 1;
                i = j;
            } else {
                i += 1;
            }
        }
        ParamList { types, len }
    }

    #[inline]
    pub fn as_slice(&self) -> &[ParamType] {
        &self.types[..self.len]
    }

    /// Argument slots [`parse_args`] fills (buffers take two).
    pub const fn slots(&self) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < self.len {
            n += match self.types[i] {
                ParamType::String | ParamType::Buffer | ParamType::ProgmemBuffer => 2,
                _ => 1,
            };
            i += 1;
        }
        n
    }
}

#[cfg(test)]
mod const_tests {
    use super::*;

    const L: ParamList = ParamList::parse("m a=%u b=%i c=%hu d=%hi e=%c f=%*s g=%.*s h=%s");

    #[test]
    fn const_parse_agrees_with_runtime_parse() {
        let f = MessageFormat::parse("m a=%u b=%i c=%hu d=%hi e=%c f=%*s g=%.*s h=%s").unwrap();
        assert_eq!(L.as_slice(), f.types().as_slice());
        assert_eq!(L.slots(), 11);
        assert!(ParamList::parse("get_clock").as_slice().is_empty());
    }
}

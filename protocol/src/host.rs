//! A small host-side codec: frames commands with sequence numbers, finds
//! blocks in the MCU's output and decodes their messages. Used by tests,
//! benchmarks and tools; klippy's own library does the same in Python.

use crate::block::{
    check_frame, frame_vec, FrameError, MESSAGE_DEST, MESSAGE_HEADER_SIZE, MESSAGE_PAYLOAD_MAX,
    MESSAGE_SEQ_MASK, MESSAGE_SYNC, MESSAGE_TRAILER_SIZE,
};
use crate::dictionary::Dictionary;
use crate::format::Value;
use crate::vlq;
use crate::ParseError;

/// A decoded message from the MCU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub name: String,
    pub params: Vec<(String, Value)>,
}

impl Response {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
    /// An integer parameter; panics when absent (for tests and tools).
    pub fn int(&self, name: &str) -> i64 {
        self.get(name)
            .and_then(Value::as_int)
            .unwrap_or_else(|| panic!("{}: no integer {name}", self.name))
    }
    pub fn bytes(&self, name: &str) -> &[u8] {
        self.get(name)
            .and_then(Value::as_bytes)
            .unwrap_or_else(|| panic!("{}: no buffer {name}", self.name))
    }
}

/// One block from the MCU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The sequence byte (the MCU's next expected sequence).
    pub seq: u8,
    pub payload: Vec<u8>,
}

/// Host-side codec state.
#[derive(Debug, Clone)]
pub struct HostCodec {
    pub dict: Dictionary,
    seq: u8,
    rx: Vec<u8>,
}

impl Default for HostCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl HostCodec {
    pub fn new() -> Self {
        HostCodec {
            dict: Dictionary::bootstrap(),
            seq: 0,
            rx: Vec::new(),
        }
    }

    /// Sequence number (0..16) the next block will carry.
    pub fn seq(&self) -> u8 {
        self.seq
    }

    pub fn set_seq(&mut self, seq: u8) {
        self.seq = seq & MESSAGE_SEQ_MASK;
    }

    /// Encode one command (id and arguments) by name.
    pub fn encode(&self, name: &str, values: &[Value]) -> Result<Vec<u8>, ParseError> {
        let m = self.dict.commands.get(name).ok_or(ParseError::UnknownId)?;
        let mut out = Vec::new();
        let mut id = [0u8; 2];
        let n = vlq::encode_msgid(m.id, &mut id);
        out.extend_from_slice(&id[..n]);
        m.format.encode(values, &mut out)?;
        Ok(out)
    }

    /// Encode a command written as text: `"name a=1 b=2"`; integer
    /// parameters only, or buffers written as hex (`data=0a0b`); pin-like
    /// values are resolved through the `pin` enumeration.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u8>, ParseError> {
        let mut words = text.split_whitespace();
        let name = words.next().ok_or(ParseError::BadFormat)?;
        let m = self.dict.commands.get(name).ok_or(ParseError::UnknownId)?;
        let given: Vec<(&str, &str)> = words
            .map(|w| w.split_once('=').ok_or(ParseError::BadFormat))
            .collect::<Result<_, _>>()?;
        let mut values = Vec::new();
        for (pname, t) in &m.format.params {
            let (_, v) = given
                .iter()
                .find(|(n, _)| n == pname)
                .ok_or(ParseError::BadFormat)?;
            if t.is_buffer() {
                let bytes = (0..v.len() / 2)
                    .map(|i| u8::from_str_radix(&v[2 * i..2 * i + 2], 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|_| ParseError::BadFormat)?;
                values.push(Value::Bytes(bytes));
            } else if let Ok(i) = v.parse::<i64>() {
                values.push(Value::Int(i));
            } else {
                let i = self
                    .dict
                    .enum_value("pin", v)
                    .ok_or(ParseError::BadFormat)?;
                values.push(Value::Int(i));
            }
        }
        self.encode(name, &values)
    }

    /// Frame a payload into a block with the next sequence number.
    pub fn frame(&mut self, payload: &[u8]) -> Vec<u8> {
        let b = frame_vec(MESSAGE_DEST | self.seq, payload);
        self.seq = (self.seq + 1) & MESSAGE_SEQ_MASK;
        b
    }

    /// Pack encoded commands into as few blocks as fit, in order.
    /// Panics if one command alone exceeds a block's payload.
    pub fn frame_all(&mut self, cmds: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut payload = Vec::new();
        for c in cmds {
            assert!(
                c.len() <= MESSAGE_PAYLOAD_MAX,
                "command larger than a block"
            );
            if !payload.is_empty() && payload.len() + c.len() > MESSAGE_PAYLOAD_MAX {
                out.extend(self.frame(&payload));
                payload.clear();
            }
            payload.extend_from_slice(c);
        }
        if !payload.is_empty() {
            out.extend(self.frame(&payload));
        }
        out
    }

    /// Feed bytes read from the MCU; returns the complete valid blocks.
    /// Bad bytes are skipped up to the next sync byte.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Block> {
        self.rx.extend_from_slice(data);
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < self.rx.len() {
            match check_frame(&self.rx[pos..]) {
                Ok(None) => break,
                Ok(Some(len)) => {
                    let b = &self.rx[pos..pos + len];
                    out.push(Block {
                        seq: b[1],
                        payload: b[MESSAGE_HEADER_SIZE..len - MESSAGE_TRAILER_SIZE].to_vec(),
                    });
                    pos += len;
                }
                Err(
                    FrameError::BadLength
                    | FrameError::BadSequence
                    | FrameError::NoSync
                    | FrameError::BadCrc,
                ) => match self.rx[pos..].iter().position(|&b| b == MESSAGE_SYNC) {
                    Some(i) => pos += i + 1,
                    None => pos = self.rx.len(),
                },
            }
        }
        self.rx.drain(..pos);
        out
    }

    /// Decode every message of a block's payload.
    pub fn decode(&self, payload: &[u8]) -> Result<Vec<Response>, ParseError> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < payload.len() {
            let id = vlq::decode_msgid(payload, &mut pos)?;
            let m = self.dict.responses.get(&id).ok_or(ParseError::UnknownId)?;
            let params = m.format.decode(payload, &mut pos)?;
            out.push(Response {
                name: m.format.name.clone(),
                params,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identify_round_trip() {
        let mut h = HostCodec::new();
        let cmd = h.encode_text("identify offset=0 count=40").unwrap();
        assert_eq!(cmd, vec![1, 0, 40]);
        let blk = h.frame(&cmd);
        assert_eq!(blk[1], 0x10);
        assert_eq!(h.seq(), 1);
        // A response block split across reads, after garbage.
        let mut resp = vec![0u8];
        vlq::push(0, &mut resp);
        resp.push(3);
        resp.extend_from_slice(b"abc");
        let rb = frame_vec(0x11, &resp);
        let mut stream = vec![0x01, 0x02, 0x7e];
        stream.extend_from_slice(&rb);
        assert!(h.feed(&stream[..6]).is_empty());
        let blocks = h.feed(&stream[6..]);
        assert_eq!(blocks.len(), 1);
        let msgs = h.decode(&blocks[0].payload).unwrap();
        assert_eq!(msgs[0].name, "identify_response");
        assert_eq!(msgs[0].bytes("data"), b"abc");
    }
}

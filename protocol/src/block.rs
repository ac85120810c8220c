//! Message blocks: `len seq payload crc_hi crc_lo 0x7e`, 5 to 64 bytes.
//!
//! [`Receiver`] is the MCU's receiving state machine, with the reference's
//! rules: leading sync bytes are ignored silently; a block that fails its
//! checks makes the receiver discard bytes up to the next sync byte, with
//! one nak per bad stretch; a valid block with the wrong sequence number is
//! nak'ed and dropped (the host retransmits it); every good block is
//! acknowledged by the caller after it is dispatched.

use crate::crc::crc16;

pub const MESSAGE_MIN: usize = 5;
pub const MESSAGE_MAX: usize = 64;
pub const MESSAGE_HEADER_SIZE: usize = 2;
pub const MESSAGE_TRAILER_SIZE: usize = 3;
/// Largest payload a block carries.
pub const MESSAGE_PAYLOAD_MAX: usize = MESSAGE_MAX - MESSAGE_MIN;
pub const MESSAGE_POS_LEN: usize = 0;
pub const MESSAGE_POS_SEQ: usize = 1;
pub const MESSAGE_SYNC: u8 = 0x7e;
pub const MESSAGE_DEST: u8 = 0x10;
pub const MESSAGE_SEQ_MASK: u8 = 0x0f;

/// Fill in the header and trailer of a block whose payload already sits at
/// `buf[2..len-3]`. `len` is the whole block's length.
#[inline]
pub fn finish_block(buf: &mut [u8], len: usize, seq: u8) {
    debug_assert!((MESSAGE_MIN..=MESSAGE_MAX).contains(&len));
    buf[MESSAGE_POS_LEN] = len as u8;
    buf[MESSAGE_POS_SEQ] = seq;
    let crc = crc16(&buf[..len - MESSAGE_TRAILER_SIZE]);
    buf[len - 3] = (crc >> 8) as u8;
    buf[len - 2] = crc as u8;
    buf[len - 1] = MESSAGE_SYNC;
}

/// Frame `payload` (at most [`MESSAGE_PAYLOAD_MAX`] bytes) into `out`,
/// returning the block's length.
pub fn frame(seq: u8, payload: &[u8], out: &mut [u8]) -> usize {
    assert!(payload.len() <= MESSAGE_PAYLOAD_MAX, "payload too large");
    let len = payload.len() + MESSAGE_MIN;
    out[MESSAGE_HEADER_SIZE..MESSAGE_HEADER_SIZE + payload.len()].copy_from_slice(payload);
    finish_block(out, len, seq);
    len
}

/// Frame `payload` into a new vector.
pub fn frame_vec(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; payload.len() + MESSAGE_MIN];
    frame(seq, payload, &mut out);
    out
}

/// Why a candidate block was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The length byte is outside 5..=64.
    BadLength,
    /// The sequence byte lacks the destination bits.
    BadSequence,
    /// The last byte is not the sync byte.
    NoSync,
    /// The checksum does not match.
    BadCrc,
}

/// Check for a whole, well-formed block at the start of `buf` without
/// looking at its sequence number. `Ok(None)`: more data is needed.
pub fn check_frame(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    if buf.len() < MESSAGE_MIN {
        return Ok(None);
    }
    let len = buf[MESSAGE_POS_LEN] as usize;
    if !(MESSAGE_MIN..=MESSAGE_MAX).contains(&len) {
        return Err(FrameError::BadLength);
    }
    if buf[MESSAGE_POS_SEQ] & !MESSAGE_SEQ_MASK != MESSAGE_DEST {
        return Err(FrameError::BadSequence);
    }
    if buf.len() < len {
        return Ok(None);
    }
    if buf[len - 1] != MESSAGE_SYNC {
        return Err(FrameError::NoSync);
    }
    let crc = ((buf[len - 3] as u16) << 8) | buf[len - 2] as u16;
    if crc16(&buf[..len - MESSAGE_TRAILER_SIZE]) != crc {
        return Err(FrameError::BadCrc);
    }
    Ok(Some(len))
}

/// What [`Receiver::find_block`] found at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Not enough data yet: keep it and read more.
    NeedMore,
    /// A valid block of `len` bytes with the expected sequence: dispatch
    /// its payload, then send an ack, then drop `len` bytes.
    Block { len: usize },
    /// Drop `count` bytes; if `nak`, send a nak (an empty block carrying
    /// the expected sequence number).
    Skip { count: usize, nak: bool },
}

/// The MCU's receive-side sequencing and resynchronisation state.
#[derive(Debug, Clone)]
pub struct Receiver {
    next_sequence: u8,
    need_sync: bool,
    need_valid: bool,
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new()
    }
}

impl Receiver {
    pub const fn new() -> Self {
        Receiver {
            next_sequence: MESSAGE_DEST,
            need_sync: false,
            need_valid: false,
        }
    }

    /// The sequence byte acks and naks carry (and responses too).
    #[inline]
    pub fn next_sequence(&self) -> u8 {
        self.next_sequence
    }

    /// Examine the start of `buf` (the reference looks at most
    /// [`MESSAGE_MAX`] bytes at a time; any length works here).
    pub fn find_block(&mut self, buf: &[u8]) -> Found {
        if !buf.is_empty() && self.need_sync {
            return self.discard_to_sync(buf);
        }
        match check_frame(buf) {
            Ok(None) => Found::NeedMore,
            Ok(Some(len)) => {
                self.need_valid = false;
                let seq = buf[MESSAGE_POS_SEQ];
                if seq != self.next_sequence {
                    // Lost a block: drop this one until it is retransmitted.
                    return Found::Skip {
                        count: len,
                        nak: true,
                    };
                }
                self.next_sequence = ((seq + 1) & MESSAGE_SEQ_MASK) | MESSAGE_DEST;
                Found::Block { len }
            }
            Err(_) => {
                if buf[0] == MESSAGE_SYNC {
                    return Found::Skip {
                        count: 1,
                        nak: false,
                    };
                }
                self.need_sync = true;
                self.discard_to_sync(buf)
            }
        }
    }

    fn discard_to_sync(&mut self, buf: &[u8]) -> Found {
        let window = &buf[..buf.len().min(MESSAGE_MAX)];
        let count = match window.iter().position(|&b| b == MESSAGE_SYNC) {
            Some(i) => {
                self.need_sync = false;
                i + 1
            }
            None => window.len(),
        };
        let nak = !self.need_valid;
        self.need_valid = true;
        Found::Skip { count, nak }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blk(seq: u8, payload: &[u8]) -> Vec<u8> {
        frame_vec(MESSAGE_DEST | (seq & MESSAGE_SEQ_MASK), payload)
    }

    #[test]
    fn frames_like_the_reference() {
        // An empty ack with sequence 0x11, as klippy expects it.
        let b = blk(1, &[]);
        assert_eq!(b.len(), 5);
        assert_eq!(b[0], 5);
        assert_eq!(b[1], 0x11);
        assert_eq!(b[4], 0x7e);
        assert_eq!(check_frame(&b), Ok(Some(5)));
    }

    #[test]
    fn accepts_in_sequence_and_naks_out_of_sequence() {
        let mut r = Receiver::new();
        let b0 = blk(0, &[1, 2]);
        assert_eq!(r.find_block(&b0), Found::Block { len: 7 });
        assert_eq!(r.next_sequence(), 0x11);
        // A repeat of block 0 is nak'ed and dropped.
        assert_eq!(
            r.find_block(&b0),
            Found::Skip {
                count: 7,
                nak: true
            }
        );
        let b1 = blk(1, &[3]);
        assert_eq!(r.find_block(&b1), Found::Block { len: 6 });
        // Sequence numbers wrap at 16.
        for s in 2..20u8 {
            assert_eq!(r.find_block(&blk(s, &[])), Found::Block { len: 5 });
        }
        assert_eq!(r.next_sequence(), MESSAGE_DEST | 4);
    }

    #[test]
    fn leading_sync_is_silent() {
        let mut r = Receiver::new();
        assert_eq!(
            r.find_block(&[0x7e; 6]),
            Found::Skip {
                count: 1,
                nak: false
            }
        );
        // Fewer bytes than a block: wait, as the reference does.
        assert_eq!(r.find_block(&[0x7e, 0x7e]), Found::NeedMore);
    }

    #[test]
    fn garbage_is_naked_once_per_stretch() {
        let mut r = Receiver::new();
        let mut data = vec![0xffu8; 100];
        data.push(MESSAGE_SYNC);
        let mut naks = 0;
        let mut pos = 0;
        loop {
            match r.find_block(&data[pos..]) {
                Found::Skip { count, nak } => {
                    naks += nak as usize;
                    pos += count;
                }
                Found::NeedMore => break,
                Found::Block { .. } => panic!("garbage accepted"),
            }
        }
        assert_eq!(pos, data.len());
        assert_eq!(naks, 1);
        // A good block afterwards is accepted and re-arms the nak.
        assert_eq!(r.find_block(&blk(0, &[9])), Found::Block { len: 6 });
        assert_eq!(
            r.find_block(&[1, 2, 3, 4, 5, 0x7e]),
            Found::Skip {
                count: 6,
                nak: true
            }
        );
    }

    #[test]
    fn bad_crc_discards_to_sync() {
        let mut r = Receiver::new();
        let mut b = blk(0, &[1, 2, 3]);
        b[3] ^= 0x40;
        let good = blk(0, &[4]);
        let mut data = b.clone();
        data.extend_from_slice(&good);
        assert_eq!(
            r.find_block(&data),
            Found::Skip {
                count: b.len(),
                nak: true
            }
        );
        assert_eq!(
            r.find_block(&data[b.len()..]),
            Found::Block { len: good.len() }
        );
    }

    #[test]
    fn truncated_waits() {
        let mut r = Receiver::new();
        let b = blk(0, &[1, 2, 3, 4]);
        for n in 0..b.len() {
            assert_eq!(r.find_block(&b[..n]), Found::NeedMore, "prefix {n}");
        }
        assert_eq!(r.find_block(&b), Found::Block { len: b.len() });
    }
}

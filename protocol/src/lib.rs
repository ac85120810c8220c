//! Klipper's MCU wire protocol, usable by an MCU and by a host.
//!
//! - [`vlq`]: the variable-length integer encoding and message ids;
//! - [`crc`]: the block checksum;
//! - [`block`]: message blocks, framing and the receiving state machine
//!   with the reference's ack/nak/resync rules;
//! - [`format`]: message-format strings, parameter types, and encoding and
//!   decoding of whole messages;
//! - [`dictionary`]: the data dictionary (building, compressing, parsing);
//! - [`host`]: a small host-side codec built from the pieces above.

pub mod block;
pub mod crc;
pub mod dictionary;
pub mod format;
pub mod host;
pub mod vlq;

/// Why a message could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The data ended before the value did.
    Truncated,
    /// A buffer's length prefix points past the end of the message.
    BufferOverrun,
    /// The message id is not known.
    UnknownId,
    /// The format string could not be understood.
    BadFormat,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            ParseError::Truncated => "message truncated",
            ParseError::BufferOverrun => "buffer length past end of message",
            ParseError::UnknownId => "unknown message id",
            ParseError::BadFormat => "bad message format",
        };
        f.write_str(s)
    }
}

impl std::error::Error for ParseError {}

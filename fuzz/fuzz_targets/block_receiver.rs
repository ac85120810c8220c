//! The MCU's block receiver (framing, CRC, sequencing, resync) fed an
//! arbitrary byte stream in arbitrary read sizes, through the same fixed
//! receive buffer the console uses. Checks that every decision makes
//! progress, that a full window always decides (a receive buffer can never
//! fill with bytes it waits on: a stall), that dispatched blocks are valid
//! and in sequence, and that the outcome does not depend on how the
//! stream was cut into reads.
#![no_main]

use klipper_protocol::block::{
    check_frame, Found, Receiver, MESSAGE_DEST, MESSAGE_MAX, MESSAGE_POS_SEQ, MESSAGE_SEQ_MASK,
};
use libfuzzer_sys::fuzz_target;

/// As the console's receive buffer.
const RECEIVE_SIZE: usize = 4096;

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Block(Vec<u8>),
    Nak(u8),
}

/// Feed `data` in reads whose sizes come from `cuts`, as the console does.
fn run(data: &[u8], cuts: &[u8]) -> Vec<Event> {
    let mut rx = [0u8; RECEIVE_SIZE];
    let mut rx_len = 0;
    let mut receiver = Receiver::new();
    let mut events = Vec::new();
    let mut fed = 0;
    let mut cut = 0;
    while fed < data.len() {
        let want = match cuts.get(cut) {
            Some(&c) => c as usize + 1,
            None => data.len(),
        };
        cut += 1;
        let n = want.min(data.len() - fed).min(RECEIVE_SIZE - rx_len);
        assert!(n > 0, "receive buffer full of undecided bytes: stalled");
        rx[rx_len..rx_len + n].copy_from_slice(&data[fed..fed + n]);
        rx_len += n;
        fed += n;
        let mut pos = 0;
        while pos < rx_len {
            let buf = &rx[pos..rx_len];
            let expected = receiver.next_sequence();
            match receiver.find_block(buf) {
                Found::NeedMore => {
                    assert!(buf.len() < MESSAGE_MAX, "a full window left undecided");
                    break;
                }
                Found::Block { len } => {
                    assert!(len <= buf.len());
                    assert_eq!(check_frame(buf), Ok(Some(len)));
                    assert_eq!(buf[MESSAGE_POS_SEQ], expected);
                    let next = receiver.next_sequence();
                    assert_eq!(next & !MESSAGE_SEQ_MASK, MESSAGE_DEST);
                    assert_eq!(next & MESSAGE_SEQ_MASK, (expected + 1) & MESSAGE_SEQ_MASK);
                    events.push(Event::Block(buf[..len].to_vec()));
                    pos += len;
                }
                Found::Skip { count, nak } => {
                    assert!(count >= 1 && count <= buf.len(), "no progress");
                    assert_eq!(receiver.next_sequence(), expected);
                    if nak {
                        events.push(Event::Nak(expected));
                    }
                    pos += count;
                }
            }
        }
        rx.copy_within(pos..rx_len, 0);
        rx_len -= pos;
    }
    events
}

fuzz_target!(|input: &[u8]| {
    // First byte: how many of the following bytes give read sizes.
    let Some((&ncuts, rest)) = input.split_first() else {
        return;
    };
    let ncuts = (ncuts as usize).min(rest.len());
    let (cuts, data) = rest.split_at(ncuts);
    let whole = run(data, &[]);
    let chunked = run(data, cuts);
    assert_eq!(whole, chunked, "the outcome depends on read boundaries");
});

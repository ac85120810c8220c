//! The move queue: a pool of `move_count` fixed-size entries shared by all
//! objects that queue timed events (digital outputs, steppers, ...), each
//! object keeping its own FIFO of entries. Allocated once when the
//! configuration is finalized; pushing and popping never allocate.

use crate::shutdown::Shutdown;

pub const MOVE_QUEUE_OVERFLOW: Shutdown = Shutdown("Move queue overflow");

const NIL: u32 = u32::MAX;

/// One queued event; its owner decides what the fields mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Move {
    pub a: u32,
    pub b: u32,
    pub c: u32,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    mv: Move,
    next: u32,
}

#[derive(Debug)]
pub struct MovePool {
    /// Entries ever used; grows within the capacity reserved up front.
    nodes: Vec<Node>,
    free: u32,
    count: usize,
}

/// The pool before `finalize_config` allocates it: empty, so a move
/// queued then overflows (a shutdown, as in the reference) instead of
/// indexing a node that is not there.
impl Default for MovePool {
    fn default() -> Self {
        MovePool::new(0)
    }
}

/// An object's FIFO of moves in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveQueue {
    head: u32,
    tail: u32,
}

impl Default for MoveQueue {
    fn default() -> Self {
        MoveQueue {
            head: NIL,
            tail: NIL,
        }
    }
}

impl MovePool {
    pub fn new(count: usize) -> MovePool {
        // Reserved, not filled: entries are taken from the reserve only as
        // the host first needs them, so an idle MCU keeps the pool's
        // untouched pages out of its resident memory.
        MovePool {
            nodes: Vec::with_capacity(count),
            free: NIL,
            count,
        }
    }

    pub fn capacity(&self) -> usize {
        self.count
    }

    /// A free entry: a released one, else one from the reserve (never
    /// past the capacity, so never a reallocation).
    #[inline]
    fn take(&mut self) -> Option<u32> {
        if self.free != NIL {
            let i = self.free;
            self.free = self.nodes[i as usize].next;
            return Some(i);
        }
        let i = self.nodes.len();
        if i == self.count {
            return None;
        }
        self.nodes.push(Node {
            mv: Move::default(),
            next: NIL,
        });
        Some(i as u32)
    }

    /// Append to `q`. Returns true if it is now the only entry.
    pub fn push(&mut self, q: &mut MoveQueue, mv: Move) -> Result<bool, Shutdown> {
        let i = self.take().ok_or(MOVE_QUEUE_OVERFLOW)?;
        self.nodes[i as usize] = Node { mv, next: NIL };
        if q.tail == NIL {
            q.head = i;
            q.tail = i;
            Ok(true)
        } else {
            self.nodes[q.tail as usize].next = i;
            q.tail = i;
            Ok(false)
        }
    }

    pub fn first(&self, q: &MoveQueue) -> Option<Move> {
        (q.head != NIL).then(|| self.nodes[q.head as usize].mv)
    }

    pub fn pop(&mut self, q: &mut MoveQueue) -> Option<Move> {
        let i = q.head;
        if i == NIL {
            return None;
        }
        let n = self.nodes[i as usize];
        q.head = n.next;
        if q.head == NIL {
            q.tail = NIL;
        }
        self.nodes[i as usize].next = self.free;
        self.free = i;
        Some(n.mv)
    }

    pub fn clear(&mut self, q: &mut MoveQueue) {
        while self.pop(q).is_some() {}
    }
}

impl MoveQueue {
    pub fn is_empty(&self) -> bool {
        self.head == NIL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_per_queue_and_overflow() {
        let mut p = MovePool::new(3);
        let (mut a, mut b) = (MoveQueue::default(), MoveQueue::default());
        let m = |x| Move { a: x, b: 0, c: 0 };
        assert_eq!(p.push(&mut a, m(1)), Ok(true));
        assert_eq!(p.push(&mut b, m(10)), Ok(true));
        assert_eq!(p.push(&mut a, m(2)), Ok(false));
        assert_eq!(p.push(&mut a, m(3)), Err(MOVE_QUEUE_OVERFLOW));
        assert_eq!(p.pop(&mut a).map(|m| m.a), Some(1));
        assert_eq!(p.first(&a).map(|m| m.a), Some(2));
        assert_eq!(p.push(&mut b, m(11)), Ok(false));
        p.clear(&mut b);
        assert!(b.is_empty());
        assert_eq!(p.pop(&mut a).map(|m| m.a), Some(2));
        assert!(a.is_empty());
        // Everything is free again.
        for i in 0..3 {
            p.push(&mut a, m(i)).unwrap();
        }
    }
}

/// A queue of timed output values with a safety timeout, shared by the
/// hardware PWM and PCA9685 families (the reference's pwmcmds.c logic):
/// each value applies at its clock; a value other than the default must be
/// followed by another within `max_duration`, or the MCU shuts down.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimedValues {
    pub mq: MoveQueue,
    pub default_value: u32,
    pub max_duration: u32,
    /// The safety timeout is running (nothing queued after a non-default
    /// value).
    ending: bool,
}

/// The reasons a family gives for a missed or too-late update.
pub struct TimedReasons {
    pub missed: Shutdown,
    pub exceeds: Shutdown,
}

impl TimedValues {
    pub fn new(default_value: u32, max_duration: u32) -> TimedValues {
        TimedValues {
            mq: MoveQueue::default(),
            default_value,
            max_duration,
            ending: false,
        }
    }

    /// The timer fired at `waketime`: the value to apply now, and when to
    /// wake next (`None`: not again until something is queued).
    pub fn pop(
        &mut self,
        pool: &mut MovePool,
        waketime: u32,
        r: &TimedReasons,
    ) -> Result<(u32, Option<u32>), Shutdown> {
        if self.ending {
            return Err(r.missed);
        }
        let m = pool.pop(&mut self.mq).ok_or(r.missed)?;
        let value = m.b;
        let timed = value != self.default_value && self.max_duration != 0;
        let limit = waketime.wrapping_add(self.max_duration);
        match pool.first(&self.mq) {
            None if !timed => Ok((value, None)),
            None => {
                self.ending = true;
                Ok((value, Some(limit)))
            }
            Some(n) if timed && crate::clock::is_before(limit, n.a) => Err(r.exceeds),
            Some(n) => Ok((value, Some(n.a))),
        }
    }

    /// Queue `value` at `when`. Returns true if the timer must be
    /// (re)scheduled at `when`; `timer_wake` is when it is due now.
    pub fn push(
        &mut self,
        pool: &mut MovePool,
        when: u32,
        value: u32,
        timer_wake: Option<u32>,
        r: &TimedReasons,
    ) -> Result<bool, Shutdown> {
        if !pool.push(
            &mut self.mq,
            Move {
                a: when,
                b: value,
                c: 0,
            },
        )? {
            return Ok(false);
        }
        if self.ending && timer_wake.is_some_and(|end| crate::clock::is_before(end, when)) {
            return Err(r.exceeds);
        }
        self.ending = false;
        Ok(true)
    }

    pub fn clear(&mut self, pool: &mut MovePool) {
        self.ending = false;
        pool.clear(&mut self.mq);
    }
}

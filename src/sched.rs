//! Timers and load statistics.
//!
//! Timers are kept sorted by wake time (wrap-aware). Each entry carries
//! its callback and an argument (the index of the object it drives), as
//! the reference's `struct timer` carries its `func`: the queue runs any
//! family's timers without knowing the families. Storage is reserved up
//! front, so adding a timer in the real-time loop never allocates.

use crate::clock::{from_us, is_before};
use crate::command::Response;
use crate::shutdown::Shutdown;
use klipper_protocol::format::Arg;

/// A timer callback on context `C`: `(ctx, arg, waketime)`.
pub type TimerFn<C> = fn(&mut C, u32, u32) -> Result<TimerResult, Shutdown>;

/// One timer: the callback and its argument. Two timers are the same
/// timer when both match, so a family removes or re-adds its object's
/// timer by building the same value again. (Callbacks must be plain,
/// non-generic, non-`#[inline]` functions, so each has one address.)
pub struct TimerId<C> {
    pub func: TimerFn<C>,
    pub arg: u32,
}

impl<C> TimerId<C> {
    #[inline]
    pub const fn new(func: TimerFn<C>, arg: u32) -> TimerId<C> {
        TimerId { func, arg }
    }

    /// Run the callback.
    #[inline]
    pub fn run(self, ctx: &mut C, waketime: u32) -> Result<TimerResult, Shutdown> {
        (self.func)(ctx, self.arg, waketime)
    }
}

impl<C> Clone for TimerId<C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C> Copy for TimerId<C> {}

impl<C> PartialEq for TimerId<C> {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.arg == other.arg && self.func as usize == other.func as usize
    }
}

impl<C> Eq for TimerId<C> {}

impl<C> std::fmt::Debug for TimerId<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TimerId({:#x}, {})", self.func as usize, self.arg)
    }
}

/// What a timer callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerResult {
    Done,
    Reschedule(u32),
}

pub const TIMER_TOO_CLOSE: Shutdown = Shutdown("Timer too close");
pub const RESCHEDULED_IN_PAST: Shutdown = Shutdown("Rescheduled timer in the past");

/// How late the loop may fall behind before it gives up.
pub const MAX_TIMER_LATENESS: u32 = from_us(100_000);

const TIMER_CAPACITY: usize = 1024;

/// A scheduled timer, 16 bytes (a `(u32, TimerId)` pair would be 24): the
/// step path moves entries on every reschedule.
struct Entry<C> {
    waketime: u32,
    arg: u32,
    func: TimerFn<C>,
}

impl<C> Clone for Entry<C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C> Copy for Entry<C> {}

impl<C> Entry<C> {
    #[inline]
    fn id(&self) -> TimerId<C> {
        TimerId::new(self.func, self.arg)
    }
}

pub struct TimerQueue<C> {
    // Sorted: the soonest last, so popping is cheap.
    entries: Vec<Entry<C>>,
}

impl<C> Default for TimerQueue<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> TimerQueue<C> {
    pub fn new() -> TimerQueue<C> {
        TimerQueue {
            entries: Vec::with_capacity(TIMER_CAPACITY),
        }
    }

    /// Schedule `id` at `waketime`. A timer that would be the next to run
    /// and is already in the past is refused, as the reference does.
    pub fn add(&mut self, id: TimerId<C>, waketime: u32, now: u32) -> Result<(), Shutdown> {
        let first = self.next_wake();
        if first.is_none_or(|f| is_before(waketime, f)) && is_before(waketime, now) {
            return Err(TIMER_TOO_CLOSE);
        }
        self.insert(id, waketime);
        Ok(())
    }

    /// Insert without the past check (a reschedule from dispatch).
    #[inline]
    pub fn insert(&mut self, id: TimerId<C>, waketime: u32) {
        if self.entries.len() == self.entries.capacity() {
            // Grows only if a configuration asks for more than reserved.
            self.entries.reserve(TIMER_CAPACITY);
        }
        let new = Entry {
            waketime,
            arg: id.arg,
            func: id.func,
        };
        // Move the new entry from the end (the soonest) towards the front
        // past every entry due no later: entries in front of it then wake
        // strictly later, and equal wake times keep the order they were
        // added in. A step timer passes a handful of entries: an inline
        // loop beats a memmove call.
        self.entries.push(new);
        let e = self.entries.as_mut_ptr();
        let mut i = self.entries.len() - 1;
        // SAFETY: `i` starts at the last index and only `i - 1` (with
        // i > 0) and `i` are touched: all within the vector, which nothing
        // else borrows meanwhile. Unchecked because the bounds checks the
        // compiler keeps in this loop cost a third of a step's reschedule.
        unsafe {
            while i > 0 && !is_before(waketime, (*e.add(i - 1)).waketime) {
                *e.add(i) = *e.add(i - 1);
                i -= 1;
            }
            *e.add(i) = new;
        }
    }

    pub fn remove(&mut self, id: TimerId<C>) {
        if let Some(p) = self.entries.iter().position(|e| e.id() == id) {
            self.entries.remove(p);
        }
    }

    /// When `id` is due, if scheduled.
    pub fn waketime_of(&self, id: TimerId<C>) -> Option<u32> {
        self.entries
            .iter()
            .find(|e| e.id() == id)
            .map(|e| e.waketime)
    }

    pub fn contains(&self, id: TimerId<C>) -> bool {
        self.entries.iter().any(|e| e.id() == id)
    }

    /// The soonest wake time.
    #[inline]
    pub fn next_wake(&self) -> Option<u32> {
        self.entries.last().map(|e| e.waketime)
    }

    /// Remove and return the soonest timer.
    #[inline]
    pub fn pop(&mut self) -> Option<(u32, TimerId<C>)> {
        self.entries.pop().map(|e| (e.waketime, e.id()))
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

pub static STATS: Response = Response::new("stats count=%u sum=%u sumsq=%u");

pub const STATS_SUMSQ_BASE: u32 = 256;
const STATS_PERIOD: u32 = from_us(5_000_000);

/// Load statistics, accumulated as the reference does so that klippy's
/// `mcu_awake` and `mcu_task_avg` mean the same thing.
#[derive(Debug, Default)]
pub struct Stats {
    count: u32,
    sum: u32,
    sumsq: u32,
    send_time: u32,
}

impl Stats {
    /// Account one pass of the loop that was awake from `start` to `cur`.
    /// Returns the figures to send when a report is due.
    pub fn update(&mut self, start: u32, cur: u32) -> Option<[u32; 3]> {
        let diff = cur.wrapping_sub(start);
        self.count = self.count.wrapping_add(1);
        self.sum = self.sum.wrapping_add(diff);
        let next = if diff <= 0xffff {
            self.sumsq
                .wrapping_add((diff * diff).div_ceil(STATS_SUMSQ_BASE))
        } else if diff <= 0xfffff {
            self.sumsq
                .wrapping_add(diff.div_ceil(STATS_SUMSQ_BASE) * diff)
        } else {
            u32::MAX
        };
        self.sumsq = if next < self.sumsq { u32::MAX } else { next };
        if cur.wrapping_sub(self.send_time) < STATS_PERIOD {
            return None;
        }
        let r = [self.count, self.sum, self.sumsq];
        self.send_time = cur;
        self.count = 0;
        self.sum = 0;
        self.sumsq = 0;
        Some(r)
    }

    /// When the next report is due: the loop wakes for it even when idle,
    /// as the reference's periodic timer makes it (klippy's `mcu_awake`
    /// and `mcu_task_avg` come from these reports).
    pub fn next_send(&self) -> u32 {
        self.send_time.wrapping_add(STATS_PERIOD)
    }

    pub fn args(r: &[u32; 3]) -> [Arg<'static>; 3] {
        [Arg::Int(r[0]), Arg::Int(r[1]), Arg::Int(r[2])]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nop(_: &mut (), _: u32, _: u32) -> Result<TimerResult, Shutdown> {
        Ok(TimerResult::Done)
    }

    #[allow(non_snake_case)]
    fn TimerId(arg: u32) -> super::TimerId<()> {
        super::TimerId::new(nop, arg)
    }

    #[test]
    fn timers_pop_in_order_across_wrap() {
        let mut q = TimerQueue::new();
        let now: u32 = 0xffff_ff00;
        q.add(TimerId(1), now.wrapping_add(300), now).unwrap();
        q.add(TimerId(2), now.wrapping_add(100), now).unwrap();
        q.add(TimerId(3), now.wrapping_add(200), now).unwrap();
        q.add(TimerId(4), now.wrapping_add(200), now).unwrap();
        let order: Vec<u32> = std::iter::from_fn(|| q.pop().map(|e| e.1.arg)).collect();
        // Equal wake times run in the order they were added.
        assert_eq!(order, vec![2, 3, 4, 1]);
    }

    /// Against a model (a list kept in the order the timers must run):
    /// random inserts around a moving clock that wraps, removes and pops,
    /// with the capacity outgrown once.
    #[test]
    fn queue_matches_a_model_through_wrap_and_growth() {
        let mut q = TimerQueue::new();
        let mut model: Vec<(u32, u32)> = Vec::new();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut now: u32 = 0xffff_0000;
        for arg in 0..20_000u32 {
            let r = rand();
            if r % 7 < 4 || model.len() < 2 {
                // A few wake times repeat, to check the order of equals.
                let t = now.wrapping_add((r >> 8) as u32 % 64 * 1000);
                q.insert(TimerId(arg), t);
                let at = model
                    .iter()
                    .rposition(|&(w, _)| !is_before(t, w))
                    .map_or(0, |i| i + 1);
                model.insert(at, (t, arg));
            } else if r % 7 == 4 {
                let (_, id) = model.remove((r >> 8) as usize % model.len());
                q.remove(TimerId(id));
            } else if model.len() < 1500 || r % 7 == 5 {
                let (t, id) = model.remove(0);
                assert_eq!(q.pop().map(|e| (e.0, e.1.arg)), Some((t, id)));
                now = t;
            }
            assert_eq!(q.len(), model.len());
            assert_eq!(q.next_wake(), model.first().map(|e| e.0));
        }
        assert!(model.len() > TIMER_CAPACITY, "the test outgrew the reserve");
        while let Some((t, id)) = (!model.is_empty()).then(|| model.remove(0)) {
            assert_eq!(q.pop().map(|e| (e.0, e.1.arg)), Some((t, id)));
        }
        assert!(q.is_empty());
    }

    #[test]
    fn past_timer_is_too_close_only_when_first() {
        let mut q = TimerQueue::new();
        assert_eq!(q.add(TimerId(1), 90, 100), Err(TIMER_TOO_CLOSE));
        q.add(TimerId(1), 50, 40).unwrap();
        // Not before the first timer: accepted, like the reference.
        q.add(TimerId(2), 60, 100).unwrap();
        assert_eq!(q.add(TimerId(3), 10, 100), Err(TIMER_TOO_CLOSE));
        q.remove(TimerId(1));
        assert_eq!(q.next_wake(), Some(60));
        assert!(q.contains(TimerId(2)));
        assert!(!q.contains(TimerId(1)));
    }

    #[test]
    fn stats_match_the_reference_arithmetic() {
        let mut s = Stats::default();
        assert_eq!(s.update(0, 100), None);
        assert_eq!(s.update(200, 200 + 0x10000), None);
        let r = s.update(STATS_PERIOD, STATS_PERIOD + 10).unwrap();
        let sq = |d: u32| (d * d).div_ceil(256);
        let big = 0x10000u32.div_ceil(256) * 0x10000;
        assert_eq!(r, [3, 100 + 0x10000 + 10, sq(100) + big + sq(10)]);
        assert_eq!(s.update(STATS_PERIOD + 20, STATS_PERIOD + 30), None);
        // A pass longer than 0xfffff ticks saturates sumsq.
        let r = s.update(0, 2 * STATS_PERIOD + 0x100000).unwrap();
        assert_eq!(r[2], u32::MAX);
    }
}

//! The cycle-approximate engine: a deterministic discrete-event simulator.
//!
//! Time is integer picoseconds ([`Time`]), so event order never depends on float rounding; ties
//! are broken by insertion order. Each simulation is single-threaded; many run in parallel over
//! rayon. Every run has an event budget, and exceeding it is an error, not a hang.
//!
//! Models: [`dram`] (a DRAM/HBM channel controller with bank state, FR-FCFS, reads, writes and
//! refresh), [`nand`] (a flash drive: channels, dies, planes, reads, programs and erases,
//! command and transfer timing, a controller), [`device`] (the one interface through which the
//! other engines read memories: a drive, DRAM channels or a port serving a request pattern),
//! [`tiles`] (a mapping lowered to a tile task graph over compute units, memories and links) and
//! [`step`] (a model step of a system over an architecture's devices).

pub mod device;
pub mod dram;
pub mod nand;
pub mod step;
pub mod tiles;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

/// A point in simulated time, in picoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Time(pub u64);

impl Time {
    pub fn from_seconds(s: f64) -> Time {
        Time((s * 1e12).round() as u64)
    }

    pub fn seconds(self) -> f64 {
        self.0 as f64 * 1e-12
    }
}

impl std::ops::Add for Time {
    type Output = Time;
    fn add(self, o: Time) -> Time {
        Time(self.0 + o.0)
    }
}

impl std::ops::Sub for Time {
    type Output = Time;
    fn sub(self, o: Time) -> Time {
        Time(self.0.saturating_sub(o.0))
    }
}

impl std::ops::Mul<u64> for Time {
    type Output = Time;
    fn mul(self, k: u64) -> Time {
        Time(self.0 * k)
    }
}

/// A fixed-seed xorshift stream: the microbenchmarks' random addresses, the same on every machine.
pub fn xorshift(seed: u64) -> impl Iterator<Item = u64> {
    let mut x = seed.max(1);
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    })
}

/// Why a simulation could not run or finish.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineError {
    /// A parameter is missing or inconsistent; `key` names it.
    Config { key: String, reason: String },
    /// The run needed more events than its budget.
    Budget { events: u64 },
    /// A write found no free block on a drive's plane even after garbage collection.
    DriveFull { plane: usize },
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Config { key, reason } => write!(f, "{key}: {reason}"),
            EngineError::Budget { events } => {
                write!(f, "the simulation exceeded its budget of {events} events (raise the budget or shorten the run)")
            }
            EngineError::DriveFull { plane } => write!(
                f,
                "a write found no free block on plane {plane} after garbage collection: every full block's pages \
                 are still valid (more over-provisioning, or fewer distinct pages written)"
            ),
        }
    }
}

impl std::error::Error for EngineError {}

/// Request latencies of a run, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    /// Mean, nearest-rank percentiles and maximum of per-request latencies.
    pub fn of(mut each: Vec<Time>) -> Latency {
        if each.is_empty() {
            return Latency::default();
        }
        each.sort_unstable();
        let rank = |q: f64| each[((q * each.len() as f64).ceil() as usize).clamp(1, each.len()) - 1].seconds();
        Latency {
            mean: each.iter().map(|t| t.0 as f64).sum::<f64>() / each.len() as f64 * 1e-12,
            p50: rank(0.5),
            p99: rank(0.99),
            max: each[each.len() - 1].seconds(),
        }
    }
}

/// When requests reach a memory's controller (DRAM channels, a flash drive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrivals {
    /// At each request's own time (open loop: a trace, or a stream at a rate).
    AsGiven,
    /// A closed loop of `depth` requests in flight: the first `depth` at time 0, then each one
    /// when an earlier one completes, in stream order.
    Closed { depth: usize },
}

/// Longest single timing a device may have (10 s): beyond any real part, and far enough below
/// 2⁶⁴ ps that sums over a run's events cannot overflow.
pub const MAX_TIMING_PS: f64 = 1e13;

/// A device timing of `ps` picoseconds, checked: finite, non-negative and at most
/// [`MAX_TIMING_PS`]; `key` names it in the error.
pub fn timing(key: &str, ps: f64) -> Result<Time, EngineError> {
    if ps.is_finite() && (0.0..=MAX_TIMING_PS).contains(&ps) {
        Ok(Time(ps.round() as u64))
    } else {
        Err(EngineError::Config { key: key.to_string(), reason: format!("{ps} ps is not within 0 and 10 s") })
    }
}

/// A queue of timed events; equal times pop in the order they were pushed.
pub struct Queue<E> {
    heap: BinaryHeap<Reverse<(Time, u64, usize)>>,
    /// The pending events, by the slot their heap entry names (the heap moves small keys, not
    /// the events, which can be large). A popped event's slot joins a free list threaded
    /// through the table, and the next push reuses it: a run's table stays as large as its
    /// events pending at once, not all it ever pushed (millions of entries, their pages first
    /// touched one by one, made the DRAM engine 15–40% slower).
    slots: Vec<Slot<E>>,
    /// The first free slot, or `NONE`.
    free: usize,
    pushed: u64,
    popped: u64,
    budget: u64,
}

/// A slot of [`Queue`]'s table: a pending event, or a free slot naming the next free one.
enum Slot<E> {
    Pending(E),
    Free(usize),
}

/// The end of [`Queue`]'s free list.
const NONE: usize = usize::MAX;

impl<E> Queue<E> {
    pub fn new(budget: u64) -> Queue<E> {
        Queue { heap: BinaryHeap::new(), slots: Vec::new(), free: NONE, pushed: 0, popped: 0, budget }
    }

    pub fn push(&mut self, at: Time, event: E) {
        let slot = if self.free == NONE {
            self.slots.push(Slot::Pending(event));
            self.slots.len() - 1
        } else {
            let slot = self.free;
            let Slot::Free(next) = std::mem::replace(&mut self.slots[slot], Slot::Pending(event)) else {
                unreachable!("the free list holds free slots")
            };
            self.free = next;
            slot
        };
        self.heap.push(Reverse((at, self.pushed, slot)));
        self.pushed += 1;
    }

    /// The next event, or an error once the budget is spent.
    pub fn pop(&mut self) -> Result<Option<(Time, E)>, EngineError> {
        let Some(Reverse((at, _, slot))) = self.heap.pop() else { return Ok(None) };
        self.popped += 1;
        if self.popped > self.budget {
            return Err(EngineError::Budget { events: self.budget });
        }
        let Slot::Pending(event) = std::mem::replace(&mut self.slots[slot], Slot::Free(self.free)) else {
            unreachable!("each event pops once")
        };
        self.free = slot;
        Ok(Some((at, event)))
    }

    /// Events handled so far.
    pub fn events(&self) -> u64 {
        self.popped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_pop_in_push_order_and_the_budget_stops_a_run() {
        let mut q = Queue::new(10);
        q.push(Time(5), 'b');
        q.push(Time(1), 'a');
        q.push(Time(5), 'c');
        let order: Vec<char> = std::iter::from_fn(|| q.pop().unwrap().map(|e| e.1)).collect();
        assert_eq!(order, ['a', 'b', 'c']);
        let mut q = Queue::new(2);
        for i in 0..3 {
            q.push(Time(i), i);
        }
        assert!(q.pop().is_ok() && q.pop().is_ok());
        assert_eq!(q.pop(), Err(EngineError::Budget { events: 2 }));
    }

    #[test]
    fn popped_slots_are_reused_and_order_is_kept() {
        // A thousand events, never more than three pending: the table holds three slots, and
        // the events come out in time order, ties in push order, as without reuse.
        let mut q = Queue::new(u64::MAX);
        let mut out = Vec::new();
        for i in 0..1000u64 {
            q.push(Time(i / 2), i);
            if q.heap.len() == 3 {
                out.push(q.pop().unwrap().unwrap().1);
            }
        }
        out.extend(std::iter::from_fn(|| q.pop().unwrap().map(|e| e.1)));
        assert_eq!(q.slots.len(), 3);
        assert_eq!(out, (0..1000).collect::<Vec<u64>>());
    }
}

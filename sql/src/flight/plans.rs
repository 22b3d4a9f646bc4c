//! Plans made by `GetFlightInfo`, held for the `DoGet` of the ticket it returns. A Flight
//! SQL client asks for a result's schema, then for the result; without this, both would
//! plan the SQL (parsing, table snapshots, session), about a millisecond each time.
//!
//! A held plan is the query as of its `GetFlightInfo`, the moment Flight SQL says a
//! statement executes: data written between the two calls is not in its answer. It runs
//! once; a ticket used again, or after [`TTL`], or on another process, plans its SQL
//! again (tickets stay self-contained, see [`super::handle`]).

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::Prepared;

/// How long a plan waits for its `DoGet`. Files a plan reads are kept at least this long
/// after compaction replaces them (the grace period is minutes).
pub const TTL: Duration = Duration::from_secs(30);
/// Most plans held; the oldest is dropped for a new one (its ticket then plans again).
pub const MAX_HELD: usize = 256;

pub struct Plans {
    /// Random per process, so a ticket from another process names no plan here.
    base: u64,
    next: AtomicU64,
    /// Oldest first.
    held: Mutex<VecDeque<(u64, Instant, Prepared)>>,
}

impl Default for Plans {
    fn default() -> Self {
        Self {
            base: RandomState::new().hash_one(Instant::now()),
            next: AtomicU64::new(0),
            held: Mutex::new(VecDeque::new()),
        }
    }
}

impl Plans {
    /// Holds `plan` and returns its id for a ticket.
    pub fn hold(&self, plan: Prepared) -> u64 {
        let id = self
            .base
            .wrapping_add(self.next.fetch_add(1, Ordering::Relaxed));
        let now = Instant::now();
        let mut held = self.held.lock();
        while held
            .front()
            .is_some_and(|(_, at, _)| now.duration_since(*at) > TTL || held.len() >= MAX_HELD)
        {
            held.pop_front();
        }
        held.push_back((id, now, plan));
        id
    }

    /// The plan `id` if it is still held, in time, and of the statement `sql` on `db`
    /// (a ticket's text wins over an id that names another statement).
    pub fn take(&self, id: u64, db: &str, sql: &str) -> Option<Prepared> {
        let (_, at, plan) = {
            let mut held = self.held.lock();
            let i = held.iter().position(|(k, _, _)| *k == id)?;
            held.remove(i)?
        };
        (at.elapsed() <= TTL && plan.db() == db && plan.sql() == sql).then_some(plan)
    }
}

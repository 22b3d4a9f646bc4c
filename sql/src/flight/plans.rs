//! Plans held between Flight SQL calls, so that a statement is planned once, not at every
//! call. A Flight SQL client asks for a result's schema, then for the result (ADBC also
//! prepares the statement first); each planning costs about a millisecond (parsing,
//! table snapshots, session).
//!
//! - For tickets: `GetFlightInfo` holds its plan for the `DoGet` of the ticket it
//!   returns. The plan is the query as of its `GetFlightInfo`, the moment Flight SQL says a
//!   statement executes: data written between the two calls is not in its answer. It
//!   runs once.
//! - For prepared statements: `CreatePreparedStatement` holds its plan for the statement's
//!   `GetFlightInfo` calls, which take a new snapshot of its tables each time
//!   ([`crate::QueryEngine::refresh`]) rather than planning the SQL again. Each use puts
//!   back the refreshed plan: a held statement keeps the snapshot of its last use, not of
//!   its preparation.
//!
//! A handle or ticket whose plan is gone (used, closed, expired, dropped for newer ones,
//! or made by another process) plans its SQL again: handles and tickets stay
//! self-contained (see [`super::handle`]).

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::Prepared;

/// How long a plan waits for its next use. Files a plan reads are kept at least this long
/// after compaction replaces them (the grace period is minutes). The hot data of its
/// snapshot stays in memory until the plan goes: used, or dropped by the next `hold` once
/// older than this.
pub const TTL: Duration = Duration::from_secs(30);
/// Most plans held in one store; the oldest is dropped for a new one.
pub const MAX_HELD: usize = 256;

pub struct Plans {
    /// Random per process, so a ticket from another process names no plan here.
    base: u64,
    next: AtomicU64,
    /// Least recently held first.
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
    /// Holds `plan` and returns its id for a ticket or handle.
    pub fn hold(&self, plan: Prepared) -> u64 {
        let id = self
            .base
            .wrapping_add(self.next.fetch_add(1, Ordering::Relaxed));
        self.hold_as(id, plan);
        id
    }

    /// Holds `plan` under `id` (one of this store's ids), replacing what it held.
    pub fn hold_as(&self, id: u64, plan: Prepared) {
        let now = Instant::now();
        let mut held = self.held.lock();
        held.retain(|(k, _, _)| *k != id);
        while held
            .front()
            .is_some_and(|(_, at, _)| now.duration_since(*at) > TTL || held.len() >= MAX_HELD)
        {
            held.pop_front();
        }
        held.push_back((id, now, plan));
    }

    /// Takes the plan `id` if it is still held, in time, and of the statement `sql` on
    /// `db` (a handle's text wins over an id that names another statement).
    pub fn take(&self, id: u64, db: &str, sql: &str) -> Option<Prepared> {
        let (_, at, plan) = {
            let mut held = self.held.lock();
            let i = held.iter().position(|(k, _, _)| *k == id)?;
            held.remove(i)?
        };
        (at.elapsed() <= TTL && plan.db() == db && plan.sql() == sql).then_some(plan)
    }

    /// Drops the plan `id`, if held.
    pub fn release(&self, id: u64) {
        self.held.lock().retain(|(k, _, _)| *k != id);
    }
}

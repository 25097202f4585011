//! Recent decisions, so an outcome can be matched to its tenant, user and plan. Bounded by a TTL
//! and a capacity; the oldest entries go first. Sharded, so no single map ever grows large
//! enough for a resize to stall requests.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::budget::{Payer, Reservation};

const SHARDS: usize = 64;

/// What an outcome needs of its decision. No heap allocation of its own: the payer is interned
/// by the budget ledger, so memory is the map entry (about 100 bytes a decision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedDecision {
    pub payer: Payer,
    pub created: Instant,
    /// The estimated cost still held for this decision (taken by its first outcome).
    pub reservation: Option<Reservation>,
}

/// Decision ids are UUIDs we generated: kept as 16 bytes, anything else as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecisionKey {
    Uuid(u128),
    Other(Box<str>),
}

impl DecisionKey {
    pub fn of(id: &str) -> DecisionKey {
        match uuid::Uuid::try_parse(id) {
            Ok(u) => DecisionKey::Uuid(u.as_u128()),
            Err(_) => DecisionKey::Other(id.into()),
        }
    }
}

#[derive(Debug, Default)]
struct Shard {
    by_id: HashMap<DecisionKey, TrackedDecision>,
    order: VecDeque<(Instant, DecisionKey)>,
}

impl Shard {
    fn evict(&mut self, now: Instant, ttl: Duration, capacity: usize) {
        while let Some((created, _)) = self.order.front() {
            let expired = now.saturating_duration_since(*created) > ttl;
            if !expired && self.by_id.len() < capacity {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                self.by_id.remove(&id);
            }
        }
    }
}

#[derive(Debug)]
pub struct DecisionTracker {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    ttl: Duration,
    per_shard: usize,
}

impl DecisionTracker {
    pub fn new(ttl: Duration, capacity: usize) -> DecisionTracker {
        DecisionTracker {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            ttl,
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: &DecisionKey) -> &Mutex<Shard> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    pub fn insert(&self, decision_id: &str, decision: TrackedDecision) {
        let key = DecisionKey::of(decision_id);
        let mut shard = self.shard(&key).lock();
        shard.evict(Instant::now(), self.ttl, self.per_shard);
        shard.order.push_back((decision.created, key.clone()));
        shard.by_id.insert(key, decision);
    }

    /// The decision, for booking an outcome: its reservation is handed out once (a repeated
    /// outcome books its cost but has nothing left to release).
    pub fn claim(&self, decision_id: &str) -> Option<TrackedDecision> {
        let key = DecisionKey::of(decision_id);
        let mut shard = self.shard(&key).lock();
        let d = shard
            .by_id
            .get_mut(&key)
            .filter(|d| d.created.elapsed() <= self.ttl)?;
        let out = d.clone();
        d.reservation = None;
        Some(out)
    }

    /// Drop expired entries everywhere (called periodically; inserts also evict their shard).
    pub fn sweep(&self, now: Instant) {
        for shard in &self.shards {
            shard.lock().evict(now, self.ttl, self.per_shard);
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().by_id.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(created: Instant) -> TrackedDecision {
        TrackedDecision {
            payer: crate::budget::BudgetLedger::new().payer("t", ""),
            created,
            reservation: None,
        }
    }

    #[test]
    fn capacity_bounds_the_tracker_and_expired_entries_go() {
        let tracker = DecisionTracker::new(Duration::from_secs(60), 128);
        let now = Instant::now();
        for i in 0..10_000 {
            tracker.insert(&format!("d{i}"), tracked(now));
        }
        assert!(tracker.len() <= 128, "{}", tracker.len());
        assert!(tracker.claim("d9999").is_some(), "the newest stays");
        assert!(tracker.claim("d0").is_none(), "the oldest went");

        let short = DecisionTracker::new(Duration::from_millis(1), 10);
        short.insert("old", tracked(now - Duration::from_secs(1)));
        assert!(short.claim("old").is_none());
        short.sweep(Instant::now());
        assert!(short.is_empty());
    }

    #[test]
    fn a_reservation_is_claimed_once() {
        let ledger = crate::budget::BudgetLedger::new();
        let payer = ledger.payer("t", "u");
        let now = Instant::now();
        let reservation = ledger.reserve(
            &payer,
            crate::money::Micros(5),
            Duration::from_secs(60),
            now,
        );
        assert!(reservation.is_some());
        let tracker = DecisionTracker::new(Duration::from_secs(60), 16);
        tracker.insert(
            "d",
            TrackedDecision {
                payer,
                created: now,
                reservation,
            },
        );
        let first = tracker.claim("d").unwrap();
        assert_eq!(first.reservation, reservation);
        assert_eq!(first.payer.tenant_id(), "t");
        assert_eq!(first.payer.user_id(), "u");
        assert_eq!(tracker.claim("d").unwrap().reservation, None);
        assert!(tracker.claim("unknown").is_none());
    }
}

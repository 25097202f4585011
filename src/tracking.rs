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
    /// Attempts 1..=64 already reported (bit `attempt - 1`).
    pub reported: u64,
}

/// The highest outcome attempt number that is de-duplicated.
pub const MAX_ATTEMPT: u32 = 64;

/// What an outcome finds of its decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Book it: the decision as it was before this outcome.
    Book(TrackedDecision),
    /// This attempt was reported already: book nothing.
    Repeat,
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
        // A full shard removes one entry per insert. The removals leave tombstones in the
        // hash table, and once they use up its free slots, the table (more than half full)
        // doubles instead of being cleaned: after ~50,000 inserts into a full shard, so ~3M
        // decisions at the example's capacity, the 64 tables grew by ~50 MB in total (RSS
        // 110 -> 168 MB in a 10-minute soak; docs/performance.md). Rebuild it at its size.
        if shard.by_id.capacity() >= 2 * self.per_shard {
            shard.by_id.shrink_to(self.per_shard);
        }
    }

    /// Entries the shards' tables have room for (for tests: bounded by about twice the
    /// capacity).
    #[cfg(test)]
    fn table_capacity(&self) -> usize {
        self.shards.iter().map(|s| s.lock().by_id.capacity()).sum()
    }

    /// The decision, for booking an outcome of `attempt` (0: not numbered). Its reservation is
    /// handed out once (a later outcome books its cost but has nothing left to release); a
    /// numbered attempt is booked once. `None`: unknown or expired.
    pub fn claim(&self, decision_id: &str, attempt: u32) -> Option<Claim> {
        self.claim_for(decision_id, attempt, None)
    }

    /// [`Self::claim`] on behalf of `tenant` (an API key's): another tenant's decision is
    /// `None`, exactly as an unknown one, and nothing of it is marked or handed out.
    pub fn claim_for(
        &self,
        decision_id: &str,
        attempt: u32,
        tenant: Option<&str>,
    ) -> Option<Claim> {
        let key = DecisionKey::of(decision_id);
        let mut shard = self.shard(&key).lock();
        let d = shard.by_id.get_mut(&key).filter(|d| {
            d.created.elapsed() <= self.ttl && tenant.is_none_or(|t| d.payer.tenant_id() == t)
        })?;
        if (1..=MAX_ATTEMPT).contains(&attempt) {
            let bit = 1u64 << (attempt - 1);
            if d.reported & bit != 0 {
                return Some(Claim::Repeat);
            }
            d.reported |= bit;
        }
        let out = d.clone();
        d.reservation = None;
        Some(Claim::Book(out))
    }

    /// The payer of a tracked decision, without claiming anything (for the rate limit of an
    /// outcome's tenant).
    pub fn payer_of(&self, decision_id: &str) -> Option<Payer> {
        self.read(decision_id, |d| d.payer.clone())
    }

    /// `f` of a tracked decision that has not expired, without claiming anything.
    fn read<R>(&self, decision_id: &str, f: impl FnOnce(&TrackedDecision) -> R) -> Option<R> {
        let key = DecisionKey::of(decision_id);
        let shard = self.shard(&key).lock();
        shard
            .by_id
            .get(&key)
            .filter(|d| d.created.elapsed() <= self.ttl)
            .map(f)
    }

    /// Take back a numbered attempt claimed by [`Self::claim_for`] whose booking failed, so a
    /// retry books it.
    pub fn unclaim(&self, decision_id: &str, attempt: u32) {
        if !(1..=MAX_ATTEMPT).contains(&attempt) {
            return;
        }
        let key = DecisionKey::of(decision_id);
        if let Some(d) = self.shard(&key).lock().by_id.get_mut(&key) {
            d.reported &= !(1u64 << (attempt - 1));
        }
    }

    /// The attempts already reported for a tracked decision (bit `attempt - 1`); `None`:
    /// unknown or expired.
    pub fn reported(&self, decision_id: &str) -> Option<u64> {
        self.read(decision_id, |d| d.reported)
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
            reported: 0,
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
        assert!(tracker.claim("d9999", 0).is_some(), "the newest stays");
        assert!(tracker.claim("d0", 0).is_none(), "the oldest went");

        let short = DecisionTracker::new(Duration::from_millis(1), 10);
        short.insert("old", tracked(now - Duration::from_secs(1)));
        assert!(short.claim("old", 0).is_none());
        short.sweep(Instant::now());
        assert!(short.is_empty());
    }

    #[test]
    fn a_full_tracker_does_not_grow_its_tables() {
        let capacity = 64 * 512;
        let tracker = DecisionTracker::new(Duration::from_secs(3600), capacity);
        let now = Instant::now();
        // ~20,000 inserts a shard: a 512-entry shard's table doubled after ~5,000.
        for i in 0..(64 * 20_000u128) {
            let id =
                uuid::Uuid::from_u128(i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835));
            tracker.insert(&id.to_string(), tracked(now));
        }
        assert!(tracker.len() <= capacity);
        assert!(
            tracker.table_capacity() < 2 * capacity,
            "{}",
            tracker.table_capacity()
        );
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
                reported: 0,
            },
        );
        let book = |claim: Option<Claim>| match claim {
            Some(Claim::Book(d)) => d,
            other => panic!("expected a booking, got {other:?}"),
        };
        let first = book(tracker.claim("d", 0));
        assert_eq!(first.reservation, reservation);
        assert_eq!(first.payer.tenant_id(), "t");
        assert_eq!(first.payer.user_id(), "u");
        assert_eq!(book(tracker.claim("d", 0)).reservation, None);
        assert!(tracker.claim("unknown", 0).is_none());
    }

    #[test]
    fn another_tenants_decision_is_not_found_and_stays_unclaimed() {
        let ledger = crate::budget::BudgetLedger::new();
        let tracker = DecisionTracker::new(Duration::from_secs(60), 16);
        tracker.insert(
            "d",
            TrackedDecision {
                payer: ledger.payer("acme", ""),
                created: Instant::now(),
                reservation: None,
                reported: 0,
            },
        );
        assert_eq!(tracker.payer_of("d").unwrap().tenant_id(), "acme");
        assert!(tracker.payer_of("unknown").is_none());
        assert_eq!(tracker.claim_for("d", 1, Some("globex")), None);
        assert_eq!(tracker.claim_for("d", 1, Some("globex")), None);
        assert!(matches!(
            tracker.claim_for("d", 1, Some("acme")),
            Some(Claim::Book(_))
        ));
        assert_eq!(tracker.claim_for("d", 1, Some("globex")), None);
        assert_eq!(tracker.claim_for("d", 1, Some("acme")), Some(Claim::Repeat));
    }

    #[test]
    fn a_numbered_attempt_is_booked_once() {
        let ledger = crate::budget::BudgetLedger::new();
        let tracker = DecisionTracker::new(Duration::from_secs(60), 16);
        tracker.insert(
            "d",
            TrackedDecision {
                payer: ledger.payer("t", ""),
                created: Instant::now(),
                reservation: None,
                reported: 0,
            },
        );
        assert!(matches!(tracker.claim("d", 1), Some(Claim::Book(_))));
        assert_eq!(tracker.claim("d", 1), Some(Claim::Repeat));
        assert!(matches!(tracker.claim("d", 2), Some(Claim::Book(_))));
        assert!(matches!(tracker.claim("d", 64), Some(Claim::Book(_))));
        assert_eq!(tracker.claim("d", 64), Some(Claim::Repeat));
        assert_eq!(tracker.claim("d", 2), Some(Claim::Repeat));
        // Unnumbered reports are always booked.
        assert!(matches!(tracker.claim("d", 0), Some(Claim::Book(_))));
        assert!(matches!(tracker.claim("d", 0), Some(Claim::Book(_))));
    }
}

//! Recent decisions, so an outcome can be matched to its tenant, user and plan. Bounded by a TTL
//! and a capacity; the oldest entries go first. Sharded, so no single map ever grows large
//! enough for a resize to stall requests.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

const SHARDS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedDecision {
    pub tenant_id: String,
    pub user_id: String,
    pub created: Instant,
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

    pub fn get(&self, decision_id: &str) -> Option<TrackedDecision> {
        let key = DecisionKey::of(decision_id);
        self.shard(&key)
            .lock()
            .by_id
            .get(&key)
            .filter(|d| d.created.elapsed() <= self.ttl)
            .cloned()
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
            tenant_id: "t".into(),
            user_id: String::new(),
            created,
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
        assert!(tracker.get("d9999").is_some(), "the newest stays");
        assert!(tracker.get("d0").is_none(), "the oldest went");

        let short = DecisionTracker::new(Duration::from_millis(1), 10);
        short.insert("old", tracked(now - Duration::from_secs(1)));
        assert!(short.get("old").is_none());
        short.sweep(Instant::now());
        assert!(short.is_empty());
    }
}

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
    /// Every model the decision named: primary, fallbacks, cascade steps.
    pub models: Vec<String>,
    pub created: Instant,
}

#[derive(Debug, Default)]
struct Shard {
    by_id: HashMap<String, TrackedDecision>,
    order: VecDeque<(Instant, String)>,
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

    fn shard(&self, id: &str) -> &Mutex<Shard> {
        &self.shards[(self.hasher.hash_one(id) as usize) % SHARDS]
    }

    pub fn insert(&self, decision_id: String, decision: TrackedDecision) {
        let mut shard = self.shard(&decision_id).lock();
        shard.evict(Instant::now(), self.ttl, self.per_shard);
        shard
            .order
            .push_back((decision.created, decision_id.clone()));
        shard.by_id.insert(decision_id, decision);
    }

    pub fn get(&self, decision_id: &str) -> Option<TrackedDecision> {
        self.shard(decision_id)
            .lock()
            .by_id
            .get(decision_id)
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
            models: vec!["m".into()],
            created,
        }
    }

    #[test]
    fn capacity_bounds_the_tracker_and_expired_entries_go() {
        let tracker = DecisionTracker::new(Duration::from_secs(60), 128);
        let now = Instant::now();
        for i in 0..10_000 {
            tracker.insert(format!("d{i}"), tracked(now));
        }
        assert!(tracker.len() <= 128, "{}", tracker.len());
        assert!(tracker.get("d9999").is_some(), "the newest stays");
        assert!(tracker.get("d0").is_none(), "the oldest went");

        let short = DecisionTracker::new(Duration::from_millis(1), 10);
        short.insert("old".into(), tracked(now - Duration::from_secs(1)));
        assert!(short.get("old").is_none());
        short.sweep(Instant::now());
        assert!(short.is_empty());
    }
}

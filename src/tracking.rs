//! Recent decisions, so an outcome can be matched to its tenant, user and plan. Bounded by a TTL
//! and a capacity; the oldest entries go first.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedDecision {
    pub tenant_id: String,
    pub user_id: String,
    /// Every model the decision named: primary, fallbacks, cascade steps.
    pub models: Vec<String>,
    pub created: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, TrackedDecision>,
    order: VecDeque<(Instant, String)>,
}

#[derive(Debug)]
pub struct DecisionTracker {
    inner: Mutex<Inner>,
    ttl: Duration,
    capacity: usize,
}

impl DecisionTracker {
    pub fn new(ttl: Duration, capacity: usize) -> DecisionTracker {
        DecisionTracker {
            inner: Mutex::new(Inner::default()),
            ttl,
            capacity: capacity.max(1),
        }
    }

    pub fn insert(&self, decision_id: String, decision: TrackedDecision) {
        let mut inner = self.inner.lock();
        let now = Instant::now();
        while let Some((created, _)) = inner.order.front() {
            let expired = now.saturating_duration_since(*created) > self.ttl;
            if !expired && inner.by_id.len() < self.capacity {
                break;
            }
            if let Some((_, id)) = inner.order.pop_front() {
                inner.by_id.remove(&id);
            }
        }
        inner
            .order
            .push_back((decision.created, decision_id.clone()));
        inner.by_id.insert(decision_id, decision);
    }

    pub fn get(&self, decision_id: &str) -> Option<TrackedDecision> {
        let inner = self.inner.lock();
        inner
            .by_id
            .get(decision_id)
            .filter(|d| d.created.elapsed() <= self.ttl)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().by_id.len()
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
    fn evicts_oldest_beyond_capacity_and_expired_entries() {
        let tracker = DecisionTracker::new(Duration::from_secs(60), 2);
        let now = Instant::now();
        tracker.insert("a".into(), tracked(now));
        tracker.insert("b".into(), tracked(now));
        tracker.insert("c".into(), tracked(now));
        assert!(tracker.get("a").is_none());
        assert!(tracker.get("b").is_some() && tracker.get("c").is_some());

        let short = DecisionTracker::new(Duration::from_millis(1), 10);
        short.insert("old".into(), tracked(now - Duration::from_secs(1)));
        assert!(short.get("old").is_none());
    }
}

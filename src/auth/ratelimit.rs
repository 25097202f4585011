//! Request rate limits: token buckets per tenant (`[rate_limits]` in the policy) and per API key
//! (the key's record), in memory.
//!
//! A bucket holds up to `burst` tokens and refills at `requests_per_sec`; a request takes one.
//! An empty bucket refuses with the time until the next token. Memory is bounded: a bucket that
//! has refilled completely is the same as no bucket, so the sweeper drops those, and each map
//! holds at most [`MAX_BUCKETS`]; past that, new names share one overflow bucket until the
//! sweeper frees room.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Buckets per map (tenants, keys).
pub const MAX_BUCKETS: usize = 65_536;
const SHARDS: usize = 16;
/// The longest wait a refusal names (a very slow rate).
const MAX_WAIT: Duration = Duration::from_secs(86_400);

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: u32,
}

impl Rate {
    /// Checked: `per_sec` positive and finite, `burst` at least 1. The error names the field.
    pub fn new(per_sec: f64, burst: u32) -> Result<Rate, (&'static str, String)> {
        if !(per_sec.is_finite() && per_sec > 0.0) {
            return Err((
                "requests_per_sec",
                format!("must be a positive number, got {per_sec}"),
            ));
        }
        if burst == 0 {
            return Err(("burst", "must be at least 1".into()));
        }
        Ok(Rate { per_sec, burst })
    }

    fn secs(self, tokens: f64) -> Duration {
        Duration::try_from_secs_f64(tokens / self.per_sec)
            .unwrap_or(MAX_WAIT)
            .min(MAX_WAIT)
    }
}

/// `[rate_limits]`: per-tenant rates; tenants not listed get `default_tenant` (each its own
/// bucket), or no limit without one.
#[derive(Debug, Clone, Default)]
pub struct RateLimitPolicy {
    pub default_tenant: Option<Rate>,
    pub tenants: HashMap<String, Rate>,
}

impl RateLimitPolicy {
    pub fn tenant_rate(&self, tenant: &str) -> Option<Rate> {
        self.tenants.get(tenant).copied().or(self.default_tenant)
    }

    /// No tenant is limited.
    pub fn is_empty(&self) -> bool {
        self.default_tenant.is_none() && self.tenants.is_empty()
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// When the bucket is full again if nothing takes from it: from then on it can go.
    full_at: Instant,
}

impl Bucket {
    fn new(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(rate.burst),
            last: now,
            full_at: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_sec).min(f64::from(rate.burst));
        self.last = self.last.max(now);
    }

    fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            let missing = f64::from(rate.burst) - self.tokens;
            self.full_at = self
                .last
                .checked_add(rate.secs(missing))
                .unwrap_or(self.last + MAX_WAIT);
            Ok(())
        } else {
            Err(rate.secs(1.0 - self.tokens).max(Duration::from_millis(1)))
        }
    }

    fn refund(&mut self, rate: Rate) {
        self.tokens = (self.tokens + 1.0).min(f64::from(rate.burst));
    }
}

/// Buckets by name, sharded, bounded.
#[derive(Debug)]
pub struct Buckets {
    shards: Vec<Mutex<HashMap<Box<str>, Bucket>>>,
    hasher: RandomState,
    per_shard: usize,
    overflow: Mutex<Option<Bucket>>,
}

impl Buckets {
    pub fn new(capacity: usize) -> Buckets {
        Buckets {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            overflow: Mutex::new(None),
        }
    }

    fn shard(&self, name: &str) -> &Mutex<HashMap<Box<str>, Bucket>> {
        &self.shards[(self.hasher.hash_one(name) as usize) % SHARDS]
    }

    /// Take a token from `name`'s bucket, or the wait until one is there.
    pub fn take(&self, name: &str, rate: Rate, now: Instant) -> Result<(), Duration> {
        let mut shard = self.shard(name).lock();
        if let Some(b) = shard.get_mut(name) {
            return b.take(rate, now);
        }
        if shard.len() < self.per_shard {
            let mut b = Bucket::new(rate, now);
            let taken = b.take(rate, now);
            shard.insert(name.into(), b);
            return taken;
        }
        drop(shard);
        self.overflow
            .lock()
            .get_or_insert_with(|| Bucket::new(rate, now))
            .take(rate, now)
    }

    /// Give back a token taken from `name`'s bucket (the request was refused by another limit).
    pub fn refund(&self, name: &str, rate: Rate) {
        let mut shard = self.shard(name).lock();
        if let Some(b) = shard.get_mut(name) {
            b.refund(rate);
            return;
        }
        drop(shard);
        if let Some(b) = self.overflow.lock().as_mut() {
            b.refund(rate);
        }
    }

    /// Drop the buckets that are full again by `now`.
    pub fn sweep(&self, now: Instant) {
        for shard in &self.shards {
            shard.lock().retain(|_, b| b.full_at > now);
        }
        let mut overflow = self.overflow.lock();
        if overflow.as_ref().is_some_and(|b| b.full_at <= now) {
            *overflow = None;
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The limiter a server holds: one map of buckets for tenants, one for keys.
#[derive(Debug)]
pub struct RateLimiter {
    pub tenants: Buckets,
    pub keys: Buckets,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter {
            tenants: Buckets::new(MAX_BUCKETS),
            keys: Buckets::new(MAX_BUCKETS),
        }
    }
}

impl RateLimiter {
    pub fn sweep(&self, now: Instant) {
        self.tenants.sweep(now);
        self.keys.sweep(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_sec: f64, burst: u32) -> Rate {
        Rate::new(per_sec, burst).unwrap()
    }

    #[test]
    fn a_burst_then_the_rate() {
        let b = Buckets::new(16);
        let r = rate(10.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(b.take("acme", r, t0), Ok(()));
        }
        let wait = b.take("acme", r, t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait >= Duration::from_millis(99),
            "{wait:?}"
        );
        // Another name is unaffected.
        assert_eq!(b.take("globex", r, t0), Ok(()));
        // One token back after 100 ms, not two.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(b.take("acme", r, t1), Ok(()));
        assert!(b.take("acme", r, t1).is_err());
        // A refund gives the token back.
        b.refund("acme", r);
        assert_eq!(b.take("acme", r, t1), Ok(()));
    }

    #[test]
    fn full_buckets_are_swept_and_the_map_is_bounded() {
        let b = Buckets::new(32);
        let r = rate(1.0, 2);
        let t0 = Instant::now();
        for i in 0..1000 {
            let _ = b.take(&format!("t{i}"), r, t0);
        }
        assert!(b.len() <= 32 + SHARDS, "{}", b.len());
        // Names past the bound share the overflow bucket: it runs dry.
        let refused = (1000..1100)
            .filter(|i| b.take(&format!("t{i}"), r, t0).is_err())
            .count();
        assert!(refused > 0);
        b.sweep(t0 + Duration::from_millis(500));
        assert!(!b.is_empty(), "not full yet");
        b.sweep(t0 + Duration::from_secs(3));
        assert!(b.is_empty());
    }

    #[test]
    fn extreme_rates_do_not_panic() {
        let b = Buckets::new(4);
        let slow = rate(f64::MIN_POSITIVE, 1);
        let t0 = Instant::now();
        assert_eq!(b.take("x", slow, t0), Ok(()));
        assert_eq!(b.take("x", slow, t0), Err(MAX_WAIT));
        let fast = rate(f64::MAX, u32::MAX);
        assert_eq!(b.take("y", fast, t0), Ok(()));
        assert!(Rate::new(0.0, 1).is_err());
        assert!(Rate::new(f64::NAN, 1).is_err());
        assert!(Rate::new(1.0, 0).is_err());
    }
}

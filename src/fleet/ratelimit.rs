//! Rate limits shared by the fleet: an API key's bucket and its tenant's, taken from in one
//! script (`lua/ratelimit.lua`), so N replicas allow the configured rate, not N times it.

use std::time::Duration;

use super::{Deadline, Fleet, FleetError, Op, ints};
use crate::auth::Rate;

/// A bucket to take a token from: an API key's (with its tenant) or a tenant's.
#[derive(Debug, Clone, Copy)]
pub enum Bucket<'a> {
    Key {
        tenant: &'a str,
        key_id: &'a str,
        rate: Rate,
    },
    Tenant {
        tenant: &'a str,
        rate: Rate,
    },
}

impl Fleet {
    /// Take one token from each bucket (all or none). `Ok(Err((i, wait)))`: bucket `i` is empty
    /// for `wait`.
    pub async fn take_tokens(
        &self,
        buckets: &[Bucket<'_>],
        deadline: Deadline,
    ) -> Result<Result<(), (usize, Duration)>, FleetError> {
        if buckets.is_empty() {
            return Ok(Ok(()));
        }
        let mut keys = Vec::with_capacity(buckets.len());
        let mut args: Vec<String> = Vec::with_capacity(buckets.len() * 2);
        for b in buckets {
            let (key, rate) = match *b {
                Bucket::Key {
                    tenant,
                    key_id,
                    rate,
                } => (self.keys.key_bucket(tenant, key_id), rate),
                Bucket::Tenant { tenant, rate } => (self.keys.tenant_bucket(tenant), rate),
            };
            keys.push(key);
            args.push(format!("{:e}", rate.per_sec));
            args.push(rate.burst.to_string());
        }
        let script = &self.scripts.ratelimit;
        let reply = self
            .run(Op::RateLimit, deadline, |mut c| async move {
                let mut inv = script.prepare_invoke();
                for k in &keys {
                    inv.key(k);
                }
                for a in &args {
                    inv.arg(a);
                }
                inv.invoke_async::<redis::Value>(&mut c).await
            })
            .await?;
        match ints(reply)?.as_slice() {
            [0, _] => Ok(Ok(())),
            [i, wait_us] => Ok(Err((
                usize::try_from(*i - 1).unwrap_or(0),
                Duration::from_micros(u64::try_from(*wait_us).unwrap_or(0))
                    .max(Duration::from_millis(1)),
            ))),
            other => Err(FleetError::Protocol(format!(
                "the rate-limit script answered {other:?}"
            ))),
        }
    }
}

//! Circuit breakers shared by the fleet: outcomes reported to any replica feed the same
//! breakers (`lua/circuit_record.lua`), half-open probes are claimed fleet-wide
//! (`lua/circuit_claim.lua`), and every replica reads all breakers back every
//! `circuit_refresh_ms` (`lua/circuit_read.lua`) into its local breakers, which the engine reads.

use std::time::Instant;

use super::{Deadline, Fleet, FleetError, Op, ints};
use crate::circuit::{CircuitBreakers, ProbeClaim, SharedBreaker};
use crate::config::{CircuitPolicy, Policy};
use crate::domain::ErrorKind;

/// Numbers per breaker in a script's report.
const REPORT: usize = 9;
/// Breakers are kept a week after their last change.
const KEEP_MS: u64 = 7 * 86_400 * 1000;

fn parse(v: &[i64]) -> SharedBreaker {
    let n = |i: usize| v.get(i).copied().unwrap_or(0);
    let u = |i: usize| u64::try_from(n(i)).unwrap_or(0);
    SharedBreaker {
        exists: n(0) == 1,
        state: u8::try_from(n(1)).unwrap_or(0),
        remaining_ms: u(2),
        probes_left: u32::try_from(n(3)).unwrap_or(0),
        last_probe_age_ms: u64::try_from(n(4)).ok(),
        transitions: [u(5), u(6), u(7)],
        probes: u(8),
    }
}

fn breakers_of(v: &[i64], count: usize) -> Result<Vec<SharedBreaker>, FleetError> {
    if v.len() != count * REPORT {
        return Err(FleetError::Protocol(format!(
            "a breaker script answered {} numbers for {count} breakers",
            v.len()
        )));
    }
    Ok(v.chunks(REPORT).map(parse).collect())
}

impl Fleet {
    fn pair(&self, model: &str, provider: &str) -> [String; 4] {
        let [m, mf] = self.keys.breaker("model", model);
        let [p, pf] = self.keys.breaker("provider", provider);
        [m, mf, p, pf]
    }

    fn apply_pair(
        circuits: &CircuitBreakers,
        (model, provider): (&str, &str),
        b: &[SharedBreaker],
    ) {
        let now = Instant::now();
        if let [m, p] = b {
            circuits.apply_shared("model", model, m, now);
            circuits.apply_shared("provider", provider, p, now);
        }
    }

    /// Feed one outcome to the model's and the provider's breakers; the model's state after.
    pub async fn record_outcome(
        &self,
        circuits: &CircuitBreakers,
        policy: &CircuitPolicy,
        (model, provider): (&str, &str),
        error: ErrorKind,
        deadline: Deadline,
    ) -> Result<&'static str, FleetError> {
        let failed = policy.count_errors.contains(&error);
        let keys = self.pair(model, provider);
        let script = &self.scripts.circuit_record;
        let reply = self
            .run(Op::CircuitRecord, deadline, |mut c| async move {
                let mut inv = script.prepare_invoke();
                for k in &keys {
                    inv.key(k);
                }
                inv.arg(u8::from(failed))
                    .arg(policy.failure_threshold)
                    .arg(policy.provider_failure_threshold)
                    .arg(policy.window_secs * 1000)
                    .arg(policy.cooldown_secs * 1000)
                    .arg(policy.half_open_probes)
                    .arg(KEEP_MS);
                inv.invoke_async::<redis::Value>(&mut c).await
            })
            .await?;
        let b = breakers_of(&ints(reply)?, 2)?;
        Self::apply_pair(circuits, (model, provider), &b);
        Ok(b[0].state_name())
    }

    /// Claim (or, `release`, give back) a half-open probe of the model or its provider.
    pub async fn claim_probe(
        &self,
        circuits: &CircuitBreakers,
        policy: &CircuitPolicy,
        (model, provider): (&str, &str),
        release: bool,
        deadline: Deadline,
    ) -> Result<ProbeClaim, FleetError> {
        let [m, _, p, _] = self.pair(model, provider);
        let script = &self.scripts.circuit_claim;
        let reply = self
            .run(Op::CircuitClaim, deadline, |mut c| async move {
                script
                    .key(&m)
                    .key(&p)
                    .arg(policy.cooldown_secs * 1000)
                    .arg(policy.half_open_probes)
                    .arg(KEEP_MS)
                    .arg(if release { "release" } else { "claim" })
                    .invoke_async::<redis::Value>(&mut c)
                    .await
            })
            .await?;
        let v = ints(reply)?;
        let (claim, rest) = v
            .split_first()
            .ok_or_else(|| FleetError::Protocol("the claim script answered nothing".into()))?;
        let b = breakers_of(rest, 2)?;
        Self::apply_pair(circuits, (model, provider), &b);
        Ok(match claim {
            1 => ProbeClaim::Spent,
            2 => ProbeClaim::Taken,
            _ => ProbeClaim::Free,
        })
    }

    /// Read every breaker of the catalog (its models and providers) into `circuits`.
    pub async fn refresh_circuits(
        &self,
        circuits: &CircuitBreakers,
        policy: &Policy,
    ) -> Result<(), FleetError> {
        let mut names: Vec<(&'static str, &str)> = Vec::new();
        for m in policy.models.iter() {
            names.push(("model", m.id.as_str()));
            if !names.contains(&("provider", m.provider.as_str())) {
                names.push(("provider", m.provider.as_str()));
            }
        }
        let keys: Vec<String> = names
            .iter()
            .map(|(scope, name)| {
                let [b, _] = self.keys.breaker(scope, name);
                b
            })
            .collect();
        let cp = &policy.circuit;
        let script = &self.scripts.circuit_read;
        let deadline = self.deadline(None);
        let reply = self
            .run(Op::CircuitRefresh, deadline, |mut c| async move {
                let mut inv = script.prepare_invoke();
                for k in &keys {
                    inv.key(k);
                }
                inv.arg(cp.cooldown_secs * 1000)
                    .arg(cp.half_open_probes)
                    .arg(KEEP_MS);
                inv.invoke_async::<redis::Value>(&mut c).await
            })
            .await?;
        let b = breakers_of(&ints(reply)?, names.len())?;
        let now = Instant::now();
        for ((scope, name), shared) in names.iter().zip(&b) {
            circuits.apply_shared(scope, name, shared, now);
        }
        Ok(())
    }
}

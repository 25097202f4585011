//! Circuit breakers per model and per provider, fed by reported outcome errors: open after N
//! counted failures within a window, half-open after the cooldown (a limited number of probe
//! requests), closed again on a successful probe. A probe whose outcome has not arrived within
//! another cooldown is presumed lost (the caller crashed, or reported another model) and the
//! probes are re-armed, so a breaker never stays half-open with no probe able to go.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::CircuitPolicy;
use crate::domain::ErrorKind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Closed,
    HalfOpen,
    /// `scope` says which breaker is open, e.g. "model gpt-4o open for 12 s more".
    Open {
        scope: String,
    },
}

/// What [`CircuitBreakers::claim_probe`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeClaim {
    /// No half-open breaker: nothing to claim.
    Free,
    /// A half-open breaker's probe is now this request's.
    Spent,
    /// Open, or half-open with every probe taken.
    Taken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// `last_probe`: when the most recent probe was routed (re-arm after a cooldown).
    HalfOpen {
        probes_left: u32,
        last_probe: Option<Instant>,
    },
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }
}

#[derive(Debug)]
struct Breaker {
    failures: VecDeque<Instant>,
    state: State,
    /// Transitions into closed, half-open and open (for the metrics).
    transitions: [u64; 3],
    /// Half-open probes granted.
    probes: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            failures: VecDeque::new(),
            state: State::Closed,
            transitions: [0; 3],
            probes: 0,
        }
    }
}

impl Breaker {
    /// Enter `state`, counting a change of state (re-arming a half-open breaker is none).
    fn set(&mut self, state: State) {
        let slot = |s: &State| match s {
            State::Closed => 0,
            State::HalfOpen { .. } => 1,
            State::Open { .. } => 2,
        };
        if slot(&state) != slot(&self.state) {
            self.transitions[slot(&state)] += 1;
        }
        self.state = state;
    }

    /// Advance Open → HalfOpen once the cooldown has passed, and re-arm the probes of a
    /// half-open breaker whose last probe got no outcome within a cooldown.
    fn tick(&mut self, policy: &CircuitPolicy, now: Instant) {
        let cooldown = Duration::from_secs(policy.cooldown_secs);
        match self.state {
            State::Open { until } if now >= until => {
                self.set(State::HalfOpen {
                    probes_left: policy.half_open_probes,
                    last_probe: None,
                });
            }
            State::HalfOpen {
                probes_left: 0,
                last_probe: Some(at),
            } if now >= at + cooldown => {
                self.state = State::HalfOpen {
                    probes_left: policy.half_open_probes,
                    last_probe: Some(at),
                };
            }
            _ => {}
        }
    }

    fn record(&mut self, policy: &CircuitPolicy, threshold: u32, failed: bool, now: Instant) {
        self.tick(policy, now);
        let window = Duration::from_secs(policy.window_secs);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.failures.pop_front();
        }
        let open = State::Open {
            until: now + Duration::from_secs(policy.cooldown_secs),
        };
        match (self.state, failed) {
            (State::HalfOpen { .. }, true) => {
                self.failures.push_back(now);
                self.set(open);
            }
            (State::HalfOpen { .. }, false) => {
                self.failures.clear();
                self.set(State::Closed);
            }
            (State::Closed, true) => {
                self.failures.push_back(now);
                if threshold > 0 && self.failures.len() >= threshold as usize {
                    self.set(open);
                }
            }
            (State::Closed, false) | (State::Open { .. }, _) => {}
        }
    }
}

/// One breaker as [`CircuitBreakers::snapshot`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerSnapshot {
    pub scope: &'static str,
    pub name: String,
    pub state: &'static str,
    pub transitions: [u64; 3],
    pub probes: u64,
}

/// One breaker as the fleet's shared state reports it (`crate::fleet::circuits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SharedBreaker {
    /// `false`: the fleet has never seen an outcome for it (closed).
    pub exists: bool,
    /// 0 closed, 1 half-open, 2 open.
    pub state: u8,
    /// Open: how long until it turns half-open.
    pub remaining_ms: u64,
    pub probes_left: u32,
    pub last_probe_age_ms: Option<u64>,
    pub transitions: [u64; 3],
    pub probes: u64,
}

impl SharedBreaker {
    pub fn state_name(&self) -> &'static str {
        match self.state {
            2 => "open",
            1 => "half_open",
            _ => "closed",
        }
    }
}

#[derive(Debug, Default)]
pub struct CircuitBreakers {
    inner: Mutex<HashMap<String, Breaker>>,
}

fn model_key(model: &str) -> String {
    format!("model:{model}")
}

fn provider_key(provider: &str) -> String {
    format!("provider:{provider}")
}

impl CircuitBreakers {
    pub fn new() -> CircuitBreakers {
        CircuitBreakers::default()
    }

    /// May traffic go to this model now?
    pub fn gate(&self, policy: &CircuitPolicy, model: &str, provider: &str, now: Instant) -> Gate {
        let mut map = self.inner.lock();
        if map.is_empty() {
            return Gate::Closed;
        }
        let mut gate = Gate::Closed;
        for (key, what) in [
            (model_key(model), format!("model {model}")),
            (provider_key(provider), format!("provider {provider}")),
        ] {
            let Some(b) = map.get_mut(&key) else { continue };
            b.tick(policy, now);
            match b.state {
                State::Closed => {}
                State::Open { until } => {
                    let secs = until.saturating_duration_since(now).as_secs_f64().ceil();
                    return Gate::Open {
                        scope: format!("{what} open for {secs:.0} s more"),
                    };
                }
                State::HalfOpen { probes_left: 0, .. } => {
                    return Gate::Open {
                        scope: format!("{what} half-open, probe in flight"),
                    };
                }
                State::HalfOpen { .. } => gate = Gate::HalfOpen,
            }
        }
        gate
    }

    /// The router is about to send a request to this model: a half-open breaker spends one
    /// probe. [`ProbeClaim::Taken`] when a breaker of the model or its provider is open, or
    /// half-open with no probe left (concurrent requests took them since the gate was read):
    /// decide again.
    pub fn claim_probe(
        &self,
        policy: &CircuitPolicy,
        model: &str,
        provider: &str,
        now: Instant,
    ) -> ProbeClaim {
        let mut map = self.inner.lock();
        if map.is_empty() {
            return ProbeClaim::Free;
        }
        let keys = [model_key(model), provider_key(provider)];
        for key in &keys {
            if let Some(b) = map.get_mut(key) {
                b.tick(policy, now);
                if let State::HalfOpen { probes_left: 0, .. } | State::Open { .. } = b.state {
                    return ProbeClaim::Taken;
                }
            }
        }
        let mut claim = ProbeClaim::Free;
        for key in &keys {
            if let Some(b) = map.get_mut(key)
                && let State::HalfOpen {
                    probes_left,
                    last_probe,
                } = &mut b.state
            {
                *probes_left -= 1;
                *last_probe = Some(now);
                b.probes += 1;
                claim = ProbeClaim::Spent;
            }
        }
        claim
    }

    /// Give back a probe spent by [`CircuitBreakers::claim_probe`] for a request that did not
    /// go to the model after all.
    pub fn release_probe(&self, policy: &CircuitPolicy, model: &str, provider: &str) {
        let mut map = self.inner.lock();
        for key in [model_key(model), provider_key(provider)] {
            if let Some(b) = map.get_mut(&key)
                && let State::HalfOpen { probes_left, .. } = &mut b.state
                && *probes_left < policy.half_open_probes
            {
                *probes_left += 1;
            }
        }
    }

    /// Whether a breaker of the model or its provider is not closed (as last known): only then
    /// does a request need the fleet's probe claim.
    pub fn any_not_closed(&self, policy: &CircuitPolicy, model: &str, provider: &str) -> bool {
        let mut map = self.inner.lock();
        if map.is_empty() {
            return false;
        }
        let now = Instant::now();
        [model_key(model), provider_key(provider)]
            .iter()
            .any(|key| {
                map.get_mut(key).is_some_and(|b| {
                    b.tick(policy, now);
                    b.state != State::Closed
                })
            })
    }

    /// Take one breaker's state as the fleet's shared state has it (`crate::fleet`): the state,
    /// its timing (relative to `now`), and the fleet's counts of transitions and probes (never
    /// lower than what this replica counted already, so the metrics stay monotonic).
    pub fn apply_shared(&self, scope: &str, name: &str, shared: &SharedBreaker, now: Instant) {
        let key = if scope == "provider" {
            provider_key(name)
        } else {
            model_key(name)
        };
        let mut map = self.inner.lock();
        if !shared.exists {
            if let Some(b) = map.get_mut(&key) {
                b.state = State::Closed;
                b.failures.clear();
            }
            return;
        }
        let b = map.entry(key).or_default();
        b.state = match shared.state {
            2 => State::Open {
                until: now
                    .checked_add(Duration::from_millis(shared.remaining_ms))
                    .unwrap_or(now + Duration::from_secs(86_400)),
            },
            1 => State::HalfOpen {
                probes_left: shared.probes_left,
                last_probe: shared
                    .last_probe_age_ms
                    .and_then(|age| now.checked_sub(Duration::from_millis(age))),
            },
            _ => State::Closed,
        };
        for (mine, fleet) in b.transitions.iter_mut().zip(shared.transitions) {
            *mine = (*mine).max(fleet);
        }
        b.probes = b.probes.max(shared.probes);
    }

    /// The model's breaker state name now, without feeding it anything.
    pub fn state_name(&self, policy: &CircuitPolicy, model: &str) -> &'static str {
        let mut map = self.inner.lock();
        let Some(b) = map.get_mut(&model_key(model)) else {
            return "closed";
        };
        b.tick(policy, Instant::now());
        b.state.name()
    }

    /// Every breaker that has seen an outcome, for the metrics: its scope (`model` or
    /// `provider`), name, state now, transitions into closed/half-open/open, probes granted.
    pub fn snapshot(&self, policy: &CircuitPolicy, now: Instant) -> Vec<BreakerSnapshot> {
        let mut map = self.inner.lock();
        let mut out: Vec<BreakerSnapshot> = map
            .iter_mut()
            .filter_map(|(key, b)| {
                b.tick(policy, now);
                let (scope, name) = key.split_once(':')?;
                Some(BreakerSnapshot {
                    scope: if scope == "provider" {
                        "provider"
                    } else {
                        "model"
                    },
                    name: name.to_string(),
                    state: b.state.name(),
                    transitions: b.transitions,
                    probes: b.probes,
                })
            })
            .collect();
        out.sort_by(|a, b| (a.scope, &a.name).cmp(&(b.scope, &b.name)));
        out
    }

    /// Feed one outcome. Errors not counted by the policy (e.g. refusals) count as successes for
    /// availability. Returns the model's state name afterwards.
    pub fn record(
        &self,
        policy: &CircuitPolicy,
        model: &str,
        provider: &str,
        error: ErrorKind,
        now: Instant,
    ) -> &'static str {
        let failed = policy.count_errors.contains(&error);
        let mut map = self.inner.lock();
        map.entry(provider_key(provider)).or_default().record(
            policy,
            policy.provider_failure_threshold,
            failed,
            now,
        );
        let b = map.entry(model_key(model)).or_default();
        b.record(policy, policy.failure_threshold, failed, now);
        b.state.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn policy() -> CircuitPolicy {
        CircuitPolicy {
            failure_threshold: 3,
            window_secs: 10,
            cooldown_secs: 5,
            half_open_probes: 1,
            provider_failure_threshold: 0,
            count_errors: BTreeSet::from([ErrorKind::Timeout, ErrorKind::ServerError]),
        }
    }

    #[test]
    fn opens_after_threshold_within_window_then_half_opens_and_closes() {
        let p = policy();
        let cb = CircuitBreakers::new();
        let t0 = Instant::now();
        assert_eq!(cb.record(&p, "m", "prov", ErrorKind::Timeout, t0), "closed");
        assert_eq!(cb.record(&p, "m", "prov", ErrorKind::Refusal, t0), "closed");
        assert_eq!(
            cb.record(&p, "m", "prov", ErrorKind::ServerError, t0),
            "closed"
        );
        assert_eq!(cb.gate(&p, "m", "prov", t0), Gate::Closed);
        assert_eq!(cb.record(&p, "m", "prov", ErrorKind::Timeout, t0), "open");
        assert!(matches!(
            cb.gate(&p, "m", "prov", t0 + Duration::from_secs(4)),
            Gate::Open { .. }
        ));
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(cb.gate(&p, "m", "prov", t1), Gate::HalfOpen);
        assert_eq!(cb.claim_probe(&p, "m", "prov", t1), ProbeClaim::Spent);
        assert!(
            matches!(cb.gate(&p, "m", "prov", t1), Gate::Open { scope } if scope.contains("probe"))
        );
        // A concurrent request that read the gate before the probe was taken gets none.
        assert_eq!(cb.claim_probe(&p, "m", "prov", t1), ProbeClaim::Taken);
        // A request that gives its probe back (it went elsewhere) frees it for the next, once.
        cb.release_probe(&p, "m", "prov");
        cb.release_probe(&p, "m", "prov");
        assert_eq!(cb.gate(&p, "m", "prov", t1), Gate::HalfOpen);
        assert_eq!(cb.claim_probe(&p, "m", "prov", t1), ProbeClaim::Spent);
        assert_eq!(cb.claim_probe(&p, "m", "prov", t1), ProbeClaim::Taken);
        assert_eq!(cb.claim_probe(&p, "other", "prov2", t1), ProbeClaim::Free);
        assert_eq!(cb.record(&p, "m", "prov", ErrorKind::None, t1), "closed");
        assert_eq!(cb.gate(&p, "m", "prov", t1), Gate::Closed);
        // What the metrics read: one trip round, two probes granted; the provider's breaker
        // (no threshold) never moved.
        let snap = cb.snapshot(&p, t1);
        let m = snap
            .iter()
            .find(|b| b.scope == "model" && b.name == "m")
            .unwrap();
        assert_eq!((m.state, m.transitions, m.probes), ("closed", [1, 1, 1], 2));
        let prov = snap.iter().find(|b| b.scope == "provider").unwrap();
        assert_eq!((prov.name.as_str(), prov.transitions), ("prov", [0, 0, 0]));
    }

    #[test]
    fn a_lost_probe_is_re_armed_after_a_cooldown() {
        let p = policy();
        let cb = CircuitBreakers::new();
        let t0 = Instant::now();
        for _ in 0..3 {
            cb.record(&p, "m", "prov", ErrorKind::Timeout, t0);
        }
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(cb.gate(&p, "m", "prov", t1), Gate::HalfOpen);
        assert_eq!(cb.claim_probe(&p, "m", "prov", t1), ProbeClaim::Spent);
        // The probe's outcome never comes: blocked for one cooldown, then another probe may go.
        let later = t1 + Duration::from_secs(4);
        assert!(matches!(cb.gate(&p, "m", "prov", later), Gate::Open { .. }));
        let t2 = t1 + Duration::from_secs(5);
        assert_eq!(cb.gate(&p, "m", "prov", t2), Gate::HalfOpen);
        assert_eq!(cb.claim_probe(&p, "m", "prov", t2), ProbeClaim::Spent);
        assert!(matches!(cb.gate(&p, "m", "prov", t2), Gate::Open { .. }));
        // Its outcome arrives: a success closes the breaker.
        assert_eq!(cb.record(&p, "m", "prov", ErrorKind::None, t2), "closed");
        assert_eq!(cb.gate(&p, "m", "prov", t2), Gate::Closed);
    }

    #[test]
    fn failures_outside_the_window_do_not_count_and_failed_probe_reopens() {
        let p = policy();
        let cb = CircuitBreakers::new();
        let t0 = Instant::now();
        cb.record(&p, "m", "prov", ErrorKind::Timeout, t0);
        cb.record(&p, "m", "prov", ErrorKind::Timeout, t0);
        let late = t0 + Duration::from_secs(11);
        assert_eq!(
            cb.record(&p, "m", "prov", ErrorKind::Timeout, late),
            "closed"
        );
        assert_eq!(
            cb.record(&p, "m", "prov", ErrorKind::Timeout, late),
            "closed"
        );
        assert_eq!(cb.record(&p, "m", "prov", ErrorKind::Timeout, late), "open");
        let probe = late + Duration::from_secs(6);
        assert_eq!(cb.gate(&p, "m", "prov", probe), Gate::HalfOpen);
        assert_eq!(
            cb.record(&p, "m", "prov", ErrorKind::Timeout, probe),
            "open"
        );
        assert!(matches!(cb.gate(&p, "m", "prov", probe), Gate::Open { .. }));
    }

    #[test]
    fn provider_breaker_blocks_all_its_models() {
        let mut p = policy();
        p.provider_failure_threshold = 2;
        let cb = CircuitBreakers::new();
        let t0 = Instant::now();
        cb.record(&p, "a", "prov", ErrorKind::Timeout, t0);
        cb.record(&p, "b", "prov", ErrorKind::Timeout, t0);
        assert!(
            matches!(cb.gate(&p, "c", "prov", t0), Gate::Open { scope } if scope.contains("provider prov"))
        );
        assert_eq!(cb.gate(&p, "c", "other", t0), Gate::Closed);
    }
}

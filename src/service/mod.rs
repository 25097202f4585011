//! What happens to a validated request.
//!
//! Route: decide (claiming the primary's half-open probe, if any), hold the estimated cost
//! under the budget caps (a cap reached concurrently since the decision sends the request back
//! to the engine: downgrade or deny), track the decision for its outcome, append the decision
//! record; a refusal is logged too.
//!
//! ReportOutcome: match the decision (an attempt already reported is a duplicate), book the
//! cost in place of the hold, tick the circuit breakers, append the outcome record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use signalbox_features::log_schema::{ModelQuality, PiiCount, SCHEMA_VERSION};
use tracing::Instrument;

use crate::budget::{BudgetLedger, BudgetView, CapShare, Payer, Reservation};
use crate::circuit::ProbeClaim;
use crate::config::Policy;
use crate::decision_log::{DecisionRecord, LogError, LogRecord, OutcomeRecord, ShadowRecord};
use crate::domain::{ErrorKind, PiiKind, Reason, RouterKind};
use crate::engine::{DecideError, Decision, DecisionEngine, RouteInput, RuntimeState, TaskSource};
use crate::fleet::budget::{HoldCheck, HoldResult, MirrorView, OutageView};
use crate::fleet::{Fleet, FleetError, OnUnavailable};
use crate::money::Micros;
use crate::state::{LiveState, Shared};
use crate::telemetry::Call;
use crate::telemetry::phases::{Interval, RoutePhases};
use crate::tracking::{Claim, TrackedDecision};

mod observe;

use observe::{ReportPhases, ReportSeen};

/// How often a request that lost a half-open probe to a concurrent one decides again.
const PROBE_RETRIES: usize = 3;
/// How often a request whose hold found a cap reached since its decision decides again.
const HOLD_RETRIES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("model_id: unknown model {0:?}")]
    UnknownModel(String),
    #[error("decision_id: no recent decision {0:?} (unknown or expired)")]
    DecisionNotFound(String),
    #[error(transparent)]
    Decide(#[from] DecideError),
    #[error(transparent)]
    Log(#[from] LogError),
    /// The fleet's shared state (`[state] backend = "redis"`).
    #[error(transparent)]
    State(#[from] crate::fleet::FleetError),
}

/// A decision with the live state it was made under (model indices refer to its policy).
pub struct Routed {
    pub decision_id: String,
    pub decision: Decision,
    pub live: Arc<LiveState>,
}

/// A validated outcome.
#[derive(Debug, Clone)]
pub struct OutcomeInput {
    pub decision_id: String,
    pub model_id: String,
    pub success: bool,
    pub quality: f64,
    pub latency_ms: u32,
    pub tokens_in: u32,
    pub tokens_out: u32,
    /// What the outcome books: as reported, else from its tokens at catalog prices (checked
    /// against `budgets.max_outcome_cost_usd` at validation).
    pub cost: Micros,
    pub error: ErrorKind,
    /// 0: not numbered (always booked); 1..=64: booked once.
    pub attempt: u32,
}

/// What ReportOutcome answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Acknowledged {
    pub decision_id: String,
    /// The cost booked (zero for a duplicate).
    pub cost: Micros,
    /// The model's circuit state after the outcome.
    pub circuit_state: &'static str,
    /// The attempt was reported before: nothing booked, counted or logged again.
    pub duplicate: bool,
}

/// One Route being decided: what every step of the decision reads.
struct Deciding<'a> {
    decision_id: &'a str,
    input: &'a RouteInput,
    engine: &'a DecisionEngine,
    state: RuntimeState<'a>,
    backend: &'a Backend<'a>,
    /// The caller's deadline, which no Redis call outlasts.
    deadline: Option<Instant>,
}

/// Where a request's budgets, decisions and breakers live.
enum Backend<'a> {
    /// This process (`[state] backend = "local"`).
    Local,
    /// The fleet's shared state in Redis, which is up.
    Fleet(&'a Fleet),
    /// Redis is down and `on_unavailable = "local"`: this replica's outage ledger, with its
    /// share of each cap.
    Outage(&'a Fleet, Arc<BudgetLedger>),
}

/// A decision with its estimated cost held on its payer's accounts.
struct Held {
    decision: Decision,
    payer: Payer,
    /// `None` when nothing is held (a zero estimate).
    reservation: Option<Reservation>,
    /// When the hold was taken: the decision's age counts from here.
    at: Instant,
}

fn timestamp() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Shared {
    /// The whole Route path after validation: decide, track, reserve budget, log; then the
    /// call's metrics and trace ([`observe`]). Log lines of the request carry its decision id.
    pub async fn route(&self, input: RouteInput, call: &Call) -> Result<Routed, ServiceError> {
        // Refuse before holding budget or tracking a decision the log could not keep.
        self.ensure_log_writable()?;
        let decision_id = self.mint_decision_id();
        let mut phases = RoutePhases::default();
        let span = tracing::info_span!("route", decision_id = %decision_id);
        let result = self
            .route_phases(&decision_id, &input, &mut phases, call.deadline)
            .instrument(span)
            .await;
        self.observe_route(call, &decision_id, &input, &phases, &result);
        let (decision, live) = result?;
        Ok(Routed {
            decision_id,
            decision,
            live,
        })
    }

    /// A new decision id (UUIDv7). With a shared state, its last bit says whether it was made
    /// during a Redis outage, so another replica can tell such a decision, not shared yet, from
    /// an unknown one ([`minted_in_outage`]).
    fn mint_decision_id(&self) -> String {
        let id = uuid::Uuid::now_v7();
        let Some(fleet) = &self.fleet else {
            return id.to_string();
        };
        let mut bytes = *id.as_bytes();
        if fleet.is_up() {
            bytes[15] &= !1;
        } else {
            bytes[15] |= 1;
        }
        uuid::Uuid::from_bytes(bytes).to_string()
    }

    /// Where this request's state lives now.
    fn backend(&self) -> Result<Backend<'_>, ServiceError> {
        match &self.fleet {
            None => Ok(Backend::Local),
            Some(f) if f.is_up() => Ok(Backend::Fleet(f)),
            Some(f) => match f.on_unavailable() {
                OnUnavailable::FailClosed => Err(FleetError::Unavailable(
                    "answering UNAVAILABLE until Redis is back (on_unavailable = fail_closed)"
                        .into(),
                )
                .into()),
                OnUnavailable::Local => Ok(Backend::Outage(f, f.outage.ledger())),
            },
        }
    }

    async fn route_phases(
        &self,
        decision_id: &str,
        input: &RouteInput,
        phases: &mut RoutePhases,
        deadline: Option<Instant>,
    ) -> Result<(Decision, Arc<LiveState>), ServiceError> {
        let backend = self.backend()?;
        let result = self
            .route_on(&backend, decision_id, input, phases, deadline)
            .await;
        match (result, &backend) {
            // Redis went away during this request: decide it again on local state.
            (Err(ServiceError::State(FleetError::Unavailable(_))), Backend::Fleet(f))
                if f.on_unavailable() == OnUnavailable::Local =>
            {
                *phases = RoutePhases::default();
                let outage = Backend::Outage(f, f.outage.ledger());
                self.route_on(&outage, decision_id, input, phases, deadline)
                    .await
            }
            (result, _) => result,
        }
    }

    async fn route_on(
        &self,
        backend: &Backend<'_>,
        decision_id: &str,
        input: &RouteInput,
        phases: &mut RoutePhases,
        deadline: Option<Instant>,
    ) -> Result<(Decision, Arc<LiveState>), ServiceError> {
        let live = self.live.load_full();
        let engine = &live.engine;
        let policy = engine.policy();
        let (mirror, outage);
        let budgets: &dyn BudgetView = match backend {
            Backend::Local => &self.budgets,
            Backend::Fleet(f) => {
                mirror = MirrorView(&f.mirror);
                &mirror
            }
            Backend::Outage(f, ledger) => {
                outage = OutageView { fleet: f, ledger };
                &outage
            }
        };
        let deciding = Deciding {
            decision_id,
            input,
            engine,
            state: RuntimeState {
                budgets,
                circuits: &self.circuits,
            },
            backend,
            deadline,
        };
        let decision = match backend {
            Backend::Fleet(f) => self.decide_hold_track(&deciding, phases, f).await?,
            Backend::Local | Backend::Outage(..) => {
                let Held {
                    decision,
                    payer,
                    reservation,
                    at: now,
                } = self.decide_and_hold(&deciding, phases).await?;
                if let Backend::Outage(f, _) = backend {
                    let ttl = Duration::from_secs(policy.server.decision_ttl_secs);
                    f.outage.track(decision_id, &payer, ttl);
                }
                self.tracker.insert(
                    decision_id,
                    TrackedDecision {
                        payer,
                        created: now,
                        reservation,
                        reported: 0,
                    },
                );
                decision
            }
        };
        self.stats.record(&decision, policy);
        phases.policy = phases.inspect.map(|i| Interval::since(i.end));
        let appending = Instant::now();
        self.log
            .append(LogRecord::Decision(Box::new(decision_record(
                decision_id,
                input,
                &decision,
                policy,
            ))))
            .await?;
        phases.log = Some(Interval::since(appending));
        tracing::debug!(
            router = decision.router.as_str(),
            model = %policy.model(decision.primary).id,
            "decided"
        );
        Ok((decision, live))
    }

    /// [`Self::decide_and_hold`] on the fleet's shared state, and the decision stored for its
    /// outcome: one round trip to Redis (the check-and-hold script and the store, pipelined;
    /// only the store for payers without caps). If concurrent requests reached a cap since the
    /// decision, the engine decides again under it and holds that decision's estimate.
    async fn decide_hold_track(
        &self,
        deciding: &Deciding<'_>,
        phases: &mut RoutePhases,
        fleet: &Fleet,
    ) -> Result<Decision, ServiceError> {
        let (input, policy) = (deciding.input, deciding.engine.policy());
        let (decision, probe) = self.decide_claiming_probe(deciding, phases).await?;
        let payer = (input.tenant_id.as_str(), input.user_id.as_str());
        let id = deciding.decision_id;
        let ttl = Duration::from_secs(policy.server.decision_ttl_secs);
        let deadline = || fleet.deadline(deciding.deadline);
        if !Fleet::needs_hold(policy, payer.0, payer.1) {
            fleet.track(id, payer, ttl, deadline()).await?;
            return Ok(decision);
        }
        let check = |d: &Decision| {
            if d.budget_limited {
                HoldCheck::DenyCaps
            } else {
                HoldCheck::AllCaps
            }
        };
        let (mut decision, mut probe) = (decision, probe);
        let mut track = Some(ttl);
        for _ in 0..=HOLD_RETRIES {
            let (mode, cost) = (check(&decision), decision.estimated_cost);
            match fleet
                .hold(policy, payer, id, cost, mode, track.take(), deadline())
                .await?
            {
                HoldResult::Held(_) => return Ok(decision),
                // A cap was reached since the decision (the mirror now has the figures that
                // reached it): give back the probe and decide again under it. (The decision is
                // stored already: its payer is the same; a denial leaves that entry unused
                // until it expires.)
                HoldResult::CapReached => {
                    if probe == ProbeClaim::Spent {
                        let primary = policy.model(decision.primary);
                        fleet
                            .claim_probe(
                                &self.circuits,
                                &policy.circuit,
                                (&primary.id, &primary.provider),
                                true,
                                deadline(),
                            )
                            .await?;
                    }
                    (decision, probe) = self.decide_claiming_probe(deciding, phases).await?;
                }
            }
        }
        // Caps keep being reached between the decision and its hold: refuse.
        Err(ServiceError::Decide(DecideError::BudgetDenied {
            policy_id: "budget".into(),
            message: format!(
                "tenant {}: a budget cap was reached by concurrent requests while deciding; retry",
                payer.0
            ),
        }))
    }

    /// Decide, then hold the decision's estimated cost on its payer's accounts for
    /// `budgets.in_flight_ttl_secs`. A decision made within the caps is held atomically with a
    /// re-check; if concurrent requests reached a cap since the decision, the engine decides
    /// again under it (downgrade or deny, as the policy says) and gets the probe it held back.
    async fn decide_and_hold(
        &self,
        deciding: &Deciding<'_>,
        phases: &mut RoutePhases,
    ) -> Result<Held, ServiceError> {
        let (input, engine) = (deciding.input, deciding.engine);
        let policy = engine.policy();
        let at = Utc::now();
        let (ledger, outage): (&BudgetLedger, _) = match deciding.backend {
            Backend::Outage(f, ledger) => (ledger, Some(OutageView { fleet: f, ledger })),
            Backend::Local | Backend::Fleet(_) => (&self.budgets, None),
        };
        let share = |tenant: &str, user: &str, caps: &crate::config::BudgetCaps| match &outage {
            Some(o) => o.share(tenant, user, caps, at),
            None => caps.clone(),
        };
        let share: &CapShare<'_> = &share;
        let payer = ledger.payer(&input.tenant_id, &input.user_id);
        let ttl = Duration::from_secs(policy.budgets.in_flight_ttl_secs);
        let (decision, probe) = self.decide_claiming_probe(deciding, phases).await?;
        let now = Instant::now();
        if decision.budget_limited {
            let held = ledger.reserve(&payer, decision.estimated_cost, ttl, now);
            return Ok(Held {
                decision,
                payer,
                reservation: held,
                at: now,
            });
        }
        match ledger.reserve_if_within_share(
            policy,
            &payer,
            decision.estimated_cost,
            ttl,
            (now, at),
            share,
        ) {
            Ok(held) => Ok(Held {
                decision,
                payer,
                reservation: held,
                at: now,
            }),
            Err(_) => {
                if probe == ProbeClaim::Spent {
                    let primary = policy.model(decision.primary);
                    self.circuits
                        .release_probe(&policy.circuit, &primary.id, &primary.provider);
                }
                let (decision, _) = self.decide_claiming_probe(deciding, phases).await?;
                let held = ledger.reserve(&payer, decision.estimated_cost, ttl, now);
                Ok(Held {
                    decision,
                    payer,
                    reservation: held,
                    at: now,
                })
            }
        }
    }

    /// `UNAVAILABLE` while the decision log is retrying a failed write.
    fn ensure_log_writable(&self) -> Result<(), ServiceError> {
        if self.log.writable() {
            Ok(())
        } else {
            Err(ServiceError::Log(LogError::Unwritable))
        }
    }

    /// The engine's decision, holding a probe of its primary's half-open breaker. Concurrent
    /// requests may all have read a free probe; those that find it taken decide again (the
    /// breaker now reads as open for them), at most [`PROBE_RETRIES`] times. The last decision
    /// stands even if its probe is taken: the engine chose it with every alternative ruled
    /// out (an open breaker relaxed, with a reason).
    async fn decide_claiming_probe(
        &self,
        deciding: &Deciding<'_>,
        phases: &mut RoutePhases,
    ) -> Result<(Decision, ProbeClaim), ServiceError> {
        let policy = deciding.engine.policy();
        let mut round = 0;
        loop {
            let decision = self.decide_or_log_refusal(deciding, phases).await?;
            let primary = policy.model(decision.primary);
            let claim = match deciding.backend {
                // Only a breaker that is not closed (as last read) has a probe to claim.
                Backend::Fleet(f)
                    if self.circuits.any_not_closed(
                        &policy.circuit,
                        &primary.id,
                        &primary.provider,
                    ) =>
                {
                    f.claim_probe(
                        &self.circuits,
                        &policy.circuit,
                        (&primary.id, &primary.provider),
                        false,
                        f.deadline(deciding.deadline),
                    )
                    .await?
                }
                Backend::Fleet(_) => ProbeClaim::Free,
                Backend::Local | Backend::Outage(..) => self.circuits.claim_probe(
                    &policy.circuit,
                    &primary.id,
                    &primary.provider,
                    Instant::now(),
                ),
            };
            if claim != ProbeClaim::Taken || round == PROBE_RETRIES {
                return Ok((decision, claim));
            }
            round += 1;
        }
    }

    /// The engine's decision; a refusal (budget denial, unsatisfiable request) is logged as a
    /// decision too before it is returned.
    async fn decide_or_log_refusal(
        &self,
        deciding: &Deciding<'_>,
        phases: &mut RoutePhases,
    ) -> Result<Decision, ServiceError> {
        let Deciding {
            decision_id,
            input,
            engine,
            state,
            backend: _,
            deadline: _,
        } = deciding;
        match engine.decide_timed(input, state, Utc::now(), Instant::now(), phases) {
            Ok(d) => Ok(d),
            Err(e) => {
                phases.policy = phases.inspect.map(|i| Interval::since(i.end));
                let appending = Instant::now();
                self.log
                    .append(LogRecord::Decision(Box::new(refusal_record(
                        decision_id,
                        input,
                        engine.policy(),
                        &e,
                    ))))
                    .await?;
                phases.log = Some(Interval::since(appending));
                tracing::debug!(error = %e, "refused");
                Err(e.into())
            }
        }
    }

    /// The whole ReportOutcome path after validation.
    pub async fn report(&self, o: OutcomeInput) -> Result<Acknowledged, ServiceError> {
        self.report_for(o, None, &Call::now()).await
    }

    /// [`Self::report`] on behalf of `tenant` (an API key's): an outcome for another tenant's
    /// decision is `DecisionNotFound`, exactly as for an unknown one, with nothing booked.
    pub async fn report_for(
        &self,
        o: OutcomeInput,
        tenant: Option<&str>,
        call: &Call,
    ) -> Result<Acknowledged, ServiceError> {
        // Refuse before booking spend the log could not keep (the caller retries later).
        self.ensure_log_writable()?;
        let mut phases = ReportPhases::default();
        let span = tracing::info_span!("report_outcome", decision_id = %o.decision_id);
        // What the metrics and the trace name, kept only when they are on.
        let seen = self.telemetry.is_on().then(|| ReportSeen {
            decision_id: o.decision_id.clone(),
            model_id: o.model_id.clone(),
            success: o.success,
            error: o.error,
        });
        let result = self
            .report_phases(o, tenant, &mut phases, call.deadline)
            .instrument(span)
            .await;
        if let Some(seen) = &seen {
            self.observe_report(call, seen, &phases, &result);
        }
        result
    }

    async fn report_phases(
        &self,
        o: OutcomeInput,
        tenant: Option<&str>,
        phases: &mut ReportPhases,
        deadline: Option<Instant>,
    ) -> Result<Acknowledged, ServiceError> {
        let booking = Instant::now();
        let live = self.live.load_full();
        let policy = live.engine.policy();
        let Some(spec) = policy.find_model(&o.model_id).map(|m| policy.model(m)) else {
            return Err(ServiceError::UnknownModel(o.model_id));
        };
        let backend = self.backend()?;
        let booked = match &backend {
            Backend::Fleet(f) => self.book_shared(f, &o, tenant, policy, deadline).await?,
            Backend::Local | Backend::Outage(..) => self.book_local(&backend, &o, tenant)?,
        };
        let Some((tenant_id, user_id)) = booked else {
            // A retried report: acknowledged again, nothing booked, counted or logged twice.
            return Ok(Acknowledged {
                decision_id: o.decision_id,
                cost: Micros::ZERO,
                circuit_state: self.circuits.state_name(&policy.circuit, &spec.id),
                duplicate: true,
            });
        };
        let cost = o.cost;
        let now = Utc::now();
        let local_record = || {
            self.circuits.record(
                &policy.circuit,
                &spec.id,
                &spec.provider,
                o.error,
                Instant::now(),
            )
        };
        let circuit_state = match &backend {
            Backend::Fleet(f) => {
                let pair = (spec.id.as_str(), spec.provider.as_str());
                let deadline = f.deadline(deadline);
                match f
                    .record_outcome(&self.circuits, &policy.circuit, pair, o.error, deadline)
                    .await
                {
                    Ok(state) => state,
                    // The cost is booked: the outcome stands, its breaker tick stays local.
                    Err(e) => {
                        tracing::warn!(error = %e, "outcome booked; the shared circuit breaker missed it");
                        local_record()
                    }
                }
            }
            Backend::Local | Backend::Outage(..) => local_record(),
        };
        phases.book = Some(Interval::since(booking));
        let appending = Instant::now();
        self.log
            .append(LogRecord::Outcome(OutcomeRecord {
                schema: SCHEMA_VERSION,
                ts: now.to_rfc3339_opts(SecondsFormat::Millis, true),
                decision_id: o.decision_id.clone(),
                tenant_id,
                user_id,
                model_id: o.model_id,
                success: o.success,
                quality: o.quality,
                latency_ms: o.latency_ms,
                tokens_in: o.tokens_in,
                tokens_out: o.tokens_out,
                cost_usd: cost.usd(),
                error: o.error.as_str().to_string(),
                attempt: o.attempt,
            }))
            .await?;
        phases.log = Some(Interval::since(appending));
        tracing::debug!(cost_usd = cost.usd(), "outcome booked");
        Ok(Acknowledged {
            decision_id: o.decision_id,
            cost,
            circuit_state,
            duplicate: false,
        })
    }
}

impl Shared {
    /// Claim and book an outcome on this process's state: `Some((tenant, user))` when booked,
    /// `None` for a repeated attempt. In an outage, a decision this replica does not know may
    /// be in Redis: `UNAVAILABLE`, so the caller retries later and nothing is lost.
    fn book_local(
        &self,
        backend: &Backend<'_>,
        o: &OutcomeInput,
        tenant: Option<&str>,
    ) -> Result<Option<(String, String)>, ServiceError> {
        let claim = self.tracker.claim_for(&o.decision_id, o.attempt, tenant);
        let tracked = match (claim, backend) {
            (Some(Claim::Book(t)), _) => t,
            (Some(Claim::Repeat), _) => return Ok(None),
            (None, Backend::Outage(..)) => {
                return Err(FleetError::Unavailable(format!(
                    "decision {:?} is not known to this replica and Redis is unreachable; report it again later",
                    o.decision_id
                ))
                .into());
            }
            (None, Backend::Local | Backend::Fleet(_)) => {
                return Err(ServiceError::DecisionNotFound(o.decision_id.clone()));
            }
        };
        let now = Utc::now();
        match backend {
            Backend::Outage(f, _) => {
                f.outage
                    .settle(&tracked.payer, tracked.reservation, o.cost, now)
            }
            Backend::Local | Backend::Fleet(_) => {
                self.budgets
                    .settle(&tracked.payer, tracked.reservation, o.cost, now);
            }
        }
        Ok(Some((
            tracked.payer.tenant_id().to_string(),
            tracked.payer.user_id().to_string(),
        )))
    }

    /// Claim and book an outcome in Redis, whichever replica made the decision (a decision
    /// made here during an outage is found in the local tracker and booked in Redis).
    async fn book_shared(
        &self,
        fleet: &Fleet,
        o: &OutcomeInput,
        tenant: Option<&str>,
        policy: &Policy,
        deadline: Option<Instant>,
    ) -> Result<Option<(String, String)>, ServiceError> {
        let found = fleet
            .decision(&o.decision_id, fleet.deadline(deadline))
            .await?;
        let mut claimed_here = false;
        let (payer_tenant, payer_user) = match found {
            Some(d) => (d.tenant, d.user),
            None => match self.tracker.claim_for(&o.decision_id, o.attempt, tenant) {
                Some(Claim::Book(t)) => {
                    claimed_here = true;
                    (
                        t.payer.tenant_id().to_string(),
                        t.payer.user_id().to_string(),
                    )
                }
                Some(Claim::Repeat) => return Ok(None),
                // Made during an outage by another replica that has not written it to Redis
                // yet: report it again later.
                None if minted_in_outage(&o.decision_id, policy.server.decision_ttl_secs) => {
                    return Err(FleetError::Unavailable(format!(
                        "decision {:?} was made during a Redis outage by another replica and is not shared yet; report it again later",
                        o.decision_id
                    ))
                    .into());
                }
                None => return Err(ServiceError::DecisionNotFound(o.decision_id.clone())),
            },
        };
        // Another tenant's decision is not found, exactly as an unknown one.
        if tenant.is_some_and(|t| t != payer_tenant) {
            return Err(ServiceError::DecisionNotFound(o.decision_id.clone()));
        }
        let settled = fleet
            .settle(
                policy,
                &payer_tenant,
                &payer_user,
                &o.decision_id,
                o.attempt,
                o.cost,
                fleet.deadline(deadline),
            )
            .await;
        let repeat = match settled {
            Ok(repeat) => repeat,
            Err(e) => {
                // Not booked: a retry must not find the attempt taken here.
                if claimed_here {
                    self.tracker.unclaim(&o.decision_id, o.attempt);
                }
                return Err(e.into());
            }
        };
        Ok((!repeat).then_some((payer_tenant, payer_user)))
    }
}

/// Whether `decision_id` was minted during a Redis outage ([`Shared::mint_decision_id`]) within
/// the last `ttl_secs`.
fn minted_in_outage(decision_id: &str, ttl_secs: u64) -> bool {
    let Ok(id) = uuid::Uuid::try_parse(decision_id) else {
        return false;
    };
    let Some(ts) = id.get_timestamp() else {
        return false;
    };
    let (secs, _) = ts.to_unix();
    let now = Utc::now().timestamp().max(0) as u64;
    id.get_version_num() == 7 && id.as_bytes()[15] & 1 == 1 && now.saturating_sub(secs) <= ttl_secs
}

fn base_record(decision_id: &str, input: &RouteInput, policy: &Policy) -> DecisionRecord {
    DecisionRecord {
        schema: SCHEMA_VERSION,
        ts: timestamp(),
        decision_id: decision_id.to_string(),
        request_id: input.request_id.clone(),
        tenant_id: input.tenant_id.clone(),
        user_id: input.user_id.clone(),
        task: input.task_hint.map_or("", |t| t.as_str()).to_string(),
        category: input.category.clone(),
        task_source: if input.task_hint.is_some() {
            "hint"
        } else {
            ""
        }
        .to_string(),
        data_class: input.data_class.as_str().to_string(),
        mode: input.mode.as_str().to_string(),
        risk_tier: String::new(),
        prompt: None,
        prompt_chars: 0,
        prompt_tokens_est: 0,
        pii: Vec::new(),
        capabilities: input
            .capabilities
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        quality_preference: input.quality_preference,
        latency_budget_ms: input.latency_budget_ms,
        router: RouterKind::Rules.as_str().to_string(),
        primary: String::new(),
        fallbacks: Vec::new(),
        cascade: Vec::new(),
        shadow: None,
        predicted_quality: Vec::new(),
        quality_target: None,
        estimated_cost_usd: 0.0,
        policy_version: policy.version.clone(),
        model_version: String::new(),
        reasons: Vec::new(),
        denied: false,
    }
}

fn refusal_record(
    decision_id: &str,
    input: &RouteInput,
    policy: &Policy,
    error: &DecideError,
) -> DecisionRecord {
    let mut r = base_record(decision_id, input, policy);
    r.denied = true;
    r.reasons.push(match error {
        DecideError::BudgetDenied { policy_id, message } => Reason {
            policy_id: policy_id.clone(),
            message: message.clone(),
        },
        DecideError::NoEligibleModel(message) => Reason {
            policy_id: "no_eligible_model".into(),
            message: message.clone(),
        },
    });
    r
}

fn decision_record(
    decision_id: &str,
    input: &RouteInput,
    d: &Decision,
    policy: &Policy,
) -> DecisionRecord {
    let id = |m: usize| policy.model(m).id.clone();
    let mut r = base_record(decision_id, input, policy);
    r.task = d.task.as_str().to_string();
    r.task_source = match d.task_source {
        TaskSource::Hint => "hint",
        TaskSource::Detected => "detected",
    }
    .to_string();
    r.data_class = d.effective_data_class.as_str().to_string();
    r.risk_tier = d.risk_tier.as_str().to_string();
    r.prompt = d.loggable_prompt.clone();
    r.prompt_chars = d.prompt_chars;
    r.prompt_tokens_est = d.prompt_tokens;
    // Every kind the policy detects, in detector order, with its count (0: none found), so each
    // record has the same shape and a columnar reader (polars) infers the type from any line.
    r.pii = PiiKind::ALL
        .into_iter()
        .filter(|k| policy.pii_detectors.contains(k) || d.pii.iter().any(|(f, _)| f == k))
        .map(|kind| PiiCount {
            kind: kind.as_str().to_string(),
            count: d
                .pii
                .iter()
                .find(|(k, _)| *k == kind)
                .map_or(0, |&(_, n)| n),
        })
        .collect();
    r.router = d.router.as_str().to_string();
    r.primary = id(d.primary);
    r.fallbacks = d.fallbacks.iter().map(|&m| id(m)).collect();
    r.cascade = d.cascade.iter().map(|s| id(s.model)).collect();
    r.shadow = d.shadow.as_ref().map(|s| ShadowRecord {
        router: s.router.as_str().to_string(),
        primary: id(s.primary),
        agrees: s.primary == d.primary,
    });
    r.predicted_quality = d
        .predicted_quality
        .iter()
        .map(|(model, p)| ModelQuality {
            model: model.clone(),
            p: *p,
        })
        .collect();
    r.estimated_cost_usd = d.estimated_cost.usd();
    r.quality_target = d.quality_target;
    r.policy_version = d.policy_version.clone();
    r.model_version = d.model_version.clone();
    r.reasons = d.reasons.clone();
    r
}

#[cfg(test)]
mod tests {
    use super::minted_in_outage;

    #[test]
    fn outage_minted_ids_are_told_apart_by_their_last_bit_and_age() {
        let fresh = *uuid::Uuid::now_v7().as_bytes();
        let with_bit = |set: bool| {
            let mut b = fresh;
            if set {
                b[15] |= 1;
            } else {
                b[15] &= !1;
            }
            uuid::Uuid::from_bytes(b).to_string()
        };
        assert!(minted_in_outage(&with_bit(true), 3600));
        assert!(!minted_in_outage(&with_bit(false), 3600));
        // Older than the decision TTL: unknown, not pending.
        let old = uuid::Uuid::parse_str("01890000-0000-7000-8000-000000000001").unwrap();
        assert!(!minted_in_outage(&old.to_string(), 3600));
        assert!(!minted_in_outage("not-a-uuid", 3600));
        // A v4 id with the bit set is not ours.
        assert!(!minted_in_outage(
            "9a7f0c4e-1d2b-4c3a-8e5f-6a7b8c9d0e1f",
            u64::MAX
        ));
    }
}

//! The Prometheus metrics. Counters and histograms the request path updates live here (label
//! handles resolved once where the label set is fixed); what other parts of the service keep
//! already (budgets, breakers, the log, reloads, authentication, trace export) is read at each
//! scrape from a [`Snapshot`]. Rendered in the Prometheus text format by the `prometheus` crate.
//!
//! Label values are bounded: models, lanes, tasks, risk tiers, data classes and error kinds come
//! from the policy's catalog or fixed vocabularies; tenants not named in the policy are `other`;
//! user ids, decision ids and prompts are never labels.

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    CounterVec, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
    Registry, TextEncoder,
};

use super::phases::RoutePhases;

/// Latency buckets, in seconds: 5 µs to about 10 ms in steps of ×2, then a coarse tail to 1 s.
pub const LATENCY_BUCKETS: [f64; 15] = [
    5e-6, 1e-5, 2e-5, 4e-5, 8e-5, 1.6e-4, 3.2e-4, 6.4e-4, 1.28e-3, 2.56e-3, 5.12e-3, 1.024e-2,
    5e-2, 0.25, 1.0,
];

/// The `phase` label values of `signalbox_decision_phase_duration_seconds`.
pub const PHASES: [&str; 5] = ["inspect", "featurize", "inference", "policy", "log"];

/// Label used for a tenant the policy does not name.
pub const OTHER_TENANT: &str = "other";

/// A made decision, as labels.
#[derive(Debug, Clone, Copy)]
pub struct DecisionLabels<'a> {
    pub router: &'a str,
    pub model: &'a str,
    pub lane: &'a str,
    pub task: &'a str,
    pub risk_tier: &'a str,
    pub data_class: &'a str,
    /// The shadow router agreed (`None`: no shadow).
    pub shadow_agrees: Option<bool>,
    /// A budget cap was reached and the decision is a downgrade.
    pub downgraded: bool,
    /// Already mapped to [`OTHER_TENANT`] when not named in the policy.
    pub tenant: &'a str,
}

/// Why a Route got no decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BudgetDenied,
    NoEligibleModel,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::BudgetDenied => "budget_denied",
            Refusal::NoEligibleModel => "no_eligible_model",
        }
    }
}

/// A booked (non-duplicate) outcome, as labels and its cost.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeLabels<'a> {
    pub model: &'a str,
    pub success: bool,
    pub error: &'a str,
    pub cost_usd: f64,
}

/// Read at scrape time from the state that keeps it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub policy_version: String,
    /// The learned bundle serving (or shadowing), if any.
    pub model: Option<ModelInfo>,
    /// One row per tenant named in `[[budgets.tenants]]` and period with a cap.
    pub budgets: Vec<BudgetRow>,
    pub breakers: Vec<BreakerRow>,
    pub log: LogRow,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub tracked_decisions: u64,
    pub auth_failures: u64,
    pub auth_denied: u64,
    pub rate_limited: u64,
    /// `None` without `[telemetry] otlp_endpoint`.
    pub traces: Option<TraceCounts>,
    /// `None` with `[state] backend = "local"`.
    pub state: Option<crate::fleet::FleetGauges>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub bundle: String,
    pub version: String,
    pub backend: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRow {
    pub tenant: String,
    /// `day` or `month`.
    pub period: &'static str,
    pub spend_usd: f64,
    pub cap_usd: f64,
    /// Estimates of decisions awaiting their outcome (counted against the cap).
    pub in_flight_usd: f64,
}

/// One circuit breaker: a model's or a provider's.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerRow {
    /// `model` or `provider`.
    pub scope: &'static str,
    pub name: String,
    /// `closed`, `half_open` or `open`.
    pub state: &'static str,
    /// Transitions into closed, half_open, open, in that order.
    pub transitions: [u64; 3],
    /// Half-open probes granted.
    pub probes: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogRow {
    pub queue_depth: u64,
    pub queue_capacity: u64,
    pub bytes_written: u64,
    pub decisions_written: u64,
    pub outcomes_written: u64,
    pub write_errors: u64,
    pub writable: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TraceCounts {
    pub exported: u64,
    pub dropped: u64,
    pub failed: u64,
}

/// The circuit state as a number: 0 closed, 1 half-open, 2 open.
pub fn circuit_state_value(state: &str) -> f64 {
    match state {
        "half_open" => 1.0,
        "open" => 2.0,
        _ => 0.0,
    }
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    decisions: IntCounterVec,
    shadow_agree: IntCounter,
    shadow_disagree: IntCounter,
    refusals: IntCounterVec,
    denials: IntCounterVec,
    downgrades: IntCounterVec,
    decision_seconds: Histogram,
    phase_seconds: [Histogram; 5],
    outcomes: IntCounterVec,
    duplicates: IntCounter,
    booked_usd: CounterVec,
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let v = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(v.clone()))?;
    Ok(v)
}

impl Metrics {
    pub fn new() -> prometheus::Result<Metrics> {
        let r = Registry::new();
        let requests = counter_vec(
            &r,
            "signalbox_grpc_requests_total",
            "gRPC calls answered, by service, method and status code.",
            &["service", "method", "code"],
        )?;
        let decisions = counter_vec(
            &r,
            "signalbox_decisions_total",
            "Route decisions made, by the router that served, chosen model, its lane, task, risk tier and (effective) data class.",
            &["router", "model", "lane", "task", "risk_tier", "data_class"],
        )?;
        let shadow = counter_vec(
            &r,
            "signalbox_shadow_decisions_total",
            "Decisions with a shadow router, by whether it chose the same primary model.",
            &["result"],
        )?;
        let refusals = counter_vec(
            &r,
            "signalbox_route_refusals_total",
            "Route requests refused without a decision, by reason.",
            &["reason"],
        )?;
        let denials = counter_vec(
            &r,
            "signalbox_budget_denials_total",
            "Route requests denied by a budget cap, by tenant (other: not named in the policy).",
            &["tenant"],
        )?;
        let downgrades = counter_vec(
            &r,
            "signalbox_budget_downgrades_total",
            "Decisions made under a reached budget cap (downgraded to the cheapest eligible model), by tenant.",
            &["tenant"],
        )?;
        let decision_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "signalbox_decision_duration_seconds",
                "Server-side time of a Route that got a decision, from the handler's entry to the answer built.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        r.register(Box::new(decision_seconds.clone()))?;
        let phases = HistogramVec::new(
            HistogramOpts::new(
                "signalbox_decision_phase_duration_seconds",
                "Time per phase of a Route: inspect, featurize, inference, policy (the rest of the decision and the budget hold), log (appending the record).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["phase"],
        )?;
        r.register(Box::new(phases.clone()))?;
        let phase_seconds = [
            phases.get_metric_with_label_values(&[PHASES[0]])?,
            phases.get_metric_with_label_values(&[PHASES[1]])?,
            phases.get_metric_with_label_values(&[PHASES[2]])?,
            phases.get_metric_with_label_values(&[PHASES[3]])?,
            phases.get_metric_with_label_values(&[PHASES[4]])?,
        ];
        let outcomes = counter_vec(
            &r,
            "signalbox_outcomes_total",
            "Outcomes booked (duplicates not counted), by model, success and error kind.",
            &["model", "success", "error"],
        )?;
        let duplicates = IntCounter::new(
            "signalbox_outcome_duplicates_total",
            "Outcomes for an attempt already reported: acknowledged, nothing booked.",
        )?;
        r.register(Box::new(duplicates.clone()))?;
        let booked_usd = CounterVec::new(
            Opts::new(
                "signalbox_booked_cost_usd_total",
                "Cost booked by outcomes, in US dollars, by model.",
            ),
            &["model"],
        )?;
        r.register(Box::new(booked_usd.clone()))?;
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            requests,
            decisions,
            shadow_agree: shadow.get_metric_with_label_values(&["agree"])?,
            shadow_disagree: shadow.get_metric_with_label_values(&["disagree"])?,
            refusals,
            denials,
            downgrades,
            decision_seconds,
            phase_seconds,
            outcomes,
            duplicates,
            booked_usd,
            registry: r,
        })
    }

    /// A gRPC call answered with `code` (its canonical name, e.g. `OK`).
    pub fn call(&self, service: &str, method: &str, code: &str) {
        if let Ok(c) = self
            .requests
            .get_metric_with_label_values(&[service, method, code])
        {
            c.inc();
        }
    }

    /// A decision made; `total` is the server-side time of the Route.
    pub fn decided(&self, d: &DecisionLabels<'_>, phases: &RoutePhases, total: f64) {
        if let Ok(c) = self.decisions.get_metric_with_label_values(&[
            d.router,
            d.model,
            d.lane,
            d.task,
            d.risk_tier,
            d.data_class,
        ]) {
            c.inc();
        }
        match d.shadow_agrees {
            Some(true) => self.shadow_agree.inc(),
            Some(false) => self.shadow_disagree.inc(),
            None => {}
        }
        if d.downgraded
            && let Ok(c) = self.downgrades.get_metric_with_label_values(&[d.tenant])
        {
            c.inc();
        }
        self.decision_seconds.observe(total);
        self.observe_phases(phases);
    }

    /// A Route refused without a decision.
    pub fn refused(&self, why: Refusal, tenant: &str, phases: &RoutePhases) {
        if let Ok(c) = self.refusals.get_metric_with_label_values(&[why.as_str()]) {
            c.inc();
        }
        if why == Refusal::BudgetDenied
            && let Ok(c) = self.denials.get_metric_with_label_values(&[tenant])
        {
            c.inc();
        }
        self.observe_phases(phases);
    }

    fn observe_phases(&self, p: &RoutePhases) {
        let times = [
            p.inspect.map(|i| i.duration()),
            p.featurize.map(|i| i.duration()),
            p.inference.map(|i| i.duration()),
            p.policy_only(),
            p.log.map(|i| i.duration()),
        ];
        for (h, t) in self.phase_seconds.iter().zip(times) {
            if let Some(t) = t {
                h.observe(t.as_secs_f64());
            }
        }
    }

    /// An outcome booked.
    pub fn outcome(&self, o: &OutcomeLabels<'_>) {
        let success = if o.success { "true" } else { "false" };
        if let Ok(c) = self
            .outcomes
            .get_metric_with_label_values(&[o.model, success, o.error])
        {
            c.inc();
        }
        if o.cost_usd > 0.0
            && let Ok(c) = self.booked_usd.get_metric_with_label_values(&[o.model])
        {
            c.inc_by(o.cost_usd);
        }
    }

    /// An outcome for an attempt already reported.
    pub fn duplicate_outcome(&self) {
        self.duplicates.inc();
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    pub fn render(&self, snap: &Snapshot) -> prometheus::Result<String> {
        let mut families = self.registry.gather();
        families.extend(scraped(snap)?);
        // A labelled family with no series yet (no bundle, no budgets) is left out.
        families.retain(|f| !f.get_metric().is_empty());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = String::new();
        TextEncoder::new().encode_utf8(&families, &mut out)?;
        Ok(out)
    }
}

/// Append one gauge family with `rows` (label values, value).
fn gauge(
    out: &mut Vec<MetricFamily>,
    name: &str,
    help: &str,
    labels: &[&str],
    rows: &[(Vec<&str>, f64)],
) -> prometheus::Result<()> {
    let v = GaugeVec::new(Opts::new(name, help), labels)?;
    for (values, x) in rows {
        v.get_metric_with_label_values(values)?.set(*x);
    }
    out.extend(v.collect());
    Ok(())
}

/// Append one counter family with `rows` (label values, total).
fn counter(
    out: &mut Vec<MetricFamily>,
    name: &str,
    help: &str,
    labels: &[&str],
    rows: &[(Vec<&str>, f64)],
) -> prometheus::Result<()> {
    let v = CounterVec::new(Opts::new(name, help), labels)?;
    for (values, x) in rows {
        v.get_metric_with_label_values(values)?.inc_by(*x);
    }
    out.extend(v.collect());
    Ok(())
}

/// Gauges (and counters kept elsewhere) built fresh from a snapshot.
fn scraped(s: &Snapshot) -> prometheus::Result<Vec<MetricFamily>> {
    let mut out = Vec::new();
    gauge(
        &mut out,
        "signalbox_policy_info",
        "The policy serving: 1, labelled with its version.",
        &["version"],
        &[(vec![s.policy_version.as_str()], 1.0)],
    )?;
    let model_rows: Vec<(Vec<&str>, f64)> = s
        .model
        .iter()
        .map(|m| {
            (
                vec![m.bundle.as_str(), m.version.as_str(), m.backend.as_str()],
                1.0,
            )
        })
        .collect();
    gauge(
        &mut out,
        "signalbox_model_info",
        "The learned bundle loaded: 1, labelled with its name, version and inference backend (absent without one).",
        &["bundle", "version", "backend"],
        &model_rows,
    )?;
    let spend: Vec<(Vec<&str>, f64)> = s
        .budgets
        .iter()
        .map(|b| (vec![b.tenant.as_str(), b.period], b.spend_usd))
        .collect();
    gauge(
        &mut out,
        "signalbox_budget_spend_usd",
        "Spend booked in the current period (day or month, UTC), in US dollars, per tenant with a cap of its own.",
        &["tenant", "period"],
        &spend,
    )?;
    let caps: Vec<(Vec<&str>, f64)> = s
        .budgets
        .iter()
        .map(|b| (vec![b.tenant.as_str(), b.period], b.cap_usd))
        .collect();
    gauge(
        &mut out,
        "signalbox_budget_cap_usd",
        "The cap of the period, in US dollars, per tenant with a cap of its own.",
        &["tenant", "period"],
        &caps,
    )?;
    let held: Vec<(Vec<&str>, f64)> = s
        .budgets
        .iter()
        .filter(|b| b.period == "day")
        .map(|b| (vec![b.tenant.as_str()], b.in_flight_usd))
        .collect();
    gauge(
        &mut out,
        "signalbox_budget_in_flight_usd",
        "Estimated cost held for decisions awaiting their outcome, in US dollars, per tenant with a cap of its own.",
        &["tenant"],
        &held,
    )?;
    let states: Vec<(Vec<&str>, f64)> = s
        .breakers
        .iter()
        .map(|b| (vec![b.scope, b.name.as_str()], circuit_state_value(b.state)))
        .collect();
    gauge(
        &mut out,
        "signalbox_circuit_state",
        "Circuit breaker state per model and provider: 0 closed, 1 half-open, 2 open.",
        &["scope", "name"],
        &states,
    )?;
    let log = &s.log;
    gauge(
        &mut out,
        "signalbox_log_queue_depth",
        "Records queued for the decision log writer.",
        &[],
        &[(vec![], log.queue_depth as f64)],
    )?;
    gauge(
        &mut out,
        "signalbox_log_queue_capacity",
        "The decision log queue's capacity (log.buffer_records).",
        &[],
        &[(vec![], log.queue_capacity as f64)],
    )?;
    gauge(
        &mut out,
        "signalbox_log_writable",
        "1 while the decision log writes; 0 while it retries a failed write (the service refuses requests and reports NOT_SERVING).",
        &[],
        &[(vec![], if log.writable { 1.0 } else { 0.0 })],
    )?;
    gauge(
        &mut out,
        "signalbox_tracked_decisions",
        "Decisions held in memory awaiting their outcome.",
        &[],
        &[(vec![], s.tracked_decisions as f64)],
    )?;

    let mut transitions = Vec::new();
    let mut probes = Vec::new();
    for b in &s.breakers {
        for (to, n) in ["closed", "half_open", "open"]
            .into_iter()
            .zip(b.transitions)
        {
            transitions.push((vec![b.scope, b.name.as_str(), to], n as f64));
        }
        probes.push((vec![b.scope, b.name.as_str()], b.probes as f64));
    }
    counter(
        &mut out,
        "signalbox_circuit_transitions_total",
        "Circuit breaker state changes, by breaker and the state entered.",
        &["scope", "name", "to"],
        &transitions,
    )?;
    counter(
        &mut out,
        "signalbox_circuit_probes_total",
        "Half-open probes granted (requests routed to a half-open breaker's model).",
        &["scope", "name"],
        &probes,
    )?;
    counter(
        &mut out,
        "signalbox_log_written_bytes_total",
        "Bytes appended to the decision log's segments.",
        &[],
        &[(vec![], log.bytes_written as f64)],
    )?;
    counter(
        &mut out,
        "signalbox_log_records_total",
        "Records written to the decision log, by kind.",
        &["kind"],
        &[
            (vec!["decision"], log.decisions_written as f64),
            (vec!["outcome"], log.outcomes_written as f64),
        ],
    )?;
    counter(
        &mut out,
        "signalbox_log_write_errors_total",
        "Failed decision log writes, flushes or fsyncs (each is retried).",
        &[],
        &[(vec![], log.write_errors as f64)],
    )?;
    counter(
        &mut out,
        "signalbox_reloads_total",
        "Policy and bundle reloads, by result.",
        &["result"],
        &[
            (vec!["ok"], s.reloads_ok as f64),
            (vec!["error"], s.reloads_failed as f64),
        ],
    )?;
    counter(
        &mut out,
        "signalbox_auth_rejections_total",
        "Calls refused by authentication or authorization, and calls over a rate limit.",
        &["reason"],
        &[
            (vec!["unauthenticated"], s.auth_failures as f64),
            (vec!["permission_denied"], s.auth_denied as f64),
            (vec!["rate_limited"], s.rate_limited as f64),
        ],
    )?;
    if let Some(t) = s.traces {
        counter(
            &mut out,
            "signalbox_trace_spans_total",
            "Trace spans by fate: exported to the OTLP collector, dropped (export queue full), failed (export error or timeout).",
            &["result"],
            &[
                (vec!["exported"], t.exported as f64),
                (vec!["dropped"], t.dropped as f64),
                (vec!["failed"], t.failed as f64),
            ],
        )?;
    }
    if let Some(st) = &s.state {
        let commands: Vec<(Vec<&str>, f64)> = st
            .commands
            .iter()
            .map(|(op, n)| (vec![*op], *n as f64))
            .collect();
        counter(
            &mut out,
            "signalbox_state_redis_commands_total",
            "Calls to the shared state in Redis (one round trip each), by operation.",
            &["op"],
            &commands,
        )?;
        counter(
            &mut out,
            "signalbox_state_redis_errors_total",
            "Redis calls that failed (connection, timeout, or an unexpected answer).",
            &[],
            &[(vec![], st.errors as f64)],
        )?;
        counter(
            &mut out,
            "signalbox_state_redis_outages_total",
            "Times Redis became unreachable.",
            &[],
            &[(vec![], st.outages as f64)],
        )?;
        gauge(
            &mut out,
            "signalbox_state_redis_up",
            "1 while Redis answers; 0 during an outage (then on_unavailable applies).",
            &["on_unavailable"],
            &[(vec![st.on_unavailable], if st.up { 1.0 } else { 0.0 })],
        )?;
        gauge(
            &mut out,
            "signalbox_state_pending_reconcile_usd",
            "Spend booked locally while Redis was unreachable, not yet added to it.",
            &[],
            &[(vec![], st.pending_usd)],
        )?;
    }
    Ok(out)
}

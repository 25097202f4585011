//! What a running service holds: the live state (policy and compiled engine, swapped whole on
//! reload), and what outlives reloads: budgets, circuit breakers, the decisions awaiting
//! outcomes, the decision log and the counters. At start it is rebuilt from the log
//! ([`restore`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::budget::BudgetLedger;
use crate::circuit::CircuitBreakers;
use crate::config::Policy;
use crate::decision_log::{DecisionLog, LogError};
use crate::domain::RouterKind;
use crate::engine::{Decision, DecisionEngine, EngineError};
use crate::fleet::{Fleet, StatePolicy};
use crate::telemetry::Telemetry;
use crate::telemetry::metrics::{BreakerRow, BudgetRow, LogRow, ModelInfo, Snapshot};
use crate::tracking::DecisionTracker;

mod restore;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Log(#[from] LogError),
    /// The log directory cannot be created or written (found before binding).
    #[error("log.dir: {0}")]
    LogDir(LogError),
    #[error("telemetry: {0}")]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    #[error("state: {0}")]
    Fleet(#[from] crate::fleet::FleetError),
}

/// Everything a request reads that can be replaced on reload, swapped as one unit.
pub struct LiveState {
    pub engine: DecisionEngine,
}

/// Decisions by router and model, and how often the shadow router agreed.
#[derive(Debug, Default)]
pub struct RouteStats {
    pub by_router_model: parking_lot::Mutex<BTreeMap<(RouterKind, String), u64>>,
    pub with_shadow: AtomicU64,
    pub shadow_agreements: AtomicU64,
    pub reloads: AtomicU64,
    pub failed_reloads: AtomicU64,
}

impl RouteStats {
    pub(crate) fn record(&self, d: &Decision, policy: &Policy) {
        *self
            .by_router_model
            .lock()
            .entry((d.router, policy.model(d.primary).id.clone()))
            .or_default() += 1;
        if let Some(s) = &d.shadow {
            self.with_shadow.fetch_add(1, Ordering::Relaxed);
            if s.primary == d.primary {
                self.shadow_agreements.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Service state shared by all requests.
pub struct Shared {
    pub live: ArcSwap<LiveState>,
    /// The policy file, for reloads (`None` when started from an in-memory policy).
    pub config_path: Option<std::path::PathBuf>,
    pub reload_lock: tokio::sync::Mutex<()>,
    pub stats: RouteStats,
    pub budgets: BudgetLedger,
    pub circuits: CircuitBreakers,
    pub tracker: DecisionTracker,
    pub log: DecisionLog,
    /// `[server.tls]`: the certificate new handshakes get (`None`: plaintext).
    pub tls: Option<Arc<crate::tls::TlsState>>,
    /// Authentication counters and rate-limit buckets (`crate::auth`).
    pub auth: crate::auth::AuthState,
    /// Metrics and traces, as `[telemetry]` asked at start.
    pub telemetry: Telemetry,
    /// The fleet's shared state, when `[state] backend = "redis"` (read at start). Then
    /// `budgets` and `tracker` are unused while Redis is up, and `circuits` mirrors the
    /// fleet's breakers.
    pub fleet: Option<Arc<Fleet>>,
}

/// What `serve` needs of the machine before it binds, beyond a valid policy: the log directory
/// can be created and written. `check-config` runs the same checks.
pub fn preflight(policy: &Policy) -> Result<(), StateError> {
    DecisionLog::check_writable(&policy.log.dir).map_err(StateError::LogDir)
}

/// Build the service state for `policy`: with the local backend, restoring budgets and recent
/// decisions from its log; with Redis, connecting to it (a Redis down at start is an outage,
/// handled as `on_unavailable` says).
pub async fn build_shared(
    policy: Policy,
    config_path: Option<std::path::PathBuf>,
) -> Result<Arc<Shared>, StateError> {
    let log = DecisionLog::open(&policy.log)?;
    let budgets = BudgetLedger::new();
    let tracker = DecisionTracker::new(
        Duration::from_secs(policy.server.decision_ttl_secs),
        policy.server.max_tracked_decisions,
    );
    let fleet = match &policy.state {
        StatePolicy::Local => {
            restore::restore(&policy, &budgets, &tracker)?;
            None
        }
        StatePolicy::Redis(r) => Some(Fleet::connect(r).await?),
    };
    let tls = policy
        .server
        .tls
        .as_ref()
        .map(|t| Arc::new(crate::tls::TlsState::new(t)));
    let telemetry = Telemetry::start(&policy.telemetry)?;
    let engine = DecisionEngine::new(policy)?;
    Ok(Arc::new(Shared {
        live: ArcSwap::from_pointee(LiveState { engine }),
        config_path,
        reload_lock: tokio::sync::Mutex::new(()),
        stats: RouteStats::default(),
        budgets,
        circuits: CircuitBreakers::new(),
        tracker,
        log,
        tls,
        auth: crate::auth::AuthState::default(),
        telemetry,
        fleet,
    }))
}

impl Shared {
    /// What the metrics read at a scrape, from where it is kept.
    pub fn metrics_snapshot(&self) -> Snapshot {
        let live = self.live.load();
        let policy = live.engine.policy();
        let now = chrono::Utc::now();
        let mut budgets = Vec::new();
        let mut tenants: Vec<(&String, &crate::config::BudgetCaps)> =
            policy.budgets.tenants.iter().collect();
        tenants.sort_by(|a, b| a.0.cmp(b.0));
        for (tenant, caps) in tenants {
            // With Redis: the fleet's figures as last read (every `circuit_refresh_ms`).
            let (day, month, held) = match &self.fleet {
                Some(f) => {
                    let fig = f.mirror.figures(tenant, "", now, None).unwrap_or_default();
                    (fig.day, fig.month, fig.in_flight.usd())
                }
                None => {
                    let (day, month) = self.budgets.spent(tenant, "", now);
                    (day, month, self.budgets.in_flight(tenant, "").usd())
                }
            };
            for (period, spend, cap) in [("day", day, caps.daily), ("month", month, caps.monthly)] {
                if let Some(cap) = cap {
                    budgets.push(BudgetRow {
                        tenant: tenant.clone(),
                        period,
                        spend_usd: spend.usd(),
                        cap_usd: cap.usd(),
                        in_flight_usd: held,
                    });
                }
            }
        }
        let breakers = self
            .circuits
            .snapshot(&policy.circuit, std::time::Instant::now())
            .into_iter()
            .map(|b| BreakerRow {
                scope: b.scope,
                name: b.name,
                state: b.state,
                transitions: b.transitions,
                probes: b.probes,
            })
            .collect();
        let log = self.log.gauges();
        Snapshot {
            policy_version: policy.version.clone(),
            model: live.engine.learned().map(|l| ModelInfo {
                bundle: l.bundle_name().to_string(),
                version: l.version().to_string(),
                backend: crate::inference::current_backend()
                    .map_or("none", |b| b.name())
                    .to_string(),
            }),
            budgets,
            breakers,
            log: LogRow {
                queue_depth: log.queue_depth,
                queue_capacity: log.queue_capacity,
                bytes_written: log.bytes,
                decisions_written: log.decisions,
                outcomes_written: log.outcomes,
                write_errors: log.write_errors,
                writable: log.writable,
            },
            reloads_ok: self.stats.reloads.load(Ordering::Relaxed),
            reloads_failed: self.stats.failed_reloads.load(Ordering::Relaxed),
            tracked_decisions: self.tracker.len() as u64,
            auth_failures: self.auth.failures.load(Ordering::Relaxed),
            auth_denied: self.auth.denied.load(Ordering::Relaxed),
            rate_limited: self.auth.rate_limited.load(Ordering::Relaxed),
            traces: self.telemetry.tracer.as_ref().map(|t| t.counts()),
            state: self.fleet.as_ref().map(|f| f.gauges()),
        }
    }
}

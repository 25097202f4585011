//! Start-up and shutdown: build the live state from a validated policy, restore spend and recent
//! decisions from the log, bind, serve gRPC (Router, health, reflection), and on shutdown stop
//! accepting, finish in-flight requests, then drain and sync the log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use chrono::{DateTime, Datelike, Utc};
use signalbox_features::log_schema::{DecisionSummary, OutcomeSummary};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use crate::api::{AdminService, LiveState, RouterService, Shared};
use crate::budget::BudgetLedger;
use crate::circuit::CircuitBreakers;
use crate::config::Policy;
use crate::decision_log::{self, DecisionLog, LogError, LogStats};
use crate::engine::{DecisionEngine, EngineError};
use crate::money::Micros;
use crate::proto;
use crate::tracking::{DecisionTracker, MAX_ATTEMPT, TrackedDecision};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("server task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A server running in this process.
pub struct RunningServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<LogStats, ServerError>>,
    watcher: Option<JoinHandle<()>>,
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Graceful shutdown: stop accepting, finish in-flight requests, drain and sync the log.
    pub async fn shutdown(mut self) -> Result<LogStats, ServerError> {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await?
    }
}

/// The Router's health status, and the server's overall one (service name ""), which most
/// probes ask for.
async fn set_health(health: &tonic_health::server::HealthReporter, serving: bool) {
    use tonic_health::ServingStatus;
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    health
        .set_service_status(
            <proto::router_server::RouterServer<RouterService> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
    health.set_service_status("", status).await;
}

/// How often the health status follows the decision log, and how often expired holds and
/// decisions are swept.
const HEALTH_AND_SWEEP_EVERY: Duration = Duration::from_millis(100);
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Build the service state for `policy`, restoring budgets and recent decisions from its log.
pub fn build_shared(
    policy: Policy,
    config_path: Option<std::path::PathBuf>,
) -> Result<Arc<Shared>, ServerError> {
    let log = DecisionLog::open(&policy.log)?;
    let budgets = BudgetLedger::new();
    let tracker = DecisionTracker::new(
        Duration::from_secs(policy.server.decision_ttl_secs),
        policy.server.max_tracked_decisions,
    );
    restore(&policy, &budgets, &tracker)?;
    let engine = DecisionEngine::new(policy)?;
    Ok(Arc::new(Shared {
        live: ArcSwap::from_pointee(LiveState { engine }),
        config_path,
        reload_lock: tokio::sync::Mutex::new(()),
        stats: crate::api::RouteStats::default(),
        budgets,
        circuits: CircuitBreakers::new(),
        tracker,
        log,
    }))
}

/// How much earlier than its oldest restored decision a restart starts reading outcome
/// segments (by their modification time), for wall-clock steps between the two writes.
const RESTORE_CLOCK_SLACK: Duration = Duration::from_secs(60);

/// What the logged outcomes say about one restored decision.
#[derive(Default)]
struct Settled {
    any_outcome: bool,
    /// Attempts reported, as `TrackedDecision::reported`.
    reported: u64,
}

/// Replay this month's spend into the budgets, recent decisions into the tracker, and the
/// estimates of decisions still in flight (no outcome yet) into budget holds, so spend, outcome
/// matching and in-flight caps survive a restart.
fn restore(
    policy: &Policy,
    budgets: &BudgetLedger,
    tracker: &DecisionTracker,
) -> Result<(), LogError> {
    let now = Utc::now();
    let dir = &policy.log.dir;
    let mut bad = 0usize;
    // Segments last written before this month cannot hold this month's spend.
    let month_start = now
        .date_naive()
        .with_day(1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| std::time::SystemTime::from(d.and_utc()));
    let this_month = (now.year(), now.month());
    let spend = decision_log::replay_spend(
        dir,
        month_start,
        |tenant, user, day, cost, _| {
            if (day.year(), day.month()) == this_month
                && let Some(at) = day.and_hms_opt(0, 0, 0)
            {
                budgets.settle(&budgets.payer(tenant, user), None, cost, at.and_utc());
            }
        },
        |path, line, err| {
            bad += 1;
            tracing::warn!(path = %path.display(), line, %err, "skipping unreadable outcome record");
        },
    )?;
    let ttl = Duration::from_secs(policy.server.decision_ttl_secs);
    // Both clocks read together, after the spend replay (which can take a while).
    let now = Utc::now();
    let mono_now = Instant::now();
    let sys_now = std::time::SystemTime::from(now);
    let ttl_ago = sys_now.checked_sub(ttl);
    // The tracker keeps at most `max_tracked_decisions`: read back only as far as that. Each
    // decision's age is computed once, here.
    let recent = decision_log::read_newest(
        dir,
        "decisions",
        ttl_ago,
        policy.server.max_tracked_decisions,
        |d: DecisionSummary| {
            let ts = DateTime::parse_from_rfc3339(&d.ts).ok()?;
            let age = now - ts.with_timezone(&Utc);
            // `None`: stamped in the future (clock skew), tracked as made now, never held.
            let age_std = age.to_std().ok();
            (!d.denied && age_std.is_none_or(|a| a <= ttl)).then_some((d, age_std))
        },
        |path, line, err| {
            bad += 1;
            tracing::warn!(path = %path.display(), line, %err, "skipping unreadable decision record");
        },
    )?;
    // What the outcomes since the oldest restored decision say about each one: attempts already
    // reported (so a repeated report is not booked twice, for as long as the decision accepts
    // outcomes) and whether any outcome came (a decision young enough to still hold its
    // estimate holds it again for the rest of its `in_flight_ttl_secs`, unless one did, so a
    // restart does not free budget).
    let in_flight_ttl = Duration::from_secs(policy.budgets.in_flight_ttl_secs);
    let mut settled: HashMap<&str, Settled> = recent
        .iter()
        .map(|(d, _)| (d.decision_id.as_str(), Settled::default()))
        .collect();
    if !settled.is_empty() {
        // An outcome is logged after its decision: segments last written before the oldest
        // restored decision (at most the TTL ago; newer when the tracker's capacity cut the
        // read short) hold none of theirs. Ages and this cut-off are taken from the same `now`
        // (the reads in between do not move it), with a minute of slack for clock steps.
        let since = recent
            .iter()
            .filter_map(|(_, age)| *age)
            .max()
            .map_or(ttl_ago, |oldest| {
                sys_now.checked_sub(oldest + RESTORE_CLOCK_SLACK)
            });
        decision_log::read_records::<OutcomeSummary>(
            dir,
            "outcomes",
            since,
            |o| {
                if let Some(s) = settled.get_mut(o.decision_id.as_str()) {
                    s.any_outcome = true;
                    if (1..=MAX_ATTEMPT).contains(&o.attempt) {
                        s.reported |= 1 << (o.attempt - 1);
                    }
                }
            },
            |path, line, err| {
                bad += 1;
                tracing::warn!(path = %path.display(), line, %err, "skipping unreadable outcome record");
            },
        )?;
    }
    let decisions = recent.len();
    let mut held = 0usize;
    for (d, age) in &recent {
        let created = age
            .and_then(|a| mono_now.checked_sub(a))
            .unwrap_or(mono_now);
        let payer = budgets.payer(&d.tenant_id, &d.user_id);
        let settled = settled.get(d.decision_id.as_str());
        let reservation = match (settled, age) {
            (Some(s), Some(age)) if !s.any_outcome && *age < in_flight_ttl => {
                Micros::from_usd(d.estimated_cost_usd).and_then(|amount| {
                    budgets.reserve(&payer, amount, in_flight_ttl - *age, mono_now)
                })
            }
            _ => None,
        };
        held += usize::from(reservation.is_some());
        tracker.insert(
            &d.decision_id,
            TrackedDecision {
                payer,
                created,
                reservation,
                reported: settled.map_or(0, |s| s.reported),
            },
        );
    }
    tracing::info!(
        outcomes = spend.outcomes,
        summarised_segments = spend.summarised,
        read_segments = spend.read,
        decisions,
        in_flight = held,
        skipped = bad,
        dir = %dir.display(),
        "restored spend and recent decisions from the log"
    );
    Ok(())
}

/// Serve an in-memory policy (no reloads): bind `listen` (port 0 allowed) and serve until
/// [`RunningServer::shutdown`].
pub async fn start(policy: Policy, listen: SocketAddr) -> Result<RunningServer, ServerError> {
    serve(build_shared(policy, None)?, listen).await
}

/// Serve the policy file at `config` (already validated into `policy`), reloading it and its
/// bundle on Admin/Reload, SIGHUP (see `main.rs`) and changes on disk.
pub async fn start_from_file(
    policy: Policy,
    config: std::path::PathBuf,
    listen: SocketAddr,
) -> Result<RunningServer, ServerError> {
    let shared = build_shared(policy, Some(config))?;
    let server = serve(shared.clone(), listen).await?;
    let watcher = tokio::spawn(crate::reload::watch(shared));
    Ok(RunningServer {
        watcher: Some(watcher),
        ..server
    })
}

async fn serve(shared: Arc<Shared>, listen: SocketAddr) -> Result<RunningServer, ServerError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: listen,
        source,
    })?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    set_health(&health_reporter, true).await;
    // Set once shutdown begins: health stays NOT_SERVING from then on.
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let router = proto::router_server::RouterServer::new(RouterService::new(shared.clone()));
    let admin = proto::admin_server::AdminServer::new(AdminService::new(shared.clone()));

    // Release budget reservations whose outcome never came, forget expired decisions, and
    // report NOT_SERVING while the decision log cannot write.
    let sweeper = {
        let shared = shared.clone();
        let health = health_reporter.clone();
        let draining = draining.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEALTH_AND_SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut serving = true;
            let mut last_sweep = Instant::now();
            loop {
                tick.tick().await;
                let now = Instant::now();
                if now.duration_since(last_sweep) >= SWEEP_EVERY {
                    shared.budgets.sweep(now);
                    shared.tracker.sweep(now);
                    last_sweep = now;
                }
                let writable = shared.log.writable();
                if writable != serving && !draining.load(std::sync::atomic::Ordering::Relaxed) {
                    serving = writable;
                    set_health(&health, serving).await;
                }
            }
        })
    };

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task_shared = shared.clone();
    let task = tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(router)
            .add_service(admin)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop_rx.await;
                draining.store(true, std::sync::atomic::Ordering::Relaxed);
                set_health(&health_reporter, false).await;
            })
            .await;
        sweeper.abort();
        // Whatever happened to the transport, every acknowledged record is written.
        let stats = task_shared.log.close().await;
        served?;
        let stats = stats?;
        tracing::info!(
            decisions = stats.decisions,
            outcomes = stats.outcomes,
            "decision log flushed and synced"
        );
        Ok(stats)
    });
    Ok(RunningServer {
        addr,
        shared,
        stop: Some(stop_tx),
        task,
        watcher: None,
    })
}

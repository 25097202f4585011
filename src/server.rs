//! Wiring: build the service state (restored from the log, [`crate::state`]), bind, serve gRPC
//! (Router, Admin, health, reflection) with a sweeper for expired holds and the log's health,
//! and on shutdown stop accepting, finish in-flight requests, then drain and sync the log.
//! Connections come through [`crate::listener::Incoming`] (TLS-handshaken with `[server.tls]`),
//! with the per-connection limits of `[server]`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;

use crate::api::authn::{Authenticate, Target};
use crate::api::limits::CallLimits;
use crate::api::observe::CountCalls;
use crate::api::{AdminService, RouterService};
use crate::config::Policy;
use crate::connection::Timeouts;
use crate::decision_log::{LogError, LogStats};
use crate::engine::EngineError;
use crate::listener::{self, ConnectionLimits, Plain};
use crate::proto;
use crate::state::{Shared, StateError, build_shared};
use crate::telemetry::endpoint::{MetricsEndpoint, Render};

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
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    #[error("state: {0}")]
    State(crate::fleet::FleetError),
}

impl From<StateError> for ServerError {
    fn from(e: StateError) -> ServerError {
        match e {
            StateError::Engine(e) => ServerError::Engine(e),
            StateError::Log(e) | StateError::LogDir(e) => ServerError::Log(e),
            StateError::Telemetry(e) => ServerError::Telemetry(e),
            StateError::Fleet(e) => ServerError::State(e),
        }
    }
}

/// A server running in this process.
pub struct RunningServer {
    addr: SocketAddr,
    /// `/metrics`, with `[telemetry] metrics_listen`.
    metrics: Option<MetricsEndpoint>,
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

    /// Where `/metrics` is served, with `[telemetry] metrics_listen`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsEndpoint::local_addr)
    }

    /// Graceful shutdown: stop accepting, finish in-flight requests, drain and sync the log.
    pub async fn shutdown(mut self) -> Result<LogStats, ServerError> {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let stats = self.task.await?;
        if let Some(m) = self.metrics.take() {
            m.stop();
        }
        stats
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

/// The HTTP/2 header list limit advertised to clients: well above what a call may carry (four
/// times, and at least 1 MiB), so h2 itself never has to refuse or tear down a connection.
fn header_list_limit(max_metadata_bytes: usize) -> u32 {
    u32::try_from(max_metadata_bytes.saturating_mul(4).max(1 << 20)).unwrap_or(u32::MAX)
}

/// The connections tonic serves: plaintext TCP, or TLS handshaken by our own acceptor
/// ([`crate::tls::TlsHandshake`]), which picks up rotated certificates.
enum Incoming {
    Plain(listener::Incoming<TcpStream>),
    Tls(listener::Incoming<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// How long a connection past its maximum age may take to finish its calls after the GOAWAY.
const CONNECTION_AGE_GRACE: Duration = Duration::from_secs(30);

/// How often the health status follows the decision log, and how often expired holds and
/// decisions are swept.
const HEALTH_AND_SWEEP_EVERY: Duration = Duration::from_millis(100);
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How often the named tenants' spend is read back from Redis (for the metrics).
const BUDGET_REFRESH_EVERY: Duration = Duration::from_secs(5);
/// How often free heap memory is handed back to the OS ([`release_free_memory`]).
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Hand free pages of the malloc heaps back to the OS (glibc: `malloc_trim`), so RSS follows
/// what is in use instead of the high-water mark of each arena's fragmented heap.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the arenas' locks itself; no pointers are passed.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The `/metrics` exposition, read from the state at each scrape.
fn render_metrics(shared: &Arc<Shared>) -> Render {
    let shared = Arc::downgrade(shared);
    Arc::new(move || {
        let shared = shared.upgrade().ok_or("the server has stopped")?;
        let metrics = shared.telemetry.metrics.as_ref().ok_or("metrics are off")?;
        metrics
            .render(&shared.metrics_snapshot())
            .map_err(|e| e.to_string())
    })
}

/// Serve an in-memory policy (no reloads): bind `listen` (port 0 allowed) and serve until
/// [`RunningServer::shutdown`]. The log's segments carry `policy.log.replica_id`, or
/// `<host name>-<bound port>` when it is `None` (as in `signalbox serve` without
/// `--replica-id`).
pub async fn start(policy: Policy, listen: SocketAddr) -> Result<RunningServer, ServerError> {
    serve(build_shared(policy, None).await?, listen).await
}

/// Serve the policy file at `config` (already validated into `policy`), reloading it and its
/// bundle on Admin/Reload, SIGHUP (see `main.rs`) and changes on disk.
pub async fn start_from_file(
    policy: Policy,
    config: std::path::PathBuf,
    listen: SocketAddr,
) -> Result<RunningServer, ServerError> {
    let shared = build_shared(policy, Some(config)).await?;
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
    // Without `--replica-id`, the segments are named after this host and the port just bound
    // (the real one for port 0). No record can come before this: nothing is served yet.
    let named = shared.live.load().engine.policy().log.replica_id.is_some();
    if !named {
        shared
            .log
            .set_replica_id(crate::decision_log::ReplicaId::for_host_and_port(
                addr.port(),
            ));
    }
    tracing::info!(
        replica_id = %shared.log.replica_id(),
        log_dir = %shared.log.dir().display(),
        "decision log segments carry this replica id"
    );
    let metrics = match (
        shared.telemetry.policy.metrics_listen,
        &shared.telemetry.metrics,
    ) {
        (Some(at), Some(_)) => Some(
            MetricsEndpoint::bind(at, render_metrics(&shared))
                .await
                .map_err(|source| ServerError::Bind { addr: at, source })?,
        ),
        _ => None,
    };
    let connections = {
        let live = shared.live.load();
        let server = &live.engine.policy().server;
        ConnectionLimits {
            timeouts: Timeouts {
                handshake: Duration::from_secs(server.preface_timeout_secs),
                idle: Duration::from_secs(server.idle_timeout_secs),
            },
            max_connections: server.max_connections,
        }
    };
    let (incoming, tls_watcher) = match &shared.tls {
        None => (
            Incoming::Plain(listener::Incoming::new(listener, Plain, connections)),
            None,
        ),
        Some(tls) => (
            Incoming::Tls(listener::Incoming::new(
                listener,
                crate::tls::TlsHandshake::new(tls.clone()),
                connections,
            )),
            Some(tokio::spawn(crate::tls::watch(tls.clone()))),
        ),
    };

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
    // Transport limits are read once: a reload does not change them.
    let (limits, keepalive, max_age) = {
        let live = shared.live.load();
        let server = &live.engine.policy().server;
        (
            CallLimits {
                max_metadata_bytes: server.max_metadata_bytes,
                max_message_bytes: server.max_message_bytes,
            },
            (server.keepalive_interval_secs > 0).then(|| {
                (
                    Duration::from_secs(server.keepalive_interval_secs),
                    Duration::from_secs(server.keepalive_timeout_secs),
                )
            }),
            (server.max_connection_age_secs > 0)
                .then(|| Duration::from_secs(server.max_connection_age_secs)),
        )
    };
    // Router, Admin and (per `[auth] reflection`) reflection authenticate every call; health
    // stays open.
    let authenticate = |target| Authenticate::new(shared.clone(), target);
    let reflection_v1 = InterceptedService::new(reflection_v1, authenticate(Target::Reflection));
    let reflection_v1alpha =
        InterceptedService::new(reflection_v1alpha, authenticate(Target::Reflection));
    let router = InterceptedService::new(
        proto::router_server::RouterServer::new(RouterService::new(shared.clone()))
            .max_decoding_message_size(limits.max_message_bytes),
        authenticate(Target::Api),
    );
    let admin = InterceptedService::new(
        proto::admin_server::AdminServer::new(AdminService::new(shared.clone()))
            .max_decoding_message_size(limits.max_message_bytes),
        authenticate(Target::Api),
    );
    // Mode `none` may be reloaded in only where it was allowed at start (see main.rs).
    shared.auth.allow_no_auth(addr.ip().is_loopback());

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
            let mut last_trim = Instant::now();
            loop {
                tick.tick().await;
                let now = Instant::now();
                if now.duration_since(last_sweep) >= SWEEP_EVERY {
                    shared.budgets.sweep(now);
                    shared.tracker.sweep(now);
                    shared.auth.limiter.sweep(now);
                    last_sweep = now;
                }
                if now.duration_since(last_trim) >= TRIM_EVERY {
                    release_free_memory();
                    last_trim = now;
                }
                // The log can write, and the shared state (if any) is reachable or not needed.
                let ready =
                    shared.log.writable() && shared.fleet.as_ref().is_none_or(|f| f.serving());
                if ready != serving && !draining.load(std::sync::atomic::Ordering::Relaxed) {
                    serving = ready;
                    set_health(&health, serving).await;
                }
            }
        })
    };

    // With Redis: read the fleet's circuit breakers and the named tenants' spend back every
    // `circuit_refresh_ms`, and probe Redis while it is down.
    let refresher = shared.fleet.clone().map(|fleet| {
        let shared = Arc::downgrade(&shared);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(fleet.policy.circuit_refresh);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut budgets_read: Option<Instant> = None;
            loop {
                tick.tick().await;
                let Some(shared) = shared.upgrade() else {
                    break;
                };
                let ttl = shared.live.load().engine.policy().server.decision_ttl_secs;
                let tracked = Arc::downgrade(&shared);
                fleet.probe_if_down(ttl, move |id| tracked.upgrade()?.tracker.reported(id));
                if !fleet.is_up() {
                    continue;
                }
                let live = shared.live.load_full();
                let policy = live.engine.policy();
                let tracked = Arc::downgrade(&shared);
                fleet
                    .drain_outage_leftovers(policy.server.decision_ttl_secs, move |id| {
                        tracked.upgrade()?.tracker.reported(id)
                    })
                    .await;
                if let Err(e) = fleet.refresh_circuits(&shared.circuits, policy).await {
                    tracing::debug!(error = %e, "reading the fleet's circuit breakers failed");
                }
                // One script per named tenant: every few seconds is enough for the metrics.
                if budgets_read.is_none_or(|t| t.elapsed() >= BUDGET_REFRESH_EVERY) {
                    budgets_read = Some(Instant::now());
                    if let Err(e) = fleet.refresh_budgets(policy).await {
                        tracing::debug!(error = %e, "reading the fleet's budgets failed");
                    }
                }
            }
        })
    });

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task_shared = shared.clone();
    let task = tokio::spawn(async move {
        let mut builder = tonic::transport::Server::builder();
        if let Some(age) = max_age {
            // Recycled gracefully: GOAWAY, in-flight calls finish, the client reconnects.
            builder = builder
                .max_connection_age(age)
                .max_connection_age_grace(CONNECTION_AGE_GRACE);
        }
        let routes = builder
            // Well above what a call may carry, so an oversized call is refused on its own
            // (by `CallLimits`) instead of the connection being torn down under its neighbours.
            .http2_max_header_list_size(header_list_limit(limits.max_metadata_bytes))
            // Dead peers: a PING unanswered within the timeout closes the connection.
            .http2_keepalive_interval(keepalive.map(|k| k.0))
            .http2_keepalive_timeout(keepalive.map(|k| k.1))
            .layer(CountCalls::new(task_shared.clone()))
            .layer(limits)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(router)
            .add_service(admin);
        let stopping = async move {
            let _ = stop_rx.await;
            draining.store(true, std::sync::atomic::Ordering::Relaxed);
            set_health(&health_reporter, false).await;
        };
        let served = match incoming {
            Incoming::Plain(incoming) => {
                routes
                    .serve_with_incoming_shutdown(incoming, stopping)
                    .await
            }
            Incoming::Tls(incoming) => {
                routes
                    .serve_with_incoming_shutdown(incoming, stopping)
                    .await
            }
        };
        sweeper.abort();
        if let Some(r) = refresher {
            r.abort();
        }
        if let Some(w) = tls_watcher {
            w.abort();
        }
        // Whatever happened to the transport, every acknowledged record is written.
        let stats = task_shared.log.close().await;
        if let Some(tracer) = &task_shared.telemetry.tracer {
            tracer.shutdown().await;
        }
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
        metrics,
        shared,
        stop: Some(stop_tx),
        task,
        watcher: None,
    })
}

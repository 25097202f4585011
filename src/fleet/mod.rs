//! State shared by the replicas of a fleet, in Redis (or Valkey): budgets ([`budget`]), the
//! decisions awaiting outcomes ([`decisions`]), circuit breakers ([`circuits`]) and rate limits
//! ([`ratelimit`]). Every change is one atomic Lua script on one Redis Cluster slot
//! ([`keys`]), with time taken from the Redis server.
//!
//! What this process keeps: a mirror of what the scripts last answered (the engine reads
//! budgets and breakers from it, then the scripts decide atomically), and, while Redis cannot be
//! reached and `on_unavailable = "local"`, a local ledger whose spend is added to Redis when it
//! is back. Redis is never waited on longer than `command_timeout_ms` or the call's deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, RedisError};

use crate::money::Micros;

pub mod budget;
pub mod circuits;
pub mod decisions;
pub mod keys;
mod policy;
pub mod ratelimit;
mod scripts;

pub use policy::{OnUnavailable, RedisPolicy, StatePolicy};

use keys::Keys;
use scripts::Scripts;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Redis cannot be reached (refused, reset, timed out), or was found so recently.
    #[error("shared state (Redis) unavailable: {0}")]
    Unavailable(String),
    /// The call's own deadline came first.
    #[error("deadline exceeded waiting for the shared state (Redis)")]
    Deadline,
    /// Redis answered something a script does not produce (a bug, or a key changed by hand).
    #[error("shared state (Redis): {0}")]
    Protocol(String),
    /// The `[state]` settings cannot make a client (found at start).
    #[error("state.url: {0}")]
    Client(String),
}

/// Redis operations, for the commands counter (`signalbox_state_redis_commands_total{op}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Hold,
    TrackDecision,
    ReadDecision,
    Settle,
    CircuitRecord,
    CircuitClaim,
    CircuitRefresh,
    RateLimit,
    BudgetRefresh,
    Reconcile,
    Ping,
}

impl Op {
    pub const ALL: [Op; 11] = [
        Op::Hold,
        Op::TrackDecision,
        Op::ReadDecision,
        Op::Settle,
        Op::CircuitRecord,
        Op::CircuitClaim,
        Op::CircuitRefresh,
        Op::RateLimit,
        Op::BudgetRefresh,
        Op::Reconcile,
        Op::Ping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Hold => "hold",
            Op::TrackDecision => "track_decision",
            Op::ReadDecision => "read_decision",
            Op::Settle => "settle",
            Op::CircuitRecord => "circuit_record",
            Op::CircuitClaim => "circuit_claim",
            Op::CircuitRefresh => "circuit_refresh",
            Op::RateLimit => "rate_limit",
            Op::BudgetRefresh => "budget_refresh",
            Op::Reconcile => "reconcile",
            Op::Ping => "ping",
        }
    }
}

/// What the metrics read of the shared state.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetGauges {
    pub up: bool,
    pub on_unavailable: &'static str,
    pub commands: Vec<(&'static str, u64)>,
    pub errors: u64,
    pub outages: u64,
    /// Spend booked locally while Redis was unreachable and not yet added to it.
    pub pending_usd: f64,
}

/// The connection to the fleet's shared state, and what this replica keeps of it.
pub struct Fleet {
    conns: Vec<ConnectionManager>,
    next: AtomicUsize,
    pub policy: RedisPolicy,
    pub keys: Keys,
    scripts: Scripts,
    up: AtomicBool,
    /// A task is probing Redis (reconnect with backoff).
    probing: AtomicBool,
    commands: [AtomicU64; Op::ALL.len()],
    errors: AtomicU64,
    outages: AtomicU64,
    pub mirror: budget::Mirror,
    pub outage: budget::Outage,
}

/// A deadline for one Redis call: the nearer of the call's own and now + `command_timeout`.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    /// The call's own deadline is the nearer one: running out is the caller's deadline, not an
    /// outage.
    callers: bool,
}

impl Fleet {
    /// Clients for `policy` (connected lazily: a Redis down at start is an outage, not an
    /// error), then one PING within `connect_timeout`.
    pub async fn connect(policy: &RedisPolicy) -> Result<Arc<Fleet>, FleetError> {
        let client_err = |e: RedisError| FleetError::Client(e.to_string());
        let info = policy
            .url
            .as_str()
            .into_connection_info()
            .map_err(client_err)?;
        let mut settings = info.redis_settings().clone();
        if let Some(u) = &policy.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &policy.password {
            settings = settings.set_password(p);
        }
        let info = info.set_redis_settings(settings);
        let client = match &policy.ca_pem {
            Some(pem) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(info),
        }
        .map_err(client_err)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(policy.connect_timeout))
            .set_response_timeout(Some(policy.command_timeout.max(policy.connect_timeout)))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500));
        let conns = (0..policy.pool_size)
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(client_err)?;
        let fleet = Arc::new(Fleet {
            conns,
            next: AtomicUsize::new(0),
            policy: policy.clone(),
            keys: Keys::new(&policy.key_prefix),
            scripts: Scripts::new(),
            up: AtomicBool::new(true),
            probing: AtomicBool::new(false),
            commands: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: AtomicU64::new(0),
            outages: AtomicU64::new(0),
            mirror: budget::Mirror::default(),
            outage: budget::Outage::default(),
        });
        match fleet.ping(policy.connect_timeout).await {
            Ok(()) => tracing::info!(url = %policy.url, "shared state: connected to Redis"),
            Err(e) => {
                tracing::warn!(url = %policy.url, error = %e, on_unavailable = policy.on_unavailable.as_str(), "shared state: Redis unavailable at start");
                fleet.mark_down(&e.to_string());
            }
        }
        Ok(fleet)
    }

    /// Redis answered the last call (or the probe after an outage).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn on_unavailable(&self) -> OnUnavailable {
        self.policy.on_unavailable
    }

    /// Whether health should say SERVING: Redis is up, or the replica serves without it.
    pub fn serving(&self) -> bool {
        self.is_up() || self.policy.on_unavailable == OnUnavailable::Local
    }

    /// The deadline of a Redis call made now for a request whose gRPC deadline is `callers`.
    pub fn deadline(&self, callers: Option<Instant>) -> Deadline {
        let own = Instant::now() + self.policy.command_timeout;
        match callers {
            Some(c) if c < own => Deadline {
                at: c,
                callers: true,
            },
            _ => Deadline {
                at: own,
                callers: false,
            },
        }
    }

    fn conn(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }

    /// Run one Redis call within `deadline`; a connection failure or timeout marks Redis down
    /// (later calls fail fast, without waiting, until a probe finds it back).
    pub(crate) async fn run<T, F, Fut>(
        &self,
        op: Op,
        deadline: Deadline,
        f: F,
    ) -> Result<T, FleetError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        if !self.is_up() {
            return Err(FleetError::Unavailable("reconnecting".into()));
        }
        self.exec(op, deadline, f).await
    }

    /// [`Self::run`] even while Redis is marked down (the probe's reconciliation).
    async fn exec<T, F, Fut>(&self, op: Op, deadline: Deadline, f: F) -> Result<T, FleetError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        self.commands[op as usize].fetch_add(1, Ordering::Relaxed);
        let left = deadline.at.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, f(self.conn())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                if is_outage(&e) {
                    self.mark_down(&e.to_string());
                    Err(FleetError::Unavailable(e.to_string()))
                } else {
                    Err(FleetError::Protocol(e.to_string()))
                }
            }
            Err(_) if deadline.callers => Err(FleetError::Deadline),
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let why = format!("no answer within {:?}", self.policy.command_timeout);
                self.mark_down(&why);
                Err(FleetError::Unavailable(why))
            }
        }
    }

    async fn ping(&self, within: Duration) -> Result<(), FleetError> {
        self.commands[Op::Ping as usize].fetch_add(1, Ordering::Relaxed);
        let mut c = self.conn();
        match tokio::time::timeout(within, redis::cmd("PING").query_async::<String>(&mut c)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(FleetError::Unavailable(e.to_string())),
            Err(_) => Err(FleetError::Unavailable(format!(
                "no answer to PING within {within:?}"
            ))),
        }
    }

    /// Redis is unreachable: say so once, and probe it with backoff until it answers.
    fn mark_down(&self, why: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.outages.fetch_add(1, Ordering::Relaxed);
            match self.policy.on_unavailable {
                OnUnavailable::FailClosed => tracing::error!(
                    error = why,
                    "shared state: Redis unavailable; answering UNAVAILABLE until it is back (on_unavailable = fail_closed)"
                ),
                OnUnavailable::Local => tracing::error!(
                    error = why,
                    replicas_hint = self.policy.replicas_hint,
                    "shared state: Redis unavailable; serving from local state with 1/replicas_hint of what is left of each cap (on_unavailable = local)"
                ),
            }
        }
    }

    /// Start probing Redis if it is down and no probe runs (called by the server's ticker).
    /// Once it answers, the spend booked meanwhile and the decisions made meanwhile (with the
    /// attempts `reported` for them here; `None`: no longer tracked) are written to it, then it
    /// is used again.
    pub fn probe_if_down<R>(self: &Arc<Self>, decision_ttl_secs: u64, reported: R)
    where
        R: Fn(&str) -> Option<u64> + Send + Sync + 'static,
    {
        if self.is_up() || self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let fleet = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            loop {
                // The server is gone: nothing left to reconnect for.
                if Arc::strong_count(&fleet) == 1 {
                    break;
                }
                if fleet.ping(fleet.policy.connect_timeout).await.is_ok() {
                    // Spend and decisions of the outage go to Redis before anything is read
                    // from it.
                    match fleet.write_outage(decision_ttl_secs, &reported).await {
                        Ok((booked, decisions)) => {
                            fleet.up.store(true, Ordering::Release);
                            fleet.reset_outage_ledger();
                            tracing::info!(
                                reconciled_usd = booked.usd(),
                                decisions,
                                "shared state: Redis is back"
                            );
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "shared state: reconciling the outage failed; retrying")
                        }
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            fleet.probing.store(false, Ordering::Release);
        });
    }

    /// Spend and decisions that requests still on the outage path added after the probe had
    /// drained them: written now (called by the server's ticker while Redis is up).
    pub async fn drain_outage_leftovers<R>(&self, decision_ttl_secs: u64, reported: R)
    where
        R: Fn(&str) -> Option<u64> + Send + Sync,
    {
        if !self.is_up() || !self.outage.has_leftovers() {
            return;
        }
        if let Err(e) = self.write_outage(decision_ttl_secs, &reported).await {
            tracing::warn!(error = %e, "shared state: writing the outage's leftovers failed; retrying");
        }
    }

    /// Write an outage to Redis: the spend booked meanwhile, then the decisions made meanwhile
    /// (with the attempts `reported` for them here). The USD added and the decisions written.
    async fn write_outage(
        &self,
        decision_ttl_secs: u64,
        reported: &(dyn Fn(&str) -> Option<u64> + Send + Sync),
    ) -> Result<(Micros, usize), FleetError> {
        let booked = self.reconcile().await?;
        let decisions = self
            .upload_outage_decisions(decision_ttl_secs, reported)
            .await?;
        Ok((booked, decisions))
    }

    pub fn gauges(&self) -> FleetGauges {
        FleetGauges {
            up: self.is_up(),
            on_unavailable: self.policy.on_unavailable.as_str(),
            commands: Op::ALL
                .iter()
                .map(|op| {
                    (
                        op.as_str(),
                        self.commands[*op as usize].load(Ordering::Relaxed),
                    )
                })
                .collect(),
            errors: self.errors.load(Ordering::Relaxed),
            outages: self.outages.load(Ordering::Relaxed),
            pending_usd: self.outage.pending_total().usd(),
        }
    }

    /// Commands sent so far of `op` (for tests and the load generator's report).
    pub fn commands(&self, op: Op) -> u64 {
        self.commands[op as usize].load(Ordering::Relaxed)
    }
}

/// Connection-level failures (Redis down or unreachable), as opposed to an answer.
fn is_outage(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            redis::ErrorKind::AuthenticationFailed
                | redis::ErrorKind::Server(
                    redis::ServerErrorKind::BusyLoading
                        | redis::ServerErrorKind::ReadOnly
                        | redis::ServerErrorKind::MasterDown
                        | redis::ServerErrorKind::TryAgain
                        | redis::ServerErrorKind::ClusterDown
                )
        )
}

/// A reply of integers, as the scripts return them.
fn ints(v: redis::Value) -> Result<Vec<i64>, FleetError> {
    match v {
        redis::Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                redis::Value::Int(n) => Ok(n),
                other => Err(FleetError::Protocol(format!(
                    "a script answered {other:?} where a number was expected"
                ))),
            })
            .collect(),
        other => Err(FleetError::Protocol(format!(
            "a script answered {other:?} where a list was expected"
        ))),
    }
}

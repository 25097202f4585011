//! `[state]`, validated: where the state shared by requests lives.

use std::time::Duration;

/// What a replica does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnavailable {
    /// Route and ReportOutcome answer `UNAVAILABLE`, health is `NOT_SERVING`, until Redis is back.
    FailClosed,
    /// Keep serving from local state, each cap shared as `1 / replicas_hint` of what is left
    /// of it; spend booked meanwhile is added to Redis when it is back.
    Local,
}

impl OnUnavailable {
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnavailable::FailClosed => "fail_closed",
            OnUnavailable::Local => "local",
        }
    }
}

/// `[state] backend = "redis"`.
#[derive(Clone, PartialEq)]
pub struct RedisPolicy {
    /// `redis://host:port/db` or `rediss://` (TLS); no password in it.
    pub url: String,
    /// From `password_file` or `password_env`; with `username` (ACL user) when given.
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM CA certificates a `rediss://` server is checked against (else the system's).
    pub ca_pem: Option<Vec<u8>>,
    /// Every key starts with it (several deployments may share one Redis).
    pub key_prefix: String,
    pub connect_timeout: Duration,
    /// The longest one request waits for Redis (less when its gRPC deadline is nearer).
    pub command_timeout: Duration,
    /// Multiplexed connections, used in turn.
    pub pool_size: usize,
    pub on_unavailable: OnUnavailable,
    /// Replicas in the fleet, for the per-replica share of a cap while Redis is unreachable.
    pub replicas_hint: u32,
    /// How often circuit breakers are read back from Redis (failures seen by other replicas).
    pub circuit_refresh: Duration,
}

impl std::fmt::Debug for RedisPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPolicy")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(|c| c.len()))
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("pool_size", &self.pool_size)
            .field("on_unavailable", &self.on_unavailable)
            .field("replicas_hint", &self.replicas_hint)
            .field("circuit_refresh", &self.circuit_refresh)
            .finish()
    }
}

/// `[state]`: read at start; a reload that changes it is warned about and applies at the next
/// restart.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum StatePolicy {
    /// Budgets, decisions, circuit breakers and rate limits in this process's memory, rebuilt
    /// from its log at start.
    #[default]
    Local,
    Redis(RedisPolicy),
}

impl StatePolicy {
    pub fn backend_name(&self) -> &'static str {
        match self {
            StatePolicy::Local => "local",
            StatePolicy::Redis(_) => "redis",
        }
    }
}

//! Who may call, as whom, and how often.
//!
//! With `[auth] mode = "api_key"`, every Router and Admin call (and reflection, unless
//! `reflection = "open"`) must carry `authorization: Bearer sbx_<id>_<secret>`. The
//! [`interceptor`] checks it against the key ring of the keys file ([`keys`]) and puts the
//! caller's identity (key id, tenant, roles) in the request's extensions; the handlers check the
//! role, bind the request to the key's tenant and apply the rate limits ([`ratelimit`]) before
//! anything is decided or booked. Health stays open. Mode `none` keeps the old behaviour (any
//! caller, any tenant), allowed only on a loopback address unless `serve --insecure-no-auth`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub mod keys;
pub mod ratelimit;

pub use keys::{AuthFailure, KeyRing};
pub use ratelimit::{Rate, RateLimitPolicy, RateLimiter};

/// `[auth] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// No authentication: callers name any tenant. Loopback only, unless `--insecure-no-auth`.
    None,
    /// Every call carries an API key bound to a tenant.
    ApiKey,
}

impl AuthMode {
    pub fn parse(s: &str) -> Option<AuthMode> {
        match s {
            "none" => Some(AuthMode::None),
            "api_key" => Some(AuthMode::ApiKey),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::ApiKey => "api_key",
        }
    }
}

/// `[auth] reflection`: whether gRPC server reflection needs a key in mode `api_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReflectionAccess {
    Open,
    Authenticated,
}

/// `[auth]`, validated, with the key ring of its keys file.
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    pub mode: AuthMode,
    pub reflection: ReflectionAccess,
    /// The keys file (resolved against the policy file), watched for changes.
    pub keys_file: Option<PathBuf>,
    pub keys: Arc<KeyRing>,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        AuthPolicy {
            mode: AuthMode::None,
            reflection: ReflectionAccess::Authenticated,
            keys_file: None,
            keys: Arc::new(KeyRing::default()),
        }
    }
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Router/Route.
    Route,
    /// Router/ReportOutcome.
    Report,
    /// Admin/*.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Route, Role::Report, Role::Admin];

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "route" => Some(Role::Route),
            "report" => Some(Role::Report),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Route => "route",
            Role::Report => "report",
            Role::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Role::Route => 1,
            Role::Report => 2,
            Role::Admin => 4,
        }
    }
}

/// A set of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles(u8);

impl Roles {
    pub const NONE: Roles = Roles(0);

    #[must_use]
    pub fn with(self, role: Role) -> Roles {
        Roles(self.0 | role.bit())
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

/// An authenticated key: what the handlers know of the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyIdentity {
    pub key_id: String,
    pub tenant: String,
    pub roles: Roles,
    /// The key's own rate limit, from its record.
    pub rate: Option<Rate>,
}

/// Who is calling. The interceptor puts a `Key` in the request's extensions; in mode `none` it
/// puts nothing, and the handlers see `Anonymous`.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Mode `none`: anyone, as any tenant.
    Anonymous,
    Key(Arc<KeyIdentity>),
}

impl Caller {
    /// The tenant the caller is bound to (a key's), `None` when anonymous.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::Key(k) => Some(&k.tenant),
        }
    }
}

/// Lines per second the authentication warnings may take; the rest are counted and the count
/// is reported with the next line that is written.
const WARNINGS_PER_SEC: u32 = 10;

#[derive(Debug)]
struct LogThrottle {
    /// Start of the current one-second window, lines written in it, lines suppressed since the
    /// last one written.
    state: Mutex<(Instant, u32, u64)>,
}

impl LogThrottle {
    fn new() -> LogThrottle {
        LogThrottle {
            state: Mutex::new((Instant::now(), 0, 0)),
        }
    }

    /// `Some(suppressed before this one)` when this line may be written.
    fn admit(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock();
        if now.saturating_duration_since(s.0) >= Duration::from_secs(1) {
            s.0 = now;
            s.1 = 0;
        }
        if s.1 < WARNINGS_PER_SEC {
            s.1 += 1;
            Some(std::mem::take(&mut s.2))
        } else {
            s.2 += 1;
            None
        }
    }
}

/// The server's authentication and rate-limit state (outlives reloads).
#[derive(Debug)]
pub struct AuthState {
    /// Calls refused `UNAUTHENTICATED`.
    pub failures: AtomicU64,
    /// Calls refused `PERMISSION_DENIED` (role or tenant).
    pub denied: AtomicU64,
    /// Calls refused `RESOURCE_EXHAUSTED` by a rate limit.
    pub rate_limited: AtomicU64,
    /// Whether mode `none` may serve: the listen address is loopback, or `--insecure-no-auth`.
    no_auth_allowed: AtomicBool,
    warnings: LogThrottle,
    pub limiter: RateLimiter,
}

impl Default for AuthState {
    fn default() -> Self {
        AuthState {
            failures: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            no_auth_allowed: AtomicBool::new(false),
            warnings: LogThrottle::new(),
            limiter: RateLimiter::default(),
        }
    }
}

impl AuthState {
    /// Allow (or not) a reload to mode `none`.
    pub fn allow_no_auth(&self, allowed: bool) {
        self.no_auth_allowed.store(allowed, Ordering::Relaxed);
    }

    pub fn no_auth_allowed(&self) -> bool {
        self.no_auth_allowed.load(Ordering::Relaxed)
    }

    /// Count a refused credential and log it (sampled), with the key id when the key exists;
    /// never the credential itself.
    pub(crate) fn unauthenticated(&self, failure: &AuthFailure, peer: Option<SocketAddr>) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.warnings.admit(Instant::now()) {
            tracing::warn!(
                key_id = failure.key_id().unwrap_or("-"),
                reason = failure.reason(),
                peer = %peer.map_or_else(|| "-".to_string(), |p| p.to_string()),
                suppressed,
                "API key refused"
            );
        }
    }

    fn permission_denied(&self, key_id: &str, message: String) -> AuthError {
        self.denied.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.warnings.admit(Instant::now()) {
            tracing::warn!(key_id, reason = %message, suppressed, "API key denied");
        }
        AuthError::PermissionDenied(message)
    }

    /// The caller the interceptor put in `extensions`. Fails closed: without an authenticated
    /// key, only mode `none` lets a call through.
    pub fn caller(
        &self,
        extensions: &tonic::Extensions,
        policy: &AuthPolicy,
    ) -> Result<Caller, AuthError> {
        match extensions.get::<Caller>() {
            Some(Caller::Key(k)) => Ok(Caller::Key(k.clone())),
            Some(Caller::Anonymous) | None => match policy.mode {
                AuthMode::None => Ok(Caller::Anonymous),
                AuthMode::ApiKey => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    Err(AuthError::Unauthenticated)
                }
            },
        }
    }

    /// [`Self::caller`], which must hold `role` (anonymous callers hold every role).
    pub fn authorize(
        &self,
        extensions: &tonic::Extensions,
        policy: &AuthPolicy,
        role: Role,
    ) -> Result<Caller, AuthError> {
        let caller = self.caller(extensions, policy)?;
        if let Caller::Key(k) = &caller
            && !k.roles.contains(role)
        {
            return Err(self.permission_denied(
                &k.key_id,
                format!(
                    "this API key does not have the role {:?} this call needs",
                    role.as_str()
                ),
            ));
        }
        Ok(caller)
    }

    /// Bind a Route request's `tenant_id` to the caller: a key acts for its own tenant only (an
    /// empty `tenant_id` takes it); anonymous callers name any tenant.
    pub fn bind_tenant(&self, caller: &Caller, tenant_id: &mut String) -> Result<(), AuthError> {
        let Caller::Key(k) = caller else {
            return Ok(());
        };
        if tenant_id.is_empty() {
            tenant_id.clone_from(&k.tenant);
            return Ok(());
        }
        if *tenant_id != k.tenant {
            return Err(self.permission_denied(
                &k.key_id,
                "tenant_id: this API key acts for another tenant".into(),
            ));
        }
        Ok(())
    }

    /// The rate limits, before anything is decided or booked: the key's own (from its record),
    /// then the tenant's (`[rate_limits]`). A token taken from the key's bucket is given back
    /// when the tenant's refuses.
    pub fn admit(
        &self,
        caller: &Caller,
        tenant: Option<&str>,
        limits: &RateLimitPolicy,
        now: Instant,
    ) -> Result<(), AuthError> {
        self.admit_local(&self.admission(caller, tenant, limits), now, 1)
    }

    /// The buckets a call takes a token from: its API key's, then its tenant's.
    pub fn admission(
        &self,
        caller: &Caller,
        tenant: Option<&str>,
        limits: &RateLimitPolicy,
    ) -> Admission {
        let key = match caller {
            Caller::Key(k) => k.rate.map(|r| (k.key_id.clone(), k.tenant.clone(), r)),
            Caller::Anonymous => None,
        };
        // An invalid tenant id is refused by validation; it gets no bucket.
        let tenant = tenant
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .and_then(|t| limits.tenant_rate(t).map(|r| (t.to_string(), r)));
        Admission { key, tenant }
    }

    /// Take the admission's tokens from this process's buckets, each rate shared by `replicas`
    /// (1: the whole rate; more while the fleet's shared buckets are unreachable).
    pub fn admit_local(&self, a: &Admission, now: Instant, replicas: u32) -> Result<(), AuthError> {
        let share = |r: Rate| {
            let n = replicas.max(1);
            Rate {
                per_sec: r.per_sec / f64::from(n),
                burst: (r.burst / n).max(1),
            }
        };
        let key = a.key.as_ref().map(|(id, _, r)| (id.as_str(), share(*r)));
        if let Some((id, rate)) = key
            && let Err(wait) = self.limiter.keys.take(id, rate, now)
        {
            return Err(self.limited(format!("API key {id}"), wait));
        }
        if let Some((t, rate)) = &a.tenant
            && let Err(wait) = self.limiter.tenants.take(t, share(*rate), now)
        {
            if let Some((id, rate)) = key {
                self.limiter.keys.refund(id, rate);
            }
            return Err(self.limited(format!("tenant {t:?}"), wait));
        }
        Ok(())
    }

    /// Take the admission's tokens from the fleet's shared buckets (one script).
    pub async fn admit_shared(
        &self,
        a: &Admission,
        fleet: &crate::fleet::Fleet,
        deadline: crate::fleet::Deadline,
    ) -> Result<Result<(), AuthError>, crate::fleet::FleetError> {
        use crate::fleet::ratelimit::Bucket;
        let mut buckets = Vec::with_capacity(2);
        if let Some((key_id, tenant, rate)) = &a.key {
            buckets.push(Bucket::Key {
                tenant,
                key_id,
                rate: *rate,
            });
        }
        if let Some((tenant, rate)) = &a.tenant {
            buckets.push(Bucket::Tenant {
                tenant,
                rate: *rate,
            });
        }
        Ok(match fleet.take_tokens(&buckets, deadline).await? {
            Ok(()) => Ok(()),
            Err((i, wait)) => {
                let scope = match buckets.get(i) {
                    Some(Bucket::Key { key_id, .. }) => format!("API key {key_id}"),
                    Some(Bucket::Tenant { tenant, .. }) => format!("tenant {tenant:?}"),
                    None => "a rate limit".to_string(),
                };
                Err(self.limited(scope, wait))
            }
        })
    }

    fn limited(&self, scope: String, retry_after: Duration) -> AuthError {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%scope, retry_after_ms = retry_after.as_millis(), "rate limited");
        AuthError::RateLimited { scope, retry_after }
    }
}

/// The rate-limit buckets one call takes a token from (see [`AuthState::admission`]).
#[derive(Debug, Clone, Default)]
pub struct Admission {
    /// The API key's id, its tenant, and its rate.
    key: Option<(String, String, Rate)>,
    tenant: Option<(String, Rate)>,
}

impl Admission {
    /// No limit applies.
    pub fn is_empty(&self) -> bool {
        self.key.is_none() && self.tenant.is_none()
    }
}

/// Why a call is refused before it reaches the service.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No valid API key: one message whatever the cause (missing, malformed, unknown, wrong,
    /// expired), so it does not help guessing.
    #[error("missing or invalid API key")]
    Unauthenticated,
    /// The key lacks the call's role, or names another tenant.
    #[error("{0}")]
    PermissionDenied(String),
    /// A rate limit (the tenant's or the key's) is reached; retry after `retry_after`.
    #[error("rate limit of {scope} reached: retry in {} ms", retry_after_ms(*.retry_after))]
    RateLimited {
        scope: String,
        retry_after: Duration,
    },
}

/// Whole milliseconds to wait, rounded up (at least 1).
pub fn retry_after_ms(wait: Duration) -> u64 {
    u64::try_from(wait.as_micros().div_ceil(1000))
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_modes_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("Admin"), None);
        let rs = Roles::NONE.with(Role::Report).with(Role::Admin);
        assert_eq!(rs.iter().collect::<Vec<_>>(), [Role::Report, Role::Admin]);
        assert!(!rs.contains(Role::Route));
        for m in [AuthMode::None, AuthMode::ApiKey] {
            assert_eq!(AuthMode::parse(m.as_str()), Some(m));
        }
    }

    #[test]
    fn warnings_are_sampled() {
        let t = LogThrottle::new();
        let now = Instant::now();
        let written = (0..1000).filter(|_| t.admit(now).is_some()).count();
        assert_eq!(written, WARNINGS_PER_SEC as usize);
        assert_eq!(t.admit(now + Duration::from_secs(1)), Some(990));
    }
}

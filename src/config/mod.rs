//! The policy file: its raw TOML shape ([`raw`]), validated section by section
//! (`validate.rs`) into the runtime [`Policy`] defined here. Every validation error names the
//! offending key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::domain::{Capability, DataClass, Lane, Mode, PiiKind, RiskDomain, RiskTier, TaskType};
use crate::money::Micros;
use crate::privacy::UserIds;

pub mod raw;
#[cfg(test)]
mod tests;
mod validate;

pub use validate::{MAX_MESSAGE_BYTES, MAX_METADATA_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: `{key}`: {message}")]
    Invalid { key: String, message: String },
    /// The keys file `[auth] keys_file` names.
    #[error(transparent)]
    Keys(#[from] crate::auth::keys::KeysError),
}

pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// A model in the catalog.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub id: String,
    pub provider: String,
    pub lane: Lane,
    pub region: String,
    /// Price in micro-USD per 1k tokens.
    pub input_per_1k: Micros,
    pub output_per_1k: Micros,
    pub context_window: u32,
    /// Most output tokens an outcome may report (at most the context window).
    pub max_output_tokens: u32,
    pub capabilities: BTreeSet<Capability>,
    pub typical_latency_ms: u32,
    pub quality: f64,
}

impl ModelSpec {
    /// Cost of a call in micro-USD, rounded up.
    pub fn cost(&self, tokens_in: u64, tokens_out: u64) -> Micros {
        let micro = |tokens: u64, per_1k: Micros| -> Micros {
            Micros((tokens.saturating_mul(per_1k.0)).div_ceil(1000))
        };
        micro(tokens_in, self.input_per_1k) + micro(tokens_out, self.output_per_1k)
    }
}

/// Index of a model in [`Policy::models`].
pub type ModelIdx = usize;

#[derive(Debug, Clone)]
pub struct DataClassPolicy {
    pub lanes: BTreeSet<Lane>,
    pub store_prompt: bool,
}

#[derive(Debug, Clone)]
pub struct RiskTierPolicy {
    pub tier: RiskTier,
    pub domains: BTreeSet<RiskDomain>,
    pub constraints: Vec<String>,
    pub min_model_quality: f64,
    pub policy_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExceeded {
    Downgrade,
    Deny,
}

impl OnExceeded {
    fn parse(key: &str, s: &str) -> Result<Self, ConfigError> {
        match s {
            "downgrade" => Ok(OnExceeded::Downgrade),
            "deny" => Ok(OnExceeded::Deny),
            other => Err(invalid(
                key,
                format!("unknown action {other:?}, expected \"downgrade\" or \"deny\""),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetCaps {
    pub daily: Option<Micros>,
    pub monthly: Option<Micros>,
    pub on_exceeded: OnExceeded,
}

#[derive(Debug, Clone)]
pub struct BudgetPolicy {
    pub in_flight_ttl_secs: u64,
    /// The most one outcome may book (reported or computed from its tokens).
    pub max_outcome_cost: Micros,
    pub default_tenant: Option<BudgetCaps>,
    pub default_user: Option<BudgetCaps>,
    pub tenants: HashMap<String, BudgetCaps>,
    pub users: HashMap<(String, String), BudgetCaps>,
}

impl BudgetPolicy {
    pub fn tenant_caps(&self, tenant: &str) -> Option<&BudgetCaps> {
        self.tenants.get(tenant).or(self.default_tenant.as_ref())
    }
    pub fn user_caps(&self, tenant: &str, user: &str) -> Option<&BudgetCaps> {
        if user.is_empty() {
            return None;
        }
        self.users
            .get(&(tenant.to_string(), user.to_string()))
            .or(self.default_user.as_ref())
    }
}

#[derive(Debug, Clone)]
pub struct CircuitPolicy {
    pub failure_threshold: u32,
    pub window_secs: u64,
    pub cooldown_secs: u64,
    pub half_open_probes: u32,
    pub provider_failure_threshold: u32,
    pub count_errors: BTreeSet<crate::domain::ErrorKind>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrievalPolicy {
    pub index: String,
    pub top_k: u32,
    pub rerank: bool,
}

#[derive(Debug, Clone)]
pub struct CascadePolicy {
    pub batch: bool,
    pub interactive: bool,
    pub escalate_on: Vec<String>,
    pub max_steps: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Condition {
    pub task: Option<BTreeSet<TaskType>>,
    pub mode: Option<Mode>,
    pub data_class: Option<BTreeSet<DataClass>>,
    pub risk_tier: Option<BTreeSet<RiskTier>>,
    pub min_prompt_tokens: Option<u32>,
    pub max_prompt_tokens: Option<u32>,
    pub min_quality_preference: Option<f64>,
    pub max_quality_preference: Option<f64>,
    pub capabilities: Option<BTreeSet<Capability>>,
    pub tenant: Option<BTreeSet<String>>,
}

impl Condition {
    pub fn is_unconditional(&self) -> bool {
        let Condition {
            task,
            mode,
            data_class,
            risk_tier,
            min_prompt_tokens,
            max_prompt_tokens,
            min_quality_preference,
            max_quality_preference,
            capabilities,
            tenant,
        } = self;
        task.is_none()
            && mode.is_none()
            && data_class.is_none()
            && risk_tier.is_none()
            && min_prompt_tokens.is_none()
            && max_prompt_tokens.is_none()
            && min_quality_preference.is_none()
            && max_quality_preference.is_none()
            && capabilities.is_none()
            && tenant.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub when: Condition,
    /// Route first, then fallbacks, in order.
    pub targets: Vec<ModelIdx>,
}

#[derive(Debug, Clone)]
pub struct LogPolicy {
    pub dir: PathBuf,
    pub segment_max_bytes: u64,
    pub buffer_records: usize,
    pub flush_interval_ms: u64,
    pub ack: AckMode,
    /// The replica id in the segment names (`signalbox serve --replica-id`; not a key of the
    /// policy file, and a reload does not change it). `None`: `<host name>-<port>` once the
    /// server has bound its port (`local` for a log opened without a server).
    pub replica_id: Option<crate::decision_log::ReplicaId>,
}

/// When Route and ReportOutcome answer, relative to their log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Once the record is queued for the writer: fastest; a process crash loses what was
    /// queued but not yet written (up to `flush_interval_ms` of records).
    Queued,
    /// Once the record has been handed to the OS (written to the segment file): a process
    /// crash loses no acknowledged record; a power loss or kernel crash can.
    Written,
    /// Once the record is written and fsynced: survives power loss too.
    Fsynced,
}

impl AckMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Queued => "queued",
            AckMode::Written => "written",
            AckMode::Fsynced => "fsynced",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Defaults {
    pub quality_preference: f64,
    pub interactive_latency_slo_ms: u32,
    pub batch_latency_slo_ms: u32,
    pub expected_output_tokens: u32,
    pub chars_per_token: f64,
}

#[derive(Debug, Clone)]
pub struct ServerPolicy {
    pub max_prompt_bytes: usize,
    /// Largest request message accepted; larger ones get `RESOURCE_EXHAUSTED`.
    pub max_message_bytes: usize,
    /// Largest metadata of one call; larger gets `RESOURCE_EXHAUSTED` (that call only).
    pub max_metadata_bytes: usize,
    pub preface_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    /// 0: connections are never recycled.
    pub max_connection_age_secs: u64,
    /// 0: no keepalive pings.
    pub keepalive_interval_secs: u64,
    pub keepalive_timeout_secs: u64,
    pub max_connections: usize,
    pub decision_ttl_secs: u64,
    pub max_tracked_decisions: usize,
    /// `None`: plaintext.
    pub tls: Option<TlsPolicy>,
}

pub use crate::tls::TlsPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnedMode {
    /// The learned router decides; the rules run as shadow.
    LearnedPrimary,
    /// The rules decide; the learned router runs as shadow (to trial a new bundle safely).
    RulesPrimary,
    /// No learned router.
    RulesOnly,
}

impl LearnedMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LearnedMode::LearnedPrimary => "learned_primary",
            LearnedMode::RulesPrimary => "rules_primary",
            LearnedMode::RulesOnly => "rules_only",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendChoice {
    Tract,
    /// `None` = find it (ORT_DYLIB_PATH, then the onnxruntime Python wheel).
    OnnxRuntime(Option<PathBuf>),
}

#[derive(Debug, Clone)]
pub struct LearnedPolicy {
    pub mode: LearnedMode,
    /// Reloads may not change the serving router or drop `[learned]`.
    pub required: bool,
    pub bundle: PathBuf,
    pub backend: BackendChoice,
    pub sessions: usize,
    pub min_quality_target: f64,
    pub max_quality_target: f64,
    pub cascade_band: f64,
    pub watch_secs: u64,
}

/// The validated policy: everything the router needs, with model references resolved to indices.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `<version>+<hash of the file>`.
    pub version: String,
    pub server: ServerPolicy,
    pub log: LogPolicy,
    pub defaults: Defaults,
    pub models: Vec<ModelSpec>,
    pub model_index: HashMap<String, ModelIdx>,
    pub data_classes: BTreeMap<DataClass, DataClassPolicy>,
    pub pii_detectors: Vec<PiiKind>,
    pub pii_raise_to: DataClass,
    pub secret_raise_to: DataClass,
    pub risk: Vec<RiskTierPolicy>,
    pub budgets: BudgetPolicy,
    pub circuit: CircuitPolicy,
    pub retrieval: BTreeMap<TaskType, RetrievalPolicy>,
    pub cascade: CascadePolicy,
    pub rules: Vec<Rule>,
    /// `[privacy]`: how user ids are kept (clear, or keyed pseudonyms).
    pub user_ids: UserIds,
    /// `None` when the file has no `[learned]` section (rules only).
    pub learned: Option<LearnedPolicy>,
    /// `[auth]`, with the keys of its keys file.
    pub auth: crate::auth::AuthPolicy,
    /// `[rate_limits]`.
    pub rate_limits: crate::auth::RateLimitPolicy,
    /// `[telemetry]`.
    pub telemetry: crate::telemetry::TelemetryPolicy,
    /// `[state]`.
    pub state: crate::fleet::StatePolicy,
}

impl Policy {
    /// Read, parse and validate a policy file. Relative `log.dir` (and the `server.tls` files,
    /// which are read and checked here) are resolved against the config file's directory.
    pub fn load(path: &Path) -> Result<Policy, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, path, base)
    }

    /// Parse and validate policy text; `origin` names it in errors, `base` resolves relative paths.
    pub fn from_toml(text: &str, origin: &Path, base: &Path) -> Result<Policy, ConfigError> {
        let raw: raw::PolicyFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        validate::policy(raw, fnv64(text.as_bytes()), base)
    }

    pub fn model(&self, idx: ModelIdx) -> &ModelSpec {
        &self.models[idx]
    }

    pub fn find_model(&self, id: &str) -> Option<ModelIdx> {
        self.model_index.get(id).copied()
    }

    /// `tenant` as a metrics label: itself when the policy names it (caps of its own, a
    /// user's caps under it, a rule's tenant condition), else `other`, so that callers cannot
    /// grow the metrics without bound.
    pub fn metrics_tenant<'a>(&self, tenant: &'a str) -> &'a str {
        let named = self.budgets.tenants.contains_key(tenant)
            || self.budgets.users.keys().any(|(t, _)| t == tenant)
            || self
                .rules
                .iter()
                .any(|r| r.when.tenant.as_ref().is_some_and(|ts| ts.contains(tenant)));
        if named {
            tenant
        } else {
            crate::telemetry::metrics::OTHER_TENANT
        }
    }

    pub fn data_class(&self, class: DataClass) -> &DataClassPolicy {
        // validate() guarantees every class has an entry; fall back to the strictest on misuse.
        self.data_classes
            .get(&class)
            .or_else(|| self.data_classes.get(&DataClass::Regulated))
            .unwrap_or(&DENY_ALL)
    }
}

static DENY_ALL: DataClassPolicy = DataClassPolicy {
    lanes: BTreeSet::new(),
    store_prompt: false,
};

/// FNV-1a of the policy text, part of the policy version.
fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

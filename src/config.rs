//! The policy file: a raw, strictly-deserialized TOML shape (`raw`), validated into the runtime
//! [`Policy`]. Every validation error names the offending key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::classify::{RiskDomain, TaskType};
use crate::domain::{Capability, DataClass, Lane, Mode, RiskTier};
use crate::money::Micros;
use crate::pii::PiiKind;

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
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The raw file shape. Unknown keys anywhere are rejected by serde with their name.
pub mod raw {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct PolicyFile {
        pub version: String,
        #[serde(default)]
        pub server: Server,
        #[serde(default)]
        pub log: Log,
        #[serde(default)]
        pub defaults: Defaults,
        pub models: Vec<Model>,
        pub data_classes: BTreeMap<String, DataClassRule>,
        #[serde(default)]
        pub pii: Pii,
        #[serde(default)]
        pub risk: Vec<RiskTierRule>,
        #[serde(default)]
        pub budgets: Budgets,
        #[serde(default)]
        pub circuit_breaker: CircuitBreaker,
        #[serde(default)]
        pub retrieval: Vec<Retrieval>,
        #[serde(default)]
        pub cascade: Cascade,
        pub rules: Vec<Rule>,
        pub learned: Option<Learned>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Learned {
        /// learned_primary | rules_primary | rules_only
        pub mode: String,
        /// Model bundle directory, relative to the config file.
        pub bundle: String,
        /// tract | onnxruntime
        #[serde(default = "default_backend")]
        pub backend: String,
        /// Path of libonnxruntime.so for the onnxruntime backend; empty = ORT_DYLIB_PATH or
        /// the onnxruntime Python wheel.
        #[serde(default)]
        pub onnxruntime_library: String,
        /// Inference sessions; 0 = one per core.
        #[serde(default)]
        pub sessions: usize,
        /// Quality target (fraction of the best model's quality) at preference 0 and 1.
        #[serde(default = "default_min_target")]
        pub min_quality_target: f64,
        #[serde(default = "default_max_target")]
        pub max_quality_target: f64,
        /// Batch cascades try a cheaper model first when its predicted quality is within this
        /// band below the bar the chosen model met.
        #[serde(default = "default_band")]
        pub cascade_band: f64,
        /// Poll the config file and the bundle for changes and reload (seconds; 0 = off).
        #[serde(default = "default_watch")]
        pub watch_secs: u64,
    }
    fn default_backend() -> String {
        "tract".into()
    }
    fn default_min_target() -> f64 {
        0.9
    }
    fn default_max_target() -> f64 {
        1.0
    }
    fn default_band() -> f64 {
        0.1
    }
    fn default_watch() -> u64 {
        2
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Server {
        pub max_prompt_bytes: usize,
        pub decision_ttl_secs: u64,
        pub max_tracked_decisions: usize,
    }
    impl Default for Server {
        fn default() -> Self {
            Server {
                max_prompt_bytes: 256 * 1024,
                decision_ttl_secs: 3600,
                max_tracked_decisions: 1_000_000,
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Log {
        pub dir: String,
        pub segment_max_bytes: u64,
        pub buffer_records: usize,
        pub flush_interval_ms: u64,
    }
    impl Default for Log {
        fn default() -> Self {
            Log {
                dir: "signalbox-data/log".into(),
                segment_max_bytes: 64 * 1024 * 1024,
                buffer_records: 65_536,
                flush_interval_ms: 200,
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Defaults {
        pub quality_preference: f64,
        pub interactive_latency_slo_ms: u32,
        pub batch_latency_slo_ms: u32,
        pub expected_output_tokens: u32,
        pub chars_per_token: f64,
    }
    impl Default for Defaults {
        fn default() -> Self {
            Defaults {
                quality_preference: 0.5,
                interactive_latency_slo_ms: 10_000,
                batch_latency_slo_ms: 600_000,
                expected_output_tokens: 512,
                chars_per_token: 4.0,
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Model {
        pub id: String,
        pub provider: String,
        pub lane: String,
        #[serde(default)]
        pub region: String,
        pub input_per_1k_usd: f64,
        pub output_per_1k_usd: f64,
        pub context_window: u32,
        #[serde(default)]
        pub capabilities: Vec<String>,
        pub typical_latency_ms: u32,
        /// Prior quality in [0, 1], used to order fallbacks and for risk-tier minimums.
        pub quality: f64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct DataClassRule {
        pub lanes: Vec<String>,
        pub store_prompt: bool,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Pii {
        pub detectors: Vec<String>,
        /// Detected PII raises the data class to at least this.
        pub raise_to: String,
        /// Detected secrets (API keys, private keys) raise the data class to at least this.
        pub secret_raise_to: String,
    }
    impl Default for Pii {
        fn default() -> Self {
            Pii {
                detectors: PiiKind::ALL
                    .iter()
                    .map(|k| k.as_str().to_string())
                    .collect(),
                raise_to: "pii".into(),
                secret_raise_to: "regulated".into(),
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RiskTierRule {
        pub tier: String,
        pub domains: Vec<String>,
        #[serde(default)]
        pub constraints: Vec<String>,
        #[serde(default)]
        pub min_model_quality: f64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Budgets {
        pub on_exceeded: String,
        pub in_flight_ttl_secs: u64,
        pub default_tenant: Option<Caps>,
        pub default_user: Option<Caps>,
        pub tenants: Vec<TenantBudget>,
        pub users: Vec<UserBudget>,
    }
    impl Default for Budgets {
        fn default() -> Self {
            Budgets {
                on_exceeded: "downgrade".into(),
                in_flight_ttl_secs: 600,
                default_tenant: None,
                default_user: None,
                tenants: Vec::new(),
                users: Vec::new(),
            }
        }
    }

    #[derive(Debug, Deserialize, Clone)]
    #[serde(deny_unknown_fields)]
    pub struct Caps {
        pub daily_usd: Option<f64>,
        pub monthly_usd: Option<f64>,
        pub on_exceeded: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct TenantBudget {
        pub tenant: String,
        pub daily_usd: Option<f64>,
        pub monthly_usd: Option<f64>,
        pub on_exceeded: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct UserBudget {
        pub tenant: String,
        pub user: String,
        pub daily_usd: Option<f64>,
        pub monthly_usd: Option<f64>,
        pub on_exceeded: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct CircuitBreaker {
        pub failure_threshold: u32,
        pub window_secs: u64,
        pub cooldown_secs: u64,
        pub half_open_probes: u32,
        pub provider_failure_threshold: u32,
        pub count_errors: Vec<String>,
    }
    impl Default for CircuitBreaker {
        fn default() -> Self {
            CircuitBreaker {
                failure_threshold: 5,
                window_secs: 60,
                cooldown_secs: 30,
                half_open_probes: 1,
                provider_failure_threshold: 20,
                count_errors: vec![
                    "timeout".into(),
                    "rate_limited".into(),
                    "server_error".into(),
                ],
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Retrieval {
        pub task: String,
        pub index: String,
        pub top_k: u32,
        #[serde(default)]
        pub rerank: bool,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Cascade {
        pub batch: bool,
        pub interactive: bool,
        pub escalate_on: Vec<String>,
        pub max_steps: usize,
    }
    impl Default for Cascade {
        fn default() -> Self {
            Cascade {
                batch: true,
                interactive: false,
                escalate_on: vec![
                    "schema_violation".into(),
                    "low_confidence".into(),
                    "refusal".into(),
                ],
                max_steps: 3,
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Rule {
        pub id: String,
        #[serde(default)]
        pub description: String,
        #[serde(default)]
        pub when: When,
        pub route: String,
        pub fallbacks: Vec<String>,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct When {
        pub task: Option<Vec<String>>,
        pub mode: Option<String>,
        pub data_class: Option<Vec<String>>,
        pub risk_tier: Option<Vec<String>>,
        pub min_prompt_tokens: Option<u32>,
        pub max_prompt_tokens: Option<u32>,
        pub min_quality_preference: Option<f64>,
        pub max_quality_preference: Option<f64>,
        pub capabilities: Option<Vec<String>>,
        pub tenant: Option<Vec<String>>,
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
    pub decision_ttl_secs: u64,
    pub max_tracked_decisions: usize,
}

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
    /// `None` when the file has no `[learned]` section (rules only).
    pub learned: Option<LearnedPolicy>,
}

impl Policy {
    /// Read, parse and validate a policy file. Relative `log.dir` is resolved against the
    /// config file's directory.
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
        validate(raw, fnv64(text.as_bytes()), base)
    }

    pub fn model(&self, idx: ModelIdx) -> &ModelSpec {
        &self.models[idx]
    }

    pub fn find_model(&self, id: &str) -> Option<ModelIdx> {
        self.model_index.get(id).copied()
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

/// A path from the policy file: absolute as given, relative to the file's directory otherwise.
fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() { p } else { base.join(p) }
}

fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn usd(key: &str, value: f64) -> Result<Micros, ConfigError> {
    Micros::from_usd(value).ok_or_else(|| {
        invalid(
            key,
            format!("must be a finite, non-negative amount in USD, got {value}"),
        )
    })
}

fn unit_interval(key: &str, value: f64) -> Result<f64, ConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(key, format!("must be in [0, 1], got {value}")))
    }
}

fn parse_each<T>(
    key: &str,
    items: &[String],
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
) -> Result<Vec<T>, ConfigError> {
    items
        .iter()
        .map(|s| parse(s).ok_or_else(|| invalid(key, format!("unknown {what} {s:?}"))))
        .collect()
}

fn validate(raw: raw::PolicyFile, hash: u64, base: &Path) -> Result<Policy, ConfigError> {
    let raw::PolicyFile {
        version,
        server,
        log,
        defaults,
        models,
        data_classes,
        pii,
        risk,
        budgets,
        circuit_breaker,
        retrieval,
        cascade,
        rules,
        learned,
    } = raw;

    if version.trim().is_empty() {
        return Err(invalid("version", "must not be empty"));
    }

    let raw::Server {
        max_prompt_bytes,
        decision_ttl_secs,
        max_tracked_decisions,
    } = server;
    if max_prompt_bytes == 0 {
        return Err(invalid("server.max_prompt_bytes", "must be positive"));
    }
    if max_tracked_decisions == 0 {
        return Err(invalid("server.max_tracked_decisions", "must be positive"));
    }
    if decision_ttl_secs == 0 {
        return Err(invalid("server.decision_ttl_secs", "must be positive"));
    }

    let raw::Log {
        dir,
        segment_max_bytes,
        buffer_records,
        flush_interval_ms,
    } = log;
    if dir.trim().is_empty() {
        return Err(invalid("log.dir", "must not be empty"));
    }
    if segment_max_bytes < 4096 {
        return Err(invalid("log.segment_max_bytes", "must be at least 4096"));
    }
    if buffer_records == 0 {
        return Err(invalid("log.buffer_records", "must be positive"));
    }
    let log = LogPolicy {
        dir: resolve_path(base, &dir),
        segment_max_bytes,
        buffer_records,
        flush_interval_ms: flush_interval_ms.max(1),
    };

    let raw::Defaults {
        quality_preference,
        interactive_latency_slo_ms,
        batch_latency_slo_ms,
        expected_output_tokens,
        chars_per_token,
    } = defaults;
    let defaults = Defaults {
        quality_preference: unit_interval("defaults.quality_preference", quality_preference)?,
        interactive_latency_slo_ms,
        batch_latency_slo_ms,
        expected_output_tokens,
        chars_per_token: if chars_per_token.is_finite() && chars_per_token >= 1.0 {
            chars_per_token
        } else {
            return Err(invalid("defaults.chars_per_token", "must be a number >= 1"));
        },
    };

    // Models.
    if models.is_empty() {
        return Err(invalid(
            "models",
            "the catalog must list at least one model",
        ));
    }
    let mut model_index = HashMap::new();
    let mut catalog = Vec::with_capacity(models.len());
    for (i, m) in models.into_iter().enumerate() {
        let raw::Model {
            id,
            provider,
            lane,
            region,
            input_per_1k_usd,
            output_per_1k_usd,
            context_window,
            capabilities,
            typical_latency_ms,
            quality,
        } = m;
        let key = |field: &str| format!("models[{i}].{field}");
        if id.trim().is_empty() {
            return Err(invalid(key("id"), "must not be empty"));
        }
        if model_index.insert(id.clone(), i).is_some() {
            return Err(invalid(key("id"), format!("duplicate model id {id:?}")));
        }
        if provider.trim().is_empty() {
            return Err(invalid(key("provider"), "must not be empty"));
        }
        if context_window == 0 {
            return Err(invalid(key("context_window"), "must be positive"));
        }
        catalog.push(ModelSpec {
            lane: Lane::parse(&lane).ok_or_else(|| {
                invalid(
                    key("lane"),
                    format!("unknown lane {lane:?}, expected hosted, private or self_hosted"),
                )
            })?,
            input_per_1k: usd(&key("input_per_1k_usd"), input_per_1k_usd)?,
            output_per_1k: usd(&key("output_per_1k_usd"), output_per_1k_usd)?,
            capabilities: parse_each(
                &key("capabilities"),
                &capabilities,
                Capability::parse,
                "capability",
            )?
            .into_iter()
            .collect(),
            quality: unit_interval(&key("quality"), quality)?,
            id,
            provider,
            region,
            context_window,
            typical_latency_ms,
        });
    }
    let resolve = |key: &str, id: &str| -> Result<ModelIdx, ConfigError> {
        model_index
            .get(id)
            .copied()
            .ok_or_else(|| invalid(key, format!("unknown model id {id:?} (not in [[models]])")))
    };

    // Data classes: every class must be configured.
    let mut classes = BTreeMap::new();
    for (name, rule) in data_classes {
        let key = format!("data_classes.{name}");
        let class = DataClass::parse(&name).ok_or_else(|| {
            invalid(
                &key,
                "unknown data class, expected public, internal, pii or regulated",
            )
        })?;
        let raw::DataClassRule {
            lanes,
            store_prompt,
        } = rule;
        classes.insert(
            class,
            DataClassPolicy {
                lanes: parse_each(&format!("{key}.lanes"), &lanes, Lane::parse, "lane")?
                    .into_iter()
                    .collect(),
                store_prompt,
            },
        );
    }
    for class in DataClass::ALL {
        if !classes.contains_key(class) {
            return Err(invalid(
                format!("data_classes.{}", class.as_str()),
                "missing: every data class needs its allowed lanes",
            ));
        }
    }

    let raw::Pii {
        detectors,
        raise_to,
        secret_raise_to,
    } = pii;
    let pii_detectors = parse_each("pii.detectors", &detectors, PiiKind::parse, "detector")?;
    let pii_raise_to = DataClass::parse(&raise_to)
        .ok_or_else(|| invalid("pii.raise_to", format!("unknown data class {raise_to:?}")))?;
    let secret_raise_to = DataClass::parse(&secret_raise_to).ok_or_else(|| {
        invalid(
            "pii.secret_raise_to",
            format!("unknown data class {secret_raise_to:?}"),
        )
    })?;

    let mut risk_tiers = Vec::new();
    for (i, r) in risk.into_iter().enumerate() {
        let raw::RiskTierRule {
            tier,
            domains,
            constraints,
            min_model_quality,
        } = r;
        let key = |f: &str| format!("risk[{i}].{f}");
        let tier = RiskTier::parse(&tier).ok_or_else(|| {
            invalid(
                key("tier"),
                format!("unknown tier {tier:?}, expected low, elevated or high"),
            )
        })?;
        risk_tiers.push(RiskTierPolicy {
            policy_id: format!("risk.{}", tier.as_str()),
            tier,
            domains: parse_each(&key("domains"), &domains, RiskDomain::parse, "domain")?
                .into_iter()
                .collect(),
            constraints,
            min_model_quality: unit_interval(&key("min_model_quality"), min_model_quality)?,
        });
    }
    // Highest tier first, so the first tier whose domains match wins.
    risk_tiers.sort_by_key(|t| std::cmp::Reverse(t.tier));

    let raw::Budgets {
        on_exceeded,
        in_flight_ttl_secs,
        default_tenant,
        default_user,
        tenants,
        users,
    } = budgets;
    let default_action = OnExceeded::parse("budgets.on_exceeded", &on_exceeded)?;
    let caps = |key: &str,
                daily: Option<f64>,
                monthly: Option<f64>,
                action: Option<String>|
     -> Result<BudgetCaps, ConfigError> {
        Ok(BudgetCaps {
            daily: daily
                .map(|v| usd(&format!("{key}.daily_usd"), v))
                .transpose()?,
            monthly: monthly
                .map(|v| usd(&format!("{key}.monthly_usd"), v))
                .transpose()?,
            on_exceeded: match action {
                Some(a) => OnExceeded::parse(&format!("{key}.on_exceeded"), &a)?,
                None => default_action,
            },
        })
    };
    let mut tenant_caps = HashMap::new();
    for (i, t) in tenants.into_iter().enumerate() {
        let key = format!("budgets.tenants[{i}]");
        let c = caps(&key, t.daily_usd, t.monthly_usd, t.on_exceeded)?;
        if tenant_caps.insert(t.tenant.clone(), c).is_some() {
            return Err(invalid(
                format!("{key}.tenant"),
                format!("duplicate tenant {:?}", t.tenant),
            ));
        }
    }
    let mut user_caps = HashMap::new();
    for (i, u) in users.into_iter().enumerate() {
        let key = format!("budgets.users[{i}]");
        let c = caps(&key, u.daily_usd, u.monthly_usd, u.on_exceeded)?;
        if user_caps
            .insert((u.tenant.clone(), u.user.clone()), c)
            .is_some()
        {
            return Err(invalid(
                format!("{key}.user"),
                format!("duplicate user {:?} of tenant {:?}", u.user, u.tenant),
            ));
        }
    }
    let budgets = BudgetPolicy {
        in_flight_ttl_secs,
        default_tenant: default_tenant
            .map(|c| {
                caps(
                    "budgets.default_tenant",
                    c.daily_usd,
                    c.monthly_usd,
                    c.on_exceeded,
                )
            })
            .transpose()?,
        default_user: default_user
            .map(|c| {
                caps(
                    "budgets.default_user",
                    c.daily_usd,
                    c.monthly_usd,
                    c.on_exceeded,
                )
            })
            .transpose()?,
        tenants: tenant_caps,
        users: user_caps,
    };

    let raw::CircuitBreaker {
        failure_threshold,
        window_secs,
        cooldown_secs,
        half_open_probes,
        provider_failure_threshold,
        count_errors,
    } = circuit_breaker;
    if failure_threshold == 0 {
        return Err(invalid(
            "circuit_breaker.failure_threshold",
            "must be positive",
        ));
    }
    if window_secs == 0 {
        return Err(invalid("circuit_breaker.window_secs", "must be positive"));
    }
    if half_open_probes == 0 {
        return Err(invalid(
            "circuit_breaker.half_open_probes",
            "must be positive",
        ));
    }
    let circuit = CircuitPolicy {
        failure_threshold,
        window_secs,
        cooldown_secs,
        half_open_probes,
        provider_failure_threshold,
        count_errors: parse_each(
            "circuit_breaker.count_errors",
            &count_errors,
            |s| crate::domain::ErrorKind::parse(s).filter(|k| *k != crate::domain::ErrorKind::None),
            "error kind",
        )?
        .into_iter()
        .collect(),
    };

    let mut retrieval_plans = BTreeMap::new();
    for (i, r) in retrieval.into_iter().enumerate() {
        let key = |f: &str| format!("retrieval[{i}].{f}");
        let task = TaskType::parse(&r.task)
            .ok_or_else(|| invalid(key("task"), format!("unknown task {:?}", r.task)))?;
        if r.index.trim().is_empty() {
            return Err(invalid(key("index"), "must not be empty"));
        }
        if r.top_k == 0 {
            return Err(invalid(key("top_k"), "must be positive"));
        }
        if retrieval_plans
            .insert(
                task,
                RetrievalPolicy {
                    index: r.index,
                    top_k: r.top_k,
                    rerank: r.rerank,
                },
            )
            .is_some()
        {
            return Err(invalid(
                key("task"),
                format!("duplicate retrieval plan for task {:?}", task.as_str()),
            ));
        }
    }

    let raw::Cascade {
        batch,
        interactive,
        escalate_on,
        max_steps,
    } = cascade;
    if max_steps < 2 {
        return Err(invalid("cascade.max_steps", "must be at least 2"));
    }
    let cascade = CascadePolicy {
        batch,
        interactive,
        escalate_on,
        max_steps,
    };

    // Rules: ordered, first match wins, an unconditional default last.
    if rules.is_empty() {
        return Err(invalid(
            "rules",
            "at least one rule (the default route) is required",
        ));
    }
    let mut compiled = Vec::with_capacity(rules.len());
    let mut ids = BTreeSet::new();
    let n_rules = rules.len();
    for (i, r) in rules.into_iter().enumerate() {
        let raw::Rule {
            id,
            description,
            when,
            route,
            fallbacks,
        } = r;
        let key = |f: &str| format!("rules[{i}].{f}");
        if id.trim().is_empty() {
            return Err(invalid(key("id"), "must not be empty"));
        }
        if !ids.insert(id.clone()) {
            return Err(invalid(key("id"), format!("duplicate rule id {id:?}")));
        }
        if fallbacks.is_empty() {
            return Err(invalid(
                key("fallbacks"),
                "must list at least one fallback model",
            ));
        }
        let mut targets = vec![resolve(&key("route"), &route)?];
        for (j, f) in fallbacks.iter().enumerate() {
            let idx = resolve(&format!("rules[{i}].fallbacks[{j}]"), f)?;
            if targets.contains(&idx) {
                return Err(invalid(
                    format!("rules[{i}].fallbacks[{j}]"),
                    format!("model {f:?} is listed twice in this rule"),
                ));
            }
            targets.push(idx);
        }
        let when = condition(&format!("rules[{i}].when"), when)?;
        if i + 1 == n_rules && !when.is_unconditional() {
            return Err(invalid(
                key("when"),
                "the last rule is the default route and must have no conditions",
            ));
        }
        compiled.push(Rule {
            id,
            description,
            when,
            targets,
        });
    }

    let learned = learned.map(|l| learned_policy(l, base)).transpose()?;

    Ok(Policy {
        version: format!("{}+{:08x}", version.trim(), hash >> 32),
        server: ServerPolicy {
            max_prompt_bytes,
            decision_ttl_secs,
            max_tracked_decisions,
        },
        log,
        defaults,
        models: catalog,
        model_index,
        data_classes: classes,
        pii_detectors,
        pii_raise_to,
        secret_raise_to,
        risk: risk_tiers,
        budgets,
        circuit,
        retrieval: retrieval_plans,
        cascade,
        rules: compiled,
        learned,
    })
}

fn learned_policy(l: raw::Learned, base: &Path) -> Result<LearnedPolicy, ConfigError> {
    let raw::Learned {
        mode,
        bundle,
        backend,
        onnxruntime_library,
        sessions,
        min_quality_target,
        max_quality_target,
        cascade_band,
        watch_secs,
    } = l;
    let mode = match mode.as_str() {
        "learned_primary" => LearnedMode::LearnedPrimary,
        "rules_primary" => LearnedMode::RulesPrimary,
        "rules_only" => LearnedMode::RulesOnly,
        other => {
            return Err(invalid(
                "learned.mode",
                format!(
                    "unknown mode {other:?}, expected learned_primary, rules_primary or rules_only"
                ),
            ));
        }
    };
    if bundle.trim().is_empty() {
        return Err(invalid("learned.bundle", "must not be empty"));
    }
    let resolve = |p: &str| resolve_path(base, p);
    let backend = match backend.as_str() {
        "tract" => BackendChoice::Tract,
        "onnxruntime" => BackendChoice::OnnxRuntime(
            (!onnxruntime_library.trim().is_empty()).then(|| resolve(&onnxruntime_library)),
        ),
        other => {
            return Err(invalid(
                "learned.backend",
                format!("unknown backend {other:?}, expected tract or onnxruntime"),
            ));
        }
    };
    let lo = unit_interval("learned.min_quality_target", min_quality_target)?;
    let hi = unit_interval("learned.max_quality_target", max_quality_target)?;
    if lo > hi {
        return Err(invalid(
            "learned.min_quality_target",
            "must not exceed learned.max_quality_target",
        ));
    }
    Ok(LearnedPolicy {
        mode,
        bundle: resolve(&bundle),
        backend,
        sessions,
        min_quality_target: lo,
        max_quality_target: hi,
        cascade_band: unit_interval("learned.cascade_band", cascade_band)?,
        watch_secs,
    })
}

fn condition(key: &str, when: raw::When) -> Result<Condition, ConfigError> {
    let raw::When {
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
    } = when;
    Ok(Condition {
        task: task
            .map(|v| parse_each(&format!("{key}.task"), &v, TaskType::parse, "task"))
            .transpose()?
            .map(|v| v.into_iter().collect()),
        mode: mode
            .map(|m| {
                Mode::parse(&m)
                    .ok_or_else(|| invalid(format!("{key}.mode"), format!("unknown mode {m:?}")))
            })
            .transpose()?,
        data_class: data_class
            .map(|v| {
                parse_each(
                    &format!("{key}.data_class"),
                    &v,
                    DataClass::parse,
                    "data class",
                )
            })
            .transpose()?
            .map(|v| v.into_iter().collect()),
        risk_tier: risk_tier
            .map(|v| {
                parse_each(
                    &format!("{key}.risk_tier"),
                    &v,
                    RiskTier::parse,
                    "risk tier",
                )
            })
            .transpose()?
            .map(|v| v.into_iter().collect()),
        min_prompt_tokens,
        max_prompt_tokens,
        min_quality_preference: min_quality_preference
            .map(|v| unit_interval(&format!("{key}.min_quality_preference"), v))
            .transpose()?,
        max_quality_preference: max_quality_preference
            .map(|v| unit_interval(&format!("{key}.max_quality_preference"), v))
            .transpose()?,
        capabilities: capabilities
            .map(|v| {
                parse_each(
                    &format!("{key}.capabilities"),
                    &v,
                    Capability::parse,
                    "capability",
                )
            })
            .transpose()?
            .map(|v| v.into_iter().collect()),
        tenant: tenant.map(|v| v.into_iter().collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../config/signalbox.toml");

    fn load(text: &str) -> Result<Policy, ConfigError> {
        Policy::from_toml(text, Path::new("test.toml"), Path::new("/srv/signalbox"))
    }

    fn error_of(text: &str) -> String {
        match load(text) {
            Ok(_) => panic!("config should be rejected"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_example_config_loads() {
        let p = load(EXAMPLE).unwrap();
        assert!(p.version.starts_with("example-2026-11+"));
        assert_eq!(p.models.len(), 6);
        assert_eq!(p.rules.last().unwrap().id, "default");
        assert_eq!(p.log.dir, Path::new("/srv/signalbox/../signalbox-data/log"));
        assert_eq!(p.model(0).input_per_1k, Micros(10_000));
        assert_eq!(
            p.budgets.tenant_caps("trial").unwrap().on_exceeded,
            OnExceeded::Deny
        );
        assert_eq!(
            p.budgets.tenant_caps("someone-else").unwrap().daily,
            Some(Micros(200_000_000))
        );
        assert!(p.budgets.user_caps("acme", "").is_none());
        assert_eq!(p.risk[0].tier, RiskTier::High, "highest tier first");
        let on_disk = Policy::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/signalbox.toml"
        )))
        .unwrap();
        assert_eq!(on_disk.version, p.version);
    }

    #[test]
    fn the_version_changes_with_the_content() {
        let a = load(EXAMPLE).unwrap().version;
        let b = load(&EXAMPLE.replace("top_k = 8", "top_k = 9"))
            .unwrap()
            .version;
        assert_ne!(a, b);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name_and_position() {
        let e = error_of(&EXAMPLE.replace("[server]\n", "[server]\nmax_prompt_kb = 3\n"));
        assert!(e.contains("max_prompt_kb"), "{e}");
        assert!(e.contains("line"), "{e}");
        let e = error_of(&EXAMPLE.replace(
            "id = \"claude-3-5-sonnet\"",
            "id = \"claude-3-5-sonnet\"\nprice = 1",
        ));
        assert!(e.contains("unknown field `price`"), "{e}");
        let e = error_of(&format!("{EXAMPLE}\n[telemetry]\nendpoint = \"x\"\n"));
        assert!(e.contains("telemetry"), "{e}");
    }

    #[test]
    fn unknown_model_ids_in_rules_are_rejected() {
        let e = error_of(&EXAMPLE.replace(
            "route = \"qwen2.5-coder-32b-instruct\"",
            "route = \"qwen-9000\"",
        ));
        assert_eq!(
            e,
            "invalid config: `rules[0].route`: unknown model id \"qwen-9000\" (not in [[models]])"
        );
        let e = error_of(&EXAMPLE.replace(
            "fallbacks = [\"gpt-4o-mini\", \"llama-3.1-70b-instruct\"]",
            "fallbacks = [\"gpt-4o-mini\", \"llama-4\"]",
        ));
        assert!(
            e.contains("`rules[6].fallbacks[1]`") && e.contains("llama-4"),
            "{e}"
        );
    }

    #[test]
    fn empty_fallbacks_are_rejected() {
        let e = error_of(&EXAMPLE.replace(
            "fallbacks = [\"gpt-4-1106-preview\", \"llama-3.1-70b-instruct\"]",
            "fallbacks = []",
        ));
        assert!(
            e.contains("`rules[0].fallbacks`") && e.contains("at least one"),
            "{e}"
        );
    }

    #[test]
    fn negative_or_invalid_prices_are_rejected() {
        let e = error_of(&EXAMPLE.replace("input_per_1k_usd = 0.01", "input_per_1k_usd = -0.01"));
        assert!(e.contains("`models[0].input_per_1k_usd`"), "{e}");
        assert!(e.contains("non-negative"), "{e}");
        let e = error_of(&EXAMPLE.replace("output_per_1k_usd = 0.03", "output_per_1k_usd = nan"));
        assert!(e.contains("`models[0].output_per_1k_usd`"), "{e}");
        let e = error_of(&EXAMPLE.replace("daily_usd = 50.0", "daily_usd = -5.0"));
        assert!(e.contains("`budgets.tenants[0].daily_usd`"), "{e}");
    }

    #[test]
    fn other_semantic_errors_name_their_key() {
        let cases = [
            (
                EXAMPLE.replace("lane = \"hosted\"", "lane = \"moon\""),
                "`models[0].lane`",
            ),
            (
                EXAMPLE.replace(
                    "capabilities = [\"json_output\"]",
                    "capabilities = [\"telepathy\"]",
                ),
                "`models[4].capabilities`",
            ),
            (
                EXAMPLE.replace("quality = 0.90", "quality = 1.5"),
                "`models[0].quality`",
            ),
            (
                EXAMPLE.replace("[data_classes.regulated]", "[data_classes.secret]"),
                "`data_classes.secret`",
            ),
            (
                EXAMPLE.replace(
                    "domains = [\"medical\", \"legal\"]",
                    "domains = [\"astrology\"]",
                ),
                "`risk[0].domains`",
            ),
            (
                EXAMPLE.replace("on_exceeded = \"deny\"", "on_exceeded = \"panic\""),
                "`budgets.tenants[1].on_exceeded`",
            ),
            (
                EXAMPLE.replace("task = \"chat\"", "task = \"poetry\""),
                "`retrieval[1].task`",
            ),
            (
                EXAMPLE.replace(
                    "when = { task = [\"code\"] }",
                    "when = { task = [\"coding\"] }",
                ),
                "`rules[0].when.task`",
            ),
            (
                EXAMPLE.replace(
                    "id = \"default\"",
                    "id = \"default\"\nwhen = { mode = \"batch\" }",
                ),
                "`rules[6].when`",
            ),
            (
                EXAMPLE.replace("id = \"claude-3-5-sonnet\"", "id = \"gpt-4o-mini\""),
                "`models[2].id`",
            ),
            (
                EXAMPLE.replace("failure_threshold = 5 ", "failure_threshold = 0 "),
                "`circuit_breaker.failure_threshold`",
            ),
        ];
        for (text, key) in cases {
            let e = error_of(&text);
            assert!(e.contains(key), "expected {key} in: {e}");
        }
    }

    #[test]
    fn every_data_class_must_be_configured() {
        let text = EXAMPLE.replace(
            "[data_classes.regulated]\nlanes = [\"private\"]\nstore_prompt = false\n",
            "",
        );
        assert!(error_of(&text).contains("`data_classes.regulated`"));
    }

    #[test]
    fn model_cost_is_exact_and_rounds_up() {
        let p = load(EXAMPLE).unwrap();
        let gpt4 = p.model(p.find_model("gpt-4-1106-preview").unwrap());
        // 1000 in at $0.01/1k + 1000 out at $0.03/1k = $0.04.
        assert_eq!(gpt4.cost(1000, 1000), Micros(40_000));
        // 1 token in at 10_000 µ$/1k = 10 µ$; 1 out = 30 µ$.
        assert_eq!(gpt4.cost(1, 1), Micros(40));
        let mini = p.model(p.find_model("gpt-4o-mini").unwrap());
        // 1 token at 150 µ$/1k = 0.15 µ$, rounded up to 1.
        assert_eq!(mini.cost(1, 0), Micros(1));
    }
}

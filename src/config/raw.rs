//! The policy file's raw shape, as written: strictly deserialized (unknown keys anywhere are
//! rejected by serde with their name and line), with the documented defaults. Nothing here is
//! validated; `validate.rs` turns it into the runtime [`super::Policy`].

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::domain::PiiKind;

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
    #[serde(default)]
    pub privacy: Privacy,
    pub learned: Option<Learned>,
    #[serde(default)]
    pub auth: Auth,
    #[serde(default)]
    pub rate_limits: RateLimits,
    #[serde(default)]
    pub telemetry: Telemetry,
    #[serde(default)]
    pub state: State,
}

/// `[state]`: where budgets, tracked decisions, circuit breakers and rate limits live (read at
/// start; a reload keeps them).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct State {
    /// local | redis
    pub backend: String,
    pub url: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    pub ca_file: Option<String>,
    pub key_prefix: String,
    pub connect_timeout_ms: u64,
    pub command_timeout_ms: u64,
    pub pool_size: usize,
    /// fail_closed | local
    pub on_unavailable: String,
    pub replicas_hint: u32,
    pub circuit_refresh_ms: u64,
}

impl Default for State {
    fn default() -> State {
        State {
            backend: "local".into(),
            url: None,
            username: None,
            password_file: None,
            password_env: None,
            ca_file: None,
            key_prefix: "signalbox".into(),
            connect_timeout_ms: 1000,
            command_timeout_ms: 250,
            pool_size: 2,
            on_unavailable: "fail_closed".into(),
            replicas_hint: 1,
            circuit_refresh_ms: 250,
        }
    }
}

/// `[telemetry]`: metrics endpoint and trace export (read at start; a reload keeps them).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Telemetry {
    /// `host:port` of the `/metrics` HTTP endpoint (port 0: a free port).
    pub metrics_listen: Option<String>,
    /// OTLP/gRPC collector URL, e.g. `http://127.0.0.1:4317`.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    pub sample_ratio: f64,
    pub export_queue_traces: usize,
    pub export_batch_spans: usize,
    pub export_timeout_ms: u64,
}

impl Default for Telemetry {
    fn default() -> Telemetry {
        let d = crate::telemetry::TelemetryPolicy::default();
        Telemetry {
            metrics_listen: None,
            otlp_endpoint: None,
            service_name: d.service_name,
            sample_ratio: d.sample_ratio,
            export_queue_traces: d.export_queue_traces,
            export_batch_spans: d.export_batch_spans,
            export_timeout_ms: d.export_timeout_ms,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Privacy {
    /// clear | hmac
    #[serde(default = "default_user_id_mode")]
    pub user_id: String,
    /// File holding the HMAC key (at least 32 bytes), relative to the config file.
    #[serde(default)]
    pub hmac_key_file: String,
}

impl Default for Privacy {
    fn default() -> Privacy {
        Privacy {
            user_id: default_user_id_mode(),
            hmac_key_file: String::new(),
        }
    }
}

fn default_user_id_mode() -> String {
    "clear".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Learned {
    /// learned_primary | rules_primary | rules_only
    pub mode: String,
    /// A reload that would change the serving router or drop this section is rejected.
    #[serde(default)]
    pub required: bool,
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
    /// Largest request message accepted (encoded protobuf).
    pub max_message_bytes: usize,
    /// Largest metadata (all headers of one call) accepted.
    pub max_metadata_bytes: usize,
    /// A connection that has not sent the HTTP/2 preface this long after it was accepted (and
    /// TLS-handshaken) is closed.
    pub preface_timeout_secs: u64,
    /// A connection that sent no request this long after its preface is closed.
    pub idle_timeout_secs: u64,
    /// Connections are recycled gracefully (GOAWAY) at this age; 0 = never.
    pub max_connection_age_secs: u64,
    /// HTTP/2 keepalive PINGs this often (0 = none); unanswered within the timeout, the
    /// connection is closed.
    pub keepalive_interval_secs: u64,
    pub keepalive_timeout_secs: u64,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// `[server.tls]`: serve TLS (mTLS with `client_ca`) instead of plaintext.
    pub tls: Option<Tls>,
}
impl Default for Server {
    fn default() -> Self {
        Server {
            max_message_bytes: 4 * 1024 * 1024,
            max_metadata_bytes: 16 * 1024,
            preface_timeout_secs: 10,
            idle_timeout_secs: 300,
            max_connection_age_secs: 1800,
            keepalive_interval_secs: 30,
            keepalive_timeout_secs: 10,
            max_connections: 10_000,
            max_prompt_bytes: 256 * 1024,
            decision_ttl_secs: 3600,
            max_tracked_decisions: 1_000_000,
            tls: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Certificate chain, PEM, leaf first; relative to the config file.
    pub cert: String,
    /// Private key of the leaf, PEM (PKCS#8, PKCS#1 or SEC1); relative to the config file.
    pub key: String,
    /// CA bundle, PEM: when set, clients must present a certificate issued by one of these.
    #[serde(default)]
    pub client_ca: Option<String>,
    /// A handshake not finished within this many seconds is dropped.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_secs: u64,
    /// Poll the certificate, key and CA files for changes (seconds; 0 = off).
    #[serde(default = "default_watch")]
    pub watch_secs: u64,
}
fn default_handshake_timeout() -> u64 {
    10
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub dir: String,
    pub segment_max_bytes: u64,
    pub buffer_records: usize,
    pub flush_interval_ms: u64,
    /// queued | written | fsynced: when a request is acknowledged.
    pub ack: String,
}
impl Default for Log {
    fn default() -> Self {
        Log {
            ack: "written".into(),
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
    /// Most output tokens one call can report; default: the context window.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
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
    /// The most one outcome may book; a report above it is refused as implausible.
    pub max_outcome_cost_usd: f64,
}
impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            on_exceeded: "downgrade".into(),
            in_flight_ttl_secs: 600,
            max_outcome_cost_usd: 100.0,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// none | api_key
    pub mode: String,
    /// The API keys file, relative to the config file.
    pub keys_file: Option<String>,
    /// open | authenticated: whether server reflection needs a key in mode api_key.
    pub reflection: String,
}
impl Default for Auth {
    fn default() -> Self {
        Auth {
            mode: "none".into(),
            keys_file: None,
            reflection: "authenticated".into(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// For tenants without an entry below: each gets its own bucket at this rate.
    pub default_tenant: Option<RateSpec>,
    pub tenants: Vec<TenantRate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    pub requests_per_sec: f64,
    pub burst: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRate {
    pub tenant: String,
    pub requests_per_sec: f64,
    pub burst: u32,
}

//! The gRPC handlers, top to bottom: validate the request and convert it to domain types (every
//! proto field destructured, so a new field breaks the build), decide, record, respond.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use chrono::{SecondsFormat, Utc};
use signalbox_features::log_schema::{ModelQuality, PiiCount, SCHEMA_VERSION};
use signalbox_features::manifest::{MAX_TASK_BYTES, TASK_PUNCTUATION, is_valid_task_name};
use tonic::{Request, Response, Status};

use crate::budget::BudgetLedger;
use crate::circuit::{CircuitBreakers, ProbeClaim};
use crate::classify::TaskType;
use crate::config::Policy;
use crate::decision_log::{DecisionLog, DecisionRecord, LogError, LogRecord, OutcomeRecord};
use crate::domain::{Capability, DataClass, ErrorKind, Mode, RiskTier, RouterKind};
use crate::engine::{
    ChatMessage, DecideError, Decision, DecisionEngine, Prompt, RouteInput, RuntimeState,
};
use crate::money::Micros;
use crate::proto;
use crate::tracking::{Claim, DecisionTracker, MAX_ATTEMPT, TrackedDecision};

/// Everything a request reads that can be replaced on reload, swapped as one unit.
pub struct LiveState {
    pub engine: DecisionEngine,
}

/// A decision with the live state it was made under (model indices refer to its policy).
pub struct Routed {
    pub decision_id: String,
    pub decision: Decision,
    pub live: Arc<LiveState>,
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
    fn record(&self, d: &Decision, policy: &Policy) {
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
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    #[error("{field}: {message}")]
    NotFound {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Decide(#[from] DecideError),
    #[error(transparent)]
    Log(#[from] LogError),
}

fn bad(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidArgument {
        field,
        message: message.into(),
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let message = e.to_string();
        match e {
            ApiError::InvalidArgument { .. } => Status::invalid_argument(message),
            ApiError::NotFound { .. } => Status::not_found(message),
            ApiError::Decide(DecideError::BudgetDenied { .. }) => {
                Status::resource_exhausted(message)
            }
            ApiError::Decide(DecideError::NoEligibleModel(_)) => {
                Status::failed_precondition(message)
            }
            ApiError::Log(LogError::Closed | LogError::Unwritable) => Status::unavailable(message),
            ApiError::Log(LogError::Io { .. } | LogError::WriterPanicked) => {
                Status::internal(message)
            }
        }
    }
}

const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];
const MAX_ID_LEN: usize = 256;
/// How often a request that lost a half-open probe to a concurrent one decides again.
const PROBE_RETRIES: usize = 3;

fn check_id(field: &'static str, value: &str, required: bool) -> Result<(), ApiError> {
    if required && value.trim().is_empty() {
        return Err(bad(field, "is required"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(bad(field, format!("longer than {MAX_ID_LEN} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(field, "contains control characters"));
    }
    Ok(())
}

/// The longest run of consecutive digits a category may hold: a label for a kind of request,
/// not an identifier (account, order, card or phone numbers, epoch timestamps).
pub const MAX_CATEGORY_DIGIT_RUN: usize = 8;

/// `category`: empty, or a task name a bundle can list ([`is_valid_task_name`]: a short label
/// of `[A-Za-z0-9_.:/-]`, no spaces or `@`). It is logged as given, so it must not be personal
/// data: the character set keeps out free text; a run of more than
/// [`MAX_CATEGORY_DIGIT_RUN`] digits is refused whatever it is (so whether an id is refused does
/// not depend on its checksum); and the policy's PII detectors refuse what is PII by its shape,
/// such as `078-05-1120` or `4111-1111-1111-1111` (keyword-anchored detectors are not run:
/// `auth:password:reset` is a label).
fn check_category(value: &str, engine: &DecisionEngine) -> Result<(), ApiError> {
    if value.is_empty() {
        return Ok(());
    }
    if !is_valid_task_name(value) {
        if value.len() > MAX_TASK_BYTES {
            return Err(bad(
                "category",
                format!("longer than {MAX_TASK_BYTES} bytes"),
            ));
        }
        let c = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || TASK_PUNCTUATION.contains(*c)))
            .unwrap_or(' ');
        return Err(bad(
            "category",
            format!("character {c:?} is not one of A-Z a-z 0-9 _ . : / -"),
        ));
    }
    let longest_run = value
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    if longest_run > MAX_CATEGORY_DIGIT_RUN {
        return Err(bad(
            "category",
            format!(
                "holds a {longest_run}-digit number (at most {MAX_CATEGORY_DIGIT_RUN} digits in a row): a category is a label for a kind of request, logged in clear, not an identifier"
            ),
        ));
    }
    let found = engine.label_pii_kinds(value);
    if !found.is_empty() {
        let kinds: Vec<&str> = found.iter().map(|k| k.as_str()).collect();
        return Err(bad(
            "category",
            format!(
                "looks like personal data or a secret ({}); a category is logged in clear, send a label",
                kinds.join(", ")
            ),
        ));
    }
    Ok(())
}

fn enum_value<T: TryFrom<i32>>(field: &'static str, v: i32) -> Result<T, ApiError> {
    T::try_from(v).map_err(|_| bad(field, format!("unknown value {v}")))
}

/// Validate a RouteRequest and convert it to the domain input.
pub fn route_input(
    req: proto::RouteRequest,
    engine: &DecisionEngine,
) -> Result<RouteInput, ApiError> {
    let policy = engine.policy();
    let proto::RouteRequest {
        request_id,
        prompt,
        task_hint,
        tenant_id,
        user_id,
        data_class,
        mode,
        latency_budget_ms,
        required_capabilities,
        quality_preference,
        metadata,
        category,
    } = req;
    check_id("request_id", &request_id, false)?;
    check_category(&category, engine)?;
    check_id("tenant_id", &tenant_id, true)?;
    check_id("user_id", &user_id, false)?;

    let limit = policy.server.max_prompt_bytes;
    let prompt = match prompt {
        None => return Err(bad("prompt", "set either text or messages")),
        Some(proto::route_request::Prompt::Text(text)) => {
            if text.trim().is_empty() {
                return Err(bad("text", "prompt is empty"));
            }
            if text.len() > limit {
                return Err(bad(
                    "text",
                    format!("prompt is {} bytes, over the limit of {limit}", text.len()),
                ));
            }
            Prompt::Text(text)
        }
        Some(proto::route_request::Prompt::Messages(proto::Messages { messages })) => {
            if messages.is_empty() {
                return Err(bad("messages", "no messages"));
            }
            let mut total = 0usize;
            let mut out = Vec::with_capacity(messages.len());
            for proto::ChatMessage { role, content } in messages {
                if !ROLES.contains(&role.as_str()) {
                    return Err(bad(
                        "messages.role",
                        format!("unknown role {role:?}, expected one of {ROLES:?}"),
                    ));
                }
                total += content.len();
                out.push(ChatMessage { role, content });
            }
            if out.iter().all(|m| m.content.trim().is_empty()) {
                return Err(bad("messages", "every message is empty"));
            }
            if total > limit {
                return Err(bad(
                    "messages",
                    format!("prompt is {total} bytes, over the limit of {limit}"),
                ));
            }
            Prompt::Messages(out)
        }
    };

    let task_hint = match enum_value::<proto::TaskType>("task_hint", task_hint)? {
        proto::TaskType::Unspecified => None,
        proto::TaskType::Code => Some(TaskType::Code),
        proto::TaskType::Math => Some(TaskType::Math),
        proto::TaskType::Extraction => Some(TaskType::Extraction),
        proto::TaskType::Classification => Some(TaskType::Classification),
        proto::TaskType::Summarization => Some(TaskType::Summarization),
        proto::TaskType::Chat => Some(TaskType::Chat),
        proto::TaskType::Qa => Some(TaskType::Qa),
    };
    let data_class = match enum_value::<proto::DataClass>("data_class", data_class)? {
        proto::DataClass::Unspecified | proto::DataClass::Internal => DataClass::Internal,
        proto::DataClass::Public => DataClass::Public,
        proto::DataClass::Pii => DataClass::Pii,
        proto::DataClass::Regulated => DataClass::Regulated,
    };
    let mode = match enum_value::<proto::Mode>("mode", mode)? {
        proto::Mode::Unspecified | proto::Mode::Interactive => Mode::Interactive,
        proto::Mode::Batch => Mode::Batch,
    };
    let mut capabilities = BTreeSet::new();
    for c in required_capabilities {
        capabilities.insert(
            match enum_value::<proto::Capability>("required_capabilities", c)? {
                proto::Capability::Unspecified => {
                    return Err(bad(
                        "required_capabilities",
                        "CAPABILITY_UNSPECIFIED is not a capability",
                    ));
                }
                proto::Capability::ToolCalling => Capability::ToolCalling,
                proto::Capability::JsonOutput => Capability::JsonOutput,
                proto::Capability::Vision => Capability::Vision,
                proto::Capability::LongContext => Capability::LongContext,
            },
        );
    }
    if let Some(q) = quality_preference
        && !(q.is_finite() && (0.0..=1.0).contains(&q))
    {
        return Err(bad(
            "quality_preference",
            format!("must be in [0, 1], got {q}"),
        ));
    }
    if metadata.len() > 64 {
        return Err(bad("metadata", "more than 64 entries"));
    }
    if metadata
        .iter()
        .any(|(k, v)| k.len() > MAX_ID_LEN || v.len() > 4096)
    {
        return Err(bad(
            "metadata",
            "key over 256 bytes or value over 4096 bytes",
        ));
    }
    Ok(RouteInput {
        request_id: if request_id.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            request_id
        },
        prompt,
        task_hint,
        tenant_id,
        user_id,
        data_class,
        mode,
        latency_budget_ms: (latency_budget_ms > 0).then_some(latency_budget_ms),
        capabilities,
        quality_preference,
        metadata: metadata.into_iter().collect::<BTreeMap<_, _>>(),
        category: (!category.is_empty()).then_some(category),
    })
}

/// A validated outcome.
#[derive(Debug, Clone)]
pub struct OutcomeInput {
    pub decision_id: String,
    pub model_id: String,
    pub success: bool,
    pub quality: f64,
    pub latency_ms: u32,
    pub tokens_in: u32,
    pub tokens_out: u32,
    pub cost: Option<Micros>,
    pub error: ErrorKind,
    /// 0: not numbered (always booked); 1..=64: booked once.
    pub attempt: u32,
}

pub fn outcome_input(o: proto::Outcome, policy: &Policy) -> Result<OutcomeInput, ApiError> {
    let proto::Outcome {
        decision_id,
        model_id,
        success,
        quality,
        latency_ms,
        tokens_in,
        tokens_out,
        cost_usd,
        error,
        attempt,
    } = o;
    check_id("decision_id", &decision_id, true)?;
    if attempt > MAX_ATTEMPT {
        return Err(bad(
            "attempt",
            format!("{attempt} is above the highest attempt number, {MAX_ATTEMPT}"),
        ));
    }
    check_id("model_id", &model_id, true)?;
    if policy.find_model(&model_id).is_none() {
        return Err(bad(
            "model_id",
            format!("unknown model {model_id:?} (not in the catalog)"),
        ));
    }
    let quality = match quality {
        Some(q) if q.is_finite() && (0.0..=1.0).contains(&q) => q,
        Some(q) => return Err(bad("quality", format!("must be in [0, 1], got {q}"))),
        None => f64::from(u8::from(success)),
    };
    let cost = cost_usd
        .map(|c| {
            Micros::from_usd(c).ok_or_else(|| {
                bad(
                    "cost_usd",
                    format!("must be a finite, non-negative amount, got {c}"),
                )
            })
        })
        .transpose()?;
    let error = match enum_value::<proto::ErrorKind>("error", error)? {
        proto::ErrorKind::Unspecified => ErrorKind::None,
        proto::ErrorKind::Timeout => ErrorKind::Timeout,
        proto::ErrorKind::RateLimited => ErrorKind::RateLimited,
        proto::ErrorKind::ServerError => ErrorKind::ServerError,
        proto::ErrorKind::Refusal => ErrorKind::Refusal,
        proto::ErrorKind::SchemaViolation => ErrorKind::SchemaViolation,
    };
    if success && error != ErrorKind::None {
        return Err(bad(
            "error",
            "a successful outcome cannot carry an error kind",
        ));
    }
    Ok(OutcomeInput {
        decision_id,
        model_id,
        success,
        quality,
        latency_ms,
        tokens_in,
        tokens_out,
        cost,
        error,
        attempt,
    })
}

fn timestamp() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Shared {
    /// The whole Route path after validation: decide, track, reserve budget, log.
    pub async fn route(&self, input: RouteInput) -> Result<Routed, ApiError> {
        // Refuse before holding budget or tracking a decision the log could not keep.
        self.ensure_log_writable()?;
        let live = self.live.load_full();
        let engine = &live.engine;
        let policy = engine.policy();
        let decision_id = uuid::Uuid::now_v7().to_string();
        let state = RuntimeState {
            budgets: &self.budgets,
            circuits: &self.circuits,
        };
        let payer = self.budgets.payer(&input.tenant_id, &input.user_id);
        let ttl = Duration::from_secs(policy.budgets.in_flight_ttl_secs);
        let (mut decision, probe) = self
            .decide_claiming_probe(&decision_id, &input, engine, &state)
            .await?;
        let now = Instant::now();
        let reservation = if decision.budget_limited {
            self.budgets
                .reserve(&payer, decision.estimated_cost, ttl, now)
        } else {
            match self.budgets.reserve_if_within(
                policy,
                &payer,
                decision.estimated_cost,
                ttl,
                now,
                Utc::now(),
            ) {
                Ok(r) => r,
                // Concurrent requests reached a cap since the check: decide again under it
                // (downgrade or deny, as the policy says).
                Err(_) => {
                    if probe == ProbeClaim::Spent {
                        let primary = policy.model(decision.primary);
                        self.circuits.release_probe(
                            &policy.circuit,
                            &primary.id,
                            &primary.provider,
                        );
                    }
                    decision = self
                        .decide_claiming_probe(&decision_id, &input, engine, &state)
                        .await?
                        .0;
                    self.budgets
                        .reserve(&payer, decision.estimated_cost, ttl, now)
                }
            }
        };
        self.stats.record(&decision, policy);
        self.tracker.insert(
            &decision_id,
            TrackedDecision {
                payer,
                created: now,
                reservation,
                reported: 0,
            },
        );
        self.log
            .append(LogRecord::Decision(Box::new(decision_record(
                &decision_id,
                &input,
                &decision,
                policy,
            ))))
            .await?;
        Ok(Routed {
            decision_id,
            decision,
            live,
        })
    }

    /// `UNAVAILABLE` while the decision log is retrying a failed write.
    fn ensure_log_writable(&self) -> Result<(), ApiError> {
        if self.log.writable() {
            Ok(())
        } else {
            Err(ApiError::Log(LogError::Unwritable))
        }
    }

    /// The engine's decision, holding a probe of its primary's half-open breaker. Concurrent
    /// requests may all have read a free probe; those that find it taken decide again (the
    /// breaker now reads as open for them), at most [`PROBE_RETRIES`] times. The last decision
    /// stands even if its probe is taken: the engine chose it with every alternative ruled
    /// out (an open breaker relaxed, with a reason).
    async fn decide_claiming_probe(
        &self,
        decision_id: &str,
        input: &RouteInput,
        engine: &DecisionEngine,
        state: &RuntimeState<'_>,
    ) -> Result<(Decision, ProbeClaim), ApiError> {
        let policy = engine.policy();
        let mut round = 0;
        loop {
            let decision = self
                .decide_or_log_refusal(decision_id, input, engine, state)
                .await?;
            let primary = policy.model(decision.primary);
            let claim = self.circuits.claim_probe(
                &policy.circuit,
                &primary.id,
                &primary.provider,
                Instant::now(),
            );
            if claim != ProbeClaim::Taken || round == PROBE_RETRIES {
                return Ok((decision, claim));
            }
            round += 1;
        }
    }

    /// The engine's decision; a refusal (budget denial, unsatisfiable request) is logged as a
    /// decision too before it is returned.
    async fn decide_or_log_refusal(
        &self,
        decision_id: &str,
        input: &RouteInput,
        engine: &DecisionEngine,
        state: &RuntimeState<'_>,
    ) -> Result<Decision, ApiError> {
        match engine.decide(input, state, Utc::now(), Instant::now()) {
            Ok(d) => Ok(d),
            Err(e) => {
                self.log
                    .append(LogRecord::Decision(Box::new(refusal_record(
                        decision_id,
                        input,
                        engine.policy(),
                        &e,
                    ))))
                    .await?;
                Err(e.into())
            }
        }
    }

    /// The whole ReportOutcome path after validation.
    pub async fn report(&self, o: OutcomeInput) -> Result<proto::OutcomeAck, ApiError> {
        // Refuse before booking spend the log could not keep (the caller retries later).
        self.ensure_log_writable()?;
        let live = self.live.load();
        let policy = live.engine.policy();
        let Some(spec) = policy.find_model(&o.model_id).map(|m| policy.model(m)) else {
            return Err(bad("model_id", format!("unknown model {:?}", o.model_id)));
        };
        let claim = self
            .tracker
            .claim(&o.decision_id, o.attempt)
            .ok_or_else(|| ApiError::NotFound {
                field: "decision_id",
                message: format!(
                    "no recent decision {:?} (unknown or expired)",
                    o.decision_id
                ),
            })?;
        let tracked = match claim {
            Claim::Book(t) => t,
            // A retried report: acknowledged again, nothing booked, counted or logged twice.
            Claim::Repeat => {
                return Ok(proto::OutcomeAck {
                    decision_id: o.decision_id,
                    cost_usd: 0.0,
                    circuit_state: self
                        .circuits
                        .state_name(&policy.circuit, &spec.id)
                        .to_string(),
                    duplicate: true,
                });
            }
        };
        let cost = o
            .cost
            .unwrap_or_else(|| spec.cost(u64::from(o.tokens_in), u64::from(o.tokens_out)));
        let now = Utc::now();
        self.budgets
            .settle(&tracked.payer, tracked.reservation, cost, now);
        let circuit_state = self.circuits.record(
            &policy.circuit,
            &spec.id,
            &spec.provider,
            o.error,
            Instant::now(),
        );
        self.log
            .append(LogRecord::Outcome(OutcomeRecord {
                schema: SCHEMA_VERSION,
                ts: now.to_rfc3339_opts(SecondsFormat::Millis, true),
                decision_id: o.decision_id.clone(),
                tenant_id: tracked.payer.tenant_id().to_string(),
                user_id: tracked.payer.user_id().to_string(),
                model_id: o.model_id,
                success: o.success,
                quality: o.quality,
                latency_ms: o.latency_ms,
                tokens_in: o.tokens_in,
                tokens_out: o.tokens_out,
                cost_usd: cost.usd(),
                error: o.error.as_str().to_string(),
                attempt: o.attempt,
            }))
            .await?;
        Ok(proto::OutcomeAck {
            decision_id: o.decision_id,
            cost_usd: cost.usd(),
            circuit_state: circuit_state.to_string(),
            duplicate: false,
        })
    }
}

fn base_record(decision_id: &str, input: &RouteInput, policy: &Policy) -> DecisionRecord {
    DecisionRecord {
        schema: SCHEMA_VERSION,
        ts: timestamp(),
        decision_id: decision_id.to_string(),
        request_id: input.request_id.clone(),
        tenant_id: input.tenant_id.clone(),
        user_id: input.user_id.clone(),
        task: input.task_hint.map_or("", |t| t.as_str()).to_string(),
        category: input.category.clone(),
        task_source: if input.task_hint.is_some() {
            "hint"
        } else {
            ""
        }
        .to_string(),
        data_class: input.data_class.as_str().to_string(),
        mode: input.mode.as_str().to_string(),
        risk_tier: String::new(),
        prompt: None,
        prompt_chars: 0,
        prompt_tokens_est: 0,
        pii: Vec::new(),
        capabilities: input
            .capabilities
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        quality_preference: input.quality_preference,
        latency_budget_ms: input.latency_budget_ms,
        router: RouterKind::Rules.as_str().to_string(),
        primary: String::new(),
        fallbacks: Vec::new(),
        cascade: Vec::new(),
        shadow: None,
        predicted_quality: Vec::new(),
        quality_target: None,
        estimated_cost_usd: 0.0,
        policy_version: policy.version.clone(),
        model_version: String::new(),
        reasons: Vec::new(),
        denied: false,
    }
}

fn refusal_record(
    decision_id: &str,
    input: &RouteInput,
    policy: &Policy,
    error: &DecideError,
) -> DecisionRecord {
    let mut r = base_record(decision_id, input, policy);
    r.denied = true;
    r.reasons.push(match error {
        DecideError::BudgetDenied { policy_id, message } => crate::engine::Reason {
            policy_id: policy_id.clone(),
            message: message.clone(),
        },
        DecideError::NoEligibleModel(message) => crate::engine::Reason {
            policy_id: "no_eligible_model".into(),
            message: message.clone(),
        },
    });
    r
}

fn decision_record(
    decision_id: &str,
    input: &RouteInput,
    d: &Decision,
    policy: &Policy,
) -> DecisionRecord {
    let id = |m: usize| policy.model(m).id.clone();
    let mut r = base_record(decision_id, input, policy);
    r.task = d.task.as_str().to_string();
    r.task_source = match d.task_source {
        crate::engine::TaskSource::Hint => "hint",
        crate::engine::TaskSource::Detected => "detected",
    }
    .to_string();
    r.data_class = d.effective_data_class.as_str().to_string();
    r.risk_tier = d.risk_tier.as_str().to_string();
    r.prompt = d.loggable_prompt.clone();
    r.prompt_chars = d.prompt_chars;
    r.prompt_tokens_est = d.prompt_tokens;
    // Every kind the policy detects, in detector order, with its count (0: none found), so each
    // record has the same shape and a columnar reader (polars) infers the type from any line.
    r.pii = crate::pii::PiiKind::ALL
        .into_iter()
        .filter(|k| policy.pii_detectors.contains(k) || d.pii.iter().any(|(f, _)| f == k))
        .map(|kind| PiiCount {
            kind: kind.as_str().to_string(),
            count: d
                .pii
                .iter()
                .find(|(k, _)| *k == kind)
                .map_or(0, |&(_, n)| n),
        })
        .collect();
    r.router = d.router.as_str().to_string();
    r.primary = id(d.primary);
    r.fallbacks = d.fallbacks.iter().map(|&m| id(m)).collect();
    r.cascade = d.cascade.iter().map(|s| id(s.model)).collect();
    r.shadow = d
        .shadow
        .as_ref()
        .map(|s| crate::decision_log::ShadowRecord {
            router: s.router.as_str().to_string(),
            primary: id(s.primary),
            agrees: s.primary == d.primary,
        });
    r.predicted_quality = d
        .predicted_quality
        .iter()
        .map(|(model, p)| ModelQuality {
            model: model.clone(),
            p: *p,
        })
        .collect();
    r.estimated_cost_usd = d.estimated_cost.usd();
    r.quality_target = d.quality_target;
    r.policy_version = d.policy_version.clone();
    r.model_version = d.model_version.clone();
    r.reasons = d.reasons.clone();
    r
}

fn target(policy: &Policy, m: usize) -> proto::Target {
    let spec = policy.model(m);
    proto::Target {
        model_id: spec.id.clone(),
        provider: spec.provider.clone(),
        lane: spec.lane.as_str().to_string(),
        region: spec.region.clone(),
    }
}

fn proto_task(t: TaskType) -> proto::TaskType {
    match t {
        TaskType::Code => proto::TaskType::Code,
        TaskType::Math => proto::TaskType::Math,
        TaskType::Extraction => proto::TaskType::Extraction,
        TaskType::Classification => proto::TaskType::Classification,
        TaskType::Summarization => proto::TaskType::Summarization,
        TaskType::Chat => proto::TaskType::Chat,
        TaskType::Qa => proto::TaskType::Qa,
    }
}

fn proto_class(c: DataClass) -> proto::DataClass {
    match c {
        DataClass::Public => proto::DataClass::Public,
        DataClass::Internal => proto::DataClass::Internal,
        DataClass::Pii => proto::DataClass::Pii,
        DataClass::Regulated => proto::DataClass::Regulated,
    }
}

fn proto_router(r: RouterKind) -> proto::RouterKind {
    match r {
        RouterKind::Rules => proto::RouterKind::Rules,
        RouterKind::Learned => proto::RouterKind::Learned,
    }
}

fn proto_reasons(reasons: &[crate::engine::Reason]) -> Vec<proto::Reason> {
    reasons
        .iter()
        .map(|r| proto::Reason {
            policy_id: r.policy_id.clone(),
            message: r.message.clone(),
        })
        .collect()
}

/// Build the wire decision.
pub fn decision_response(
    decision_id: String,
    request_id: String,
    d: &Decision,
    policy: &Policy,
    server_time: Duration,
) -> proto::RouteDecision {
    proto::RouteDecision {
        decision_id,
        request_id,
        primary: Some(target(policy, d.primary)),
        fallbacks: d.fallbacks.iter().map(|&m| target(policy, m)).collect(),
        cascade: Some(proto::CascadePlan {
            enabled: !d.cascade.is_empty(),
            steps: d
                .cascade
                .iter()
                .map(|s| proto::CascadeStep {
                    target: Some(target(policy, s.model)),
                    escalate_on: s.escalate_on.clone(),
                })
                .collect(),
        }),
        retrieval: Some(match &d.retrieval {
            Some(r) => proto::RetrievalPlan {
                enabled: true,
                index: r.index.clone(),
                top_k: r.top_k,
                rerank: r.rerank,
            },
            None => proto::RetrievalPlan::default(),
        }),
        risk_tier: match d.risk_tier {
            RiskTier::Low => proto::RiskTier::Low,
            RiskTier::Elevated => proto::RiskTier::Elevated,
            RiskTier::High => proto::RiskTier::High,
        } as i32,
        risk_constraints: d.risk_constraints.clone(),
        task: proto_task(d.task) as i32,
        effective_data_class: proto_class(d.effective_data_class) as i32,
        pii: d
            .pii
            .iter()
            .map(|(k, n)| proto::PiiFinding {
                kind: k.as_str().to_string(),
                count: *n,
            })
            .collect(),
        reasons: proto_reasons(&d.reasons),
        estimated_cost_usd: d.estimated_cost.usd(),
        router: proto_router(d.router) as i32,
        policy_version: d.policy_version.clone(),
        model_version: d.model_version.clone(),
        shadow: d.shadow.as_ref().map(|s| proto::ShadowDecision {
            router: proto_router(s.router) as i32,
            primary: Some(target(policy, s.primary)),
            reasons: proto_reasons(&s.reasons),
            agrees: s.primary == d.primary,
        }),
        predicted_quality: d.predicted_quality.iter().cloned().collect(),
        server_time_us: u64::try_from(server_time.as_micros()).unwrap_or(u64::MAX),
        quality_target: d.quality_target,
        quality_margin: d.margin,
    }
}

/// The tonic service.
#[derive(Clone)]
pub struct RouterService {
    shared: Arc<Shared>,
}

impl RouterService {
    pub fn new(shared: Arc<Shared>) -> RouterService {
        RouterService { shared }
    }
}

#[tonic::async_trait]
impl proto::router_server::Router for RouterService {
    async fn route(
        &self,
        request: Request<proto::RouteRequest>,
    ) -> Result<Response<proto::RouteDecision>, Status> {
        let started = Instant::now();
        let input = {
            let live = self.shared.live.load();
            route_input(request.into_inner(), &live.engine)?
        };
        let request_id = input.request_id.clone();
        let routed = self.shared.route(input).await?;
        Ok(Response::new(decision_response(
            routed.decision_id,
            request_id,
            &routed.decision,
            routed.live.engine.policy(),
            started.elapsed(),
        )))
    }

    async fn report_outcome(
        &self,
        request: Request<proto::Outcome>,
    ) -> Result<Response<proto::OutcomeAck>, Status> {
        let outcome = {
            let live = self.shared.live.load();
            outcome_input(request.into_inner(), live.engine.policy())?
        };
        Ok(Response::new(self.shared.report(outcome).await?))
    }
}

/// The Admin service: reload and counters.
#[derive(Clone)]
pub struct AdminService {
    shared: Arc<Shared>,
}

impl AdminService {
    pub fn new(shared: Arc<Shared>) -> AdminService {
        AdminService { shared }
    }
}

#[tonic::async_trait]
impl proto::admin_server::Admin for AdminService {
    async fn reload(
        &self,
        request: Request<proto::ReloadRequest>,
    ) -> Result<Response<proto::ReloadReply>, Status> {
        let proto::ReloadRequest {} = request.into_inner();
        match crate::reload::reload(&self.shared).await {
            Ok(loaded) => Ok(Response::new(proto::ReloadReply {
                policy_version: loaded.policy_version,
                model_version: loaded.model_version,
                router_mode: loaded.mode,
            })),
            Err(e) => Err(Status::failed_precondition(e.to_string())),
        }
    }

    async fn stats(
        &self,
        request: Request<proto::StatsRequest>,
    ) -> Result<Response<proto::StatsReply>, Status> {
        let proto::StatsRequest {} = request.into_inner();
        let s = &self.shared.stats;
        let decisions = s
            .by_router_model
            .lock()
            .iter()
            .map(|((router, model), n)| proto::RouterModelCount {
                router: proto_router(*router) as i32,
                model_id: model.clone(),
                decisions: *n,
            })
            .collect();
        let loaded = crate::reload::describe(&self.shared.live.load());
        Ok(Response::new(proto::StatsReply {
            decisions,
            with_shadow: s.with_shadow.load(Ordering::Relaxed),
            shadow_agreements: s.shadow_agreements.load(Ordering::Relaxed),
            reloads: s.reloads.load(Ordering::Relaxed),
            failed_reloads: s.failed_reloads.load(Ordering::Relaxed),
            policy_version: loaded.policy_version,
            model_version: loaded.model_version,
        }))
    }
}

//! The decision path, top to bottom: inspect the prompt (PII, task, risk), filter the catalog by
//! hard and soft constraints, let the rule-based router choose, apply budgets, then build the
//! fallback chain, cascade and retrieval plans.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::budget::{BudgetLedger, BudgetVerdict};
use crate::circuit::{CircuitBreakers, Gate};
use crate::classify::{RiskDomain, TaskType, TextClassifier};
use crate::config::{LearnedMode, ModelIdx, OnExceeded, Policy, RetrievalPolicy};
use crate::domain::{Capability, DataClass, Mode, RiskTier, RouterKind};
use crate::learned::{LearnedError, LearnedRouter};
use crate::money::Micros;
use crate::pii::{PiiDetector, PiiKind};
use crate::rules::{self, RuleContext};

/// One chat message of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    Text(String),
    Messages(Vec<ChatMessage>),
}

impl Prompt {
    /// All prompt text, as scanned for PII and stored (redacted) in the log.
    pub fn full_text(&self) -> String {
        match self {
            Prompt::Text(t) => t.clone(),
            Prompt::Messages(m) => {
                let mut out = String::new();
                for msg in m {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(&msg.role);
                    out.push_str(": ");
                    out.push_str(&msg.content);
                }
                out
            }
        }
    }

    /// The text the task and risk are judged on: the last user message of a chat, or the text.
    pub fn task_text(&self) -> &str {
        match self {
            Prompt::Text(t) => t,
            Prompt::Messages(m) => m
                .iter()
                .rev()
                .find(|msg| msg.role == "user")
                .or(m.last())
                .map_or("", |msg| msg.content.as_str()),
        }
    }
}

/// A validated routing request.
#[derive(Debug, Clone)]
pub struct RouteInput {
    pub request_id: String,
    pub prompt: Prompt,
    pub task_hint: Option<TaskType>,
    pub tenant_id: String,
    pub user_id: String,
    pub data_class: DataClass,
    pub mode: Mode,
    /// `None` = the policy's SLO for the mode.
    pub latency_budget_ms: Option<u32>,
    pub capabilities: BTreeSet<Capability>,
    pub quality_preference: Option<f64>,
    pub metadata: BTreeMap<String, String>,
    /// The caller's category label (validated: a short `[A-Za-z0-9_.:/-]` string).
    pub category: Option<String>,
}

impl RouteInput {
    /// A public, interactive text request with no hints (used by the evaluation baseline).
    pub fn text(tenant: &str, prompt: &str) -> RouteInput {
        RouteInput {
            request_id: String::new(),
            prompt: Prompt::Text(prompt.to_string()),
            task_hint: None,
            tenant_id: tenant.to_string(),
            user_id: String::new(),
            data_class: DataClass::Public,
            mode: Mode::Interactive,
            latency_budget_ms: None,
            capabilities: BTreeSet::new(),
            quality_preference: None,
            metadata: BTreeMap::new(),
            category: None,
        }
    }
}

/// Why a decision was made; the same type as the logged reasons.
pub use signalbox_features::log_schema::Reason;

fn reason(policy_id: impl Into<String>, message: impl Into<String>) -> Reason {
    Reason {
        policy_id: policy_id.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CascadeStep {
    pub model: ModelIdx,
    pub escalate_on: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskSource {
    Hint,
    Detected,
}

/// The decision of the router that is not served, for comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Shadow {
    pub router: RouterKind,
    pub primary: ModelIdx,
    pub reasons: Vec<Reason>,
}

/// A complete, explained routing decision.
#[derive(Debug, Clone)]
pub struct Decision {
    /// A budget cap was already reached when deciding (the decision is a downgrade).
    pub budget_limited: bool,
    pub primary: ModelIdx,
    pub fallbacks: Vec<ModelIdx>,
    pub cascade: Vec<CascadeStep>,
    pub retrieval: Option<RetrievalPolicy>,
    pub risk_tier: RiskTier,
    pub risk_domains: Vec<RiskDomain>,
    pub risk_constraints: Vec<String>,
    pub task: TaskType,
    pub task_source: TaskSource,
    pub effective_data_class: DataClass,
    pub pii: Vec<(PiiKind, u32)>,
    pub reasons: Vec<Reason>,
    pub estimated_cost: Micros,
    pub router: RouterKind,
    pub policy_version: String,
    pub model_version: String,
    pub shadow: Option<Shadow>,
    pub predicted_quality: Vec<(String, f64)>,
    /// Learned router only: the quality target for the request's preference and its margin.
    pub quality_target: Option<f64>,
    pub margin: Option<f64>,
    /// The prompt as it may be logged: PII redacted, `None` when the data class forbids storing.
    pub loggable_prompt: Option<String>,
    pub prompt_chars: usize,
    pub prompt_tokens: u32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecideError {
    #[error("no model satisfies the request's hard constraints: {0}")]
    NoEligibleModel(String),
    #[error("{message} [{policy_id}]")]
    BudgetDenied { policy_id: String, message: String },
}

/// What the router knows about the request after inspecting it.
struct Inspection {
    effective_class: DataClass,
    pii: Vec<(PiiKind, u32)>,
    loggable_prompt: Option<String>,
    prompt_chars: usize,
    prompt_tokens: u32,
    task: TaskType,
    task_source: TaskSource,
    risk_domains: Vec<RiskDomain>,
    risk_tier: RiskTier,
    risk_constraints: Vec<String>,
    min_model_quality: f64,
}

/// The compiled, immutable part of routing: policy plus detectors. Swapped whole on reload.
pub struct DecisionEngine {
    policy: Policy,
    learned: Option<LearnedRouter>,
    pii: PiiDetector,
    classifier: TextClassifier,
}

/// Mutable routing state that outlives reloads: budgets and circuit breakers.
pub struct RuntimeState<'a> {
    pub budgets: &'a BudgetLedger,
    pub circuits: &'a CircuitBreakers,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Pii(#[from] crate::pii::PiiError),
    #[error(transparent)]
    Classify(#[from] crate::classify::ClassifyError),
    #[error(transparent)]
    Learned(#[from] LearnedError),
}

impl DecisionEngine {
    /// Compile the policy; with a `[learned]` section (not rules_only) also initialise the
    /// inference backend and load and validate the bundle.
    pub fn new(policy: Policy) -> Result<DecisionEngine, EngineError> {
        let learned = match &policy.learned {
            Some(l) if l.mode != LearnedMode::RulesOnly => {
                crate::learned::init_backend(&l.backend)?;
                Some(LearnedRouter::load(l, &policy)?)
            }
            _ => None,
        };
        Ok(DecisionEngine {
            learned,
            pii: PiiDetector::new(&policy.pii_detectors)?,
            classifier: TextClassifier::new()?,
            policy,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn learned(&self) -> Option<&LearnedRouter> {
        self.learned.as_ref()
    }

    /// The kinds of personal data or secrets the policy's detectors find by their shape in
    /// `label`, a short request field that is logged as given (the category); keyword-anchored
    /// detectors are not run ([`PiiDetector::scan_shapes`]).
    pub fn label_pii_kinds(&self, label: &str) -> Vec<PiiKind> {
        self.pii
            .scan_shapes(label)
            .counts()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// Decide. `now` is the wall clock used for budget periods, `mono` for circuit windows.
    pub fn decide(
        &self,
        input: &RouteInput,
        state: &RuntimeState<'_>,
        now: DateTime<Utc>,
        mono: Instant,
    ) -> Result<Decision, DecideError> {
        let policy = &self.policy;
        let mut reasons = Vec::new();

        // 1. Inspect the prompt.
        let seen = self.inspect(input, &mut reasons);

        // 2. Which models may serve this request at all, and which are preferable.
        let mut eligible = self.eligible_models(input, &seen, state, mono, &mut reasons)?;

        // 3. The rule-based router picks primary and fallbacks among the eligible models.
        let ctx = RuleContext {
            task: seen.task,
            mode: input.mode,
            data_class: seen.effective_class,
            risk_tier: seen.risk_tier,
            prompt_tokens: seen.prompt_tokens,
            quality_preference: input
                .quality_preference
                .unwrap_or(policy.defaults.quality_preference),
            capabilities: &input.capabilities,
            tenant: &input.tenant_id,
        };
        let rules_choice = rules::choose(policy, &ctx, &eligible);
        // The learned model's task: the caller's category, else the task (hint or detected).
        let task = input.category.as_deref().unwrap_or(seen.task.as_str());
        let learned = self.learned.as_ref().and_then(|l| {
            match l.predict(input.prompt.task_text(), Some(task)) {
                Ok(probs) => Some((l, probs)),
                Err(e) => {
                    tracing::warn!(error = %e, "learned prediction failed; the rules decide");
                    reasons.push(reason(
                        "learned.error",
                        format!("learned router unavailable for this request: {e}"),
                    ));
                    None
                }
            }
        });
        let learned_choice = learned.as_ref().and_then(|(l, probs)| {
            l.choose(policy, probs, &eligible, ctx.quality_preference, Some(task))
        });
        let predicted_quality: Vec<(String, f64)> = learned
            .as_ref()
            .map(|(l, probs)| {
                l.models()
                    .iter()
                    .zip(probs)
                    .map(|(&m, &p)| (policy.model(m).id.clone(), f64::from(p)))
                    .collect()
            })
            .unwrap_or_default();
        let learned_primary = self
            .learned
            .as_ref()
            .is_some_and(|l| l.mode() == LearnedMode::LearnedPrimary);
        if learned.is_some() && learned_choice.is_none() {
            reasons.push(reason(
                "learned.no_eligible_model",
                "the learned bundle knows none of the eligible models; the rules decide",
            ));
        }
        let rules_shadow = |c: &rules::Choice| Shadow {
            router: RouterKind::Rules,
            primary: c.primary,
            reasons: c.reasons.clone(),
        };
        let (router, mut primary, mut fallbacks, learned_cascade, target, shadow) =
            match learned_choice {
                Some(lc) if learned_primary => {
                    reasons.extend(lc.reasons);
                    (
                        RouterKind::Learned,
                        lc.primary,
                        lc.fallbacks,
                        Some(lc.cascade_first),
                        Some((lc.quality_target, lc.margin)),
                        Some(rules_shadow(&rules_choice)),
                    )
                }
                Some(lc) => {
                    reasons.extend(rules_choice.reasons);
                    (
                        RouterKind::Rules,
                        rules_choice.primary,
                        rules_choice.fallbacks,
                        None,
                        Some((lc.quality_target, lc.margin)),
                        Some(Shadow {
                            router: RouterKind::Learned,
                            primary: lc.primary,
                            reasons: lc.reasons,
                        }),
                    )
                }
                None => {
                    reasons.extend(rules_choice.reasons);
                    (
                        RouterKind::Rules,
                        rules_choice.primary,
                        rules_choice.fallbacks,
                        None,
                        None,
                        None,
                    )
                }
            };

        // 4. Budgets: estimated cost of the primary against tenant and user caps.
        let cost_of = |m: ModelIdx| {
            policy.model(m).cost(
                u64::from(seen.prompt_tokens),
                u64::from(policy.defaults.expected_output_tokens),
            )
        };
        let mut budget_limited = false;
        match state
            .budgets
            .check(policy, &input.tenant_id, &input.user_id, now)
        {
            BudgetVerdict::Within => {}
            BudgetVerdict::Exceeded {
                policy_id,
                message,
                action,
            } => match action {
                OnExceeded::Deny => {
                    return Err(DecideError::BudgetDenied { policy_id, message });
                }
                OnExceeded::Downgrade => {
                    budget_limited = true;
                    eligible.sort_by_key(|&m| (cost_of(m), m));
                    let cheapest = eligible[0];
                    if cost_of(cheapest) < cost_of(primary) {
                        reasons.push(reason(
                            policy_id,
                            format!(
                                "{message}: downgraded from {} to the cheapest eligible model {}",
                                policy.model(primary).id,
                                policy.model(cheapest).id
                            ),
                        ));
                        primary = cheapest;
                        fallbacks = eligible.iter().copied().filter(|&m| m != primary).collect();
                    } else {
                        reasons.push(reason(
                            policy_id,
                            format!(
                                "{message}: {} is already the cheapest eligible model",
                                policy.model(primary).id
                            ),
                        ));
                    }
                }
            },
        }

        // 5. Cascade (cheaper models first, escalate on named signals) where the mode allows it.
        let cascade = match &learned_cascade {
            // The learned plan is only valid for the primary it was made for (not after a
            // budget downgrade).
            Some(first) if router == RouterKind::Learned => {
                let first: Vec<ModelIdx> = first
                    .iter()
                    .copied()
                    .filter(|&m| cost_of(m) < cost_of(primary))
                    .collect();
                self.cascade_plan(input.mode, primary, &first, &cost_of, &mut reasons)
            }
            _ => self.cascade_plan(input.mode, primary, &eligible, &cost_of, &mut reasons),
        };

        // 6. Retrieval plan for the task.
        let retrieval = policy.retrieval.get(&seen.task).cloned();
        if let Some(plan) = &retrieval {
            reasons.push(reason(
                format!("retrieval.{}", seen.task.as_str()),
                format!(
                    "task {} retrieves top {} from index {}{}",
                    seen.task.as_str(),
                    plan.top_k,
                    plan.index,
                    if plan.rerank { " with reranking" } else { "" }
                ),
            ));
        }

        Ok(Decision {
            budget_limited,
            primary,
            fallbacks,
            estimated_cost: cost_of(primary),
            cascade,
            retrieval,
            risk_tier: seen.risk_tier,
            risk_domains: seen.risk_domains,
            risk_constraints: seen.risk_constraints,
            task: seen.task,
            task_source: seen.task_source,
            effective_data_class: seen.effective_class,
            pii: seen.pii,
            reasons,
            router,
            policy_version: policy.version.clone(),
            model_version: self
                .learned
                .as_ref()
                .map(|l| l.version().to_string())
                .unwrap_or_default(),
            shadow,
            predicted_quality,
            quality_target: target.map(|t| t.0),
            margin: target.map(|t| t.1),
            loggable_prompt: seen.loggable_prompt,
            prompt_chars: seen.prompt_chars,
            prompt_tokens: seen.prompt_tokens,
        })
    }

    fn inspect(&self, input: &RouteInput, reasons: &mut Vec<Reason>) -> Inspection {
        let policy = &self.policy;
        let text = input.prompt.full_text();

        // Data class: raised by detected PII or secrets, never lowered.
        let scan = self.pii.scan(&text);
        let pii = scan.counts();
        let mut effective_class = input.data_class;
        if !pii.is_empty() {
            let has_secret = pii.iter().any(|(k, _)| *k == PiiKind::Secret);
            let has_personal = pii.iter().any(|(k, _)| *k != PiiKind::Secret);
            let mut raise = effective_class;
            if has_personal {
                raise = raise.max(policy.pii_raise_to);
            }
            if has_secret {
                raise = raise.max(policy.secret_raise_to);
            }
            let found = pii
                .iter()
                .map(|(k, n)| format!("{}×{n}", k.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            if raise > effective_class {
                reasons.push(reason(
                    "data_class.raised_by_pii",
                    format!(
                        "detected {found}: data class raised from {} to {}",
                        effective_class.as_str(),
                        raise.as_str()
                    ),
                ));
                effective_class = raise;
            } else {
                reasons.push(reason(
                    "data_class.pii_detected",
                    format!(
                        "detected {found}; data class {} already covers it",
                        effective_class.as_str()
                    ),
                ));
            }
        }
        let loggable_prompt = policy
            .data_class(effective_class)
            .store_prompt
            .then(|| scan.redact(&text));

        // Task and high-stakes domains in one pass over the text; the caller's task hint wins.
        let (signals, text_domains) = self.classifier.analyze(input.prompt.task_text());
        let (task, task_source) = match input.task_hint {
            Some(t) => {
                reasons.push(reason(
                    "task.hint",
                    format!("task {} given by the caller", t.as_str()),
                ));
                (t, TaskSource::Hint)
            }
            None => {
                let t = signals.task;
                reasons.push(reason(
                    "task.detected",
                    format!("task detected from the text as {}", t.as_str()),
                ));
                (t, TaskSource::Detected)
            }
        };

        // Risk: domains from the text and the `domain` metadata hint.
        let mut domains: BTreeSet<RiskDomain> = text_domains.into_iter().collect();
        if let Some(hint) = input.metadata.get("domain") {
            domains.extend(hint.split(',').filter_map(|d| RiskDomain::parse(d.trim())));
        }
        let risk_domains: Vec<RiskDomain> = domains.into_iter().collect();
        let mut risk_tier = RiskTier::Low;
        let mut risk_constraints = Vec::new();
        let mut min_model_quality = 0.0;
        if let Some(tier) = policy
            .risk
            .iter()
            .find(|t| risk_domains.iter().any(|d| t.domains.contains(d)))
        {
            risk_tier = tier.tier;
            risk_constraints = tier.constraints.clone();
            min_model_quality = tier.min_model_quality;
            let names = risk_domains
                .iter()
                .filter(|d| tier.domains.contains(d))
                .map(|d| d.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            reasons.push(reason(
                tier.policy_id.clone(),
                format!(
                    "high-stakes domain ({names}): risk tier {}{}",
                    tier.tier.as_str(),
                    if tier.min_model_quality > 0.0 {
                        format!(", models of quality ≥ {}", tier.min_model_quality)
                    } else {
                        String::new()
                    }
                ),
            ));
        }

        let prompt_chars = text.chars().count();
        let prompt_tokens = (prompt_chars as f64 / policy.defaults.chars_per_token).ceil() as u32;
        Inspection {
            effective_class,
            pii,
            loggable_prompt,
            prompt_chars,
            prompt_tokens,
            task,
            task_source,
            risk_domains,
            risk_tier,
            risk_constraints,
            min_model_quality,
        }
    }

    /// Hard filters (lane for the data class, capabilities, context window) must hold; soft
    /// filters (latency budget, risk-tier quality, open circuits) are relaxed, with a reason,
    /// when they would leave nothing.
    fn eligible_models(
        &self,
        input: &RouteInput,
        seen: &Inspection,
        state: &RuntimeState<'_>,
        mono: Instant,
        reasons: &mut Vec<Reason>,
    ) -> Result<Vec<ModelIdx>, DecideError> {
        let policy = &self.policy;
        let lanes = &policy.data_class(seen.effective_class).lanes;
        let needed_tokens = seen
            .prompt_tokens
            .saturating_add(policy.defaults.expected_output_tokens);
        let mut hard: Vec<ModelIdx> = Vec::with_capacity(policy.models.len());
        let mut by_lane = Vec::new();
        let mut by_caps = Vec::new();
        let mut by_ctx = Vec::new();
        for (i, m) in policy.models.iter().enumerate() {
            if !lanes.contains(&m.lane) {
                by_lane.push(m.id.as_str());
            } else if !input.capabilities.is_subset(&m.capabilities) {
                by_caps.push(m.id.as_str());
            } else if m.context_window < needed_tokens {
                by_ctx.push(m.id.as_str());
            } else {
                hard.push(i);
            }
        }
        if !by_lane.is_empty() {
            reasons.push(reason(
                format!("data_class.{}.lanes", seen.effective_class.as_str()),
                format!(
                    "data class {} may only use lanes [{}]: excluded {}",
                    seen.effective_class.as_str(),
                    lanes
                        .iter()
                        .map(|l| l.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    by_lane.join(", ")
                ),
            ));
        }
        if !by_caps.is_empty() {
            reasons.push(reason(
                "capabilities",
                format!(
                    "required capabilities [{}]: excluded {}",
                    input
                        .capabilities
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    by_caps.join(", ")
                ),
            ));
        }
        if !by_ctx.is_empty() {
            reasons.push(reason(
                "context_window",
                format!(
                    "~{needed_tokens} tokens needed: context window too small on {}",
                    by_ctx.join(", ")
                ),
            ));
        }
        if hard.is_empty() {
            return Err(DecideError::NoEligibleModel(format!(
                "data class {} (lanes {:?}), capabilities {:?}, ~{} tokens: excluded by lane {:?}, by capability {:?}, by context window {:?}",
                seen.effective_class.as_str(),
                lanes.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
                input
                    .capabilities
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>(),
                needed_tokens,
                by_lane,
                by_caps,
                by_ctx
            )));
        }

        let budget_ms = input.latency_budget_ms.unwrap_or(match input.mode {
            Mode::Interactive => policy.defaults.interactive_latency_slo_ms,
            Mode::Batch => policy.defaults.batch_latency_slo_ms,
        });
        let mut eligible = hard;
        soft_filter(
            &mut eligible,
            |m| policy.model(m).typical_latency_ms <= budget_ms,
            |out, kept| {
                let names = names(policy, out);
                if kept {
                    reason(
                        "latency_slo",
                        format!("latency budget {budget_ms} ms: excluded {names}"),
                    )
                } else {
                    reason(
                        "latency_slo.relaxed",
                        format!(
                            "no eligible model meets the latency budget of {budget_ms} ms; kept all"
                        ),
                    )
                }
            },
            reasons,
        );
        if seen.min_model_quality > 0.0 {
            let min = seen.min_model_quality;
            soft_filter(
                &mut eligible,
                |m| policy.model(m).quality >= min,
                |out, kept| {
                    let id = format!("risk.{}.min_model_quality", seen.risk_tier.as_str());
                    if kept {
                        reason(
                            id,
                            format!(
                                "risk tier {} needs quality ≥ {min}: excluded {}",
                                seen.risk_tier.as_str(),
                                names(policy, out)
                            ),
                        )
                    } else {
                        reason(
                            format!("{id}.relaxed"),
                            format!(
                                "no eligible model reaches quality {min} for risk tier {}; kept the eligible ones",
                                seen.risk_tier.as_str()
                            ),
                        )
                    }
                },
                reasons,
            );
        }
        let mut gates = BTreeMap::new();
        for &m in &eligible {
            let spec = policy.model(m);
            gates.insert(
                m,
                state
                    .circuits
                    .gate(&policy.circuit, &spec.id, &spec.provider, mono),
            );
        }
        soft_filter(
            &mut eligible,
            |m| !matches!(gates.get(&m), Some(Gate::Open { .. })),
            |out, kept| {
                let detail = out
                    .iter()
                    .filter_map(|m| match gates.get(m) {
                        Some(Gate::Open { scope }) => {
                            Some(format!("{} ({scope})", policy.model(*m).id))
                        }
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                if kept {
                    reason(
                        "circuit_breaker.open",
                        format!("circuit open, skipped: {detail}"),
                    )
                } else {
                    reason(
                        "circuit_breaker.all_open",
                        format!(
                            "every eligible model has an open circuit ({detail}); routing anyway"
                        ),
                    )
                }
            },
            reasons,
        );
        for (&m, gate) in &gates {
            if matches!(gate, Gate::HalfOpen) && eligible.contains(&m) {
                reasons.push(reason(
                    "circuit_breaker.half_open",
                    format!(
                        "circuit half-open for {}: this request may serve as the probe",
                        policy.model(m).id
                    ),
                ));
            }
        }
        Ok(eligible)
    }

    fn cascade_plan(
        &self,
        mode: Mode,
        primary: ModelIdx,
        eligible: &[ModelIdx],
        cost_of: &dyn Fn(ModelIdx) -> Micros,
        reasons: &mut Vec<Reason>,
    ) -> Vec<CascadeStep> {
        let policy = &self.policy;
        let enabled = match mode {
            Mode::Batch => policy.cascade.batch,
            Mode::Interactive => policy.cascade.interactive,
        };
        if !enabled {
            return Vec::new();
        }
        let primary_cost = cost_of(primary);
        let mut cheaper: Vec<ModelIdx> = eligible
            .iter()
            .copied()
            .filter(|&m| m != primary && cost_of(m) < primary_cost)
            .collect();
        if cheaper.is_empty() {
            return Vec::new();
        }
        cheaper.sort_by_key(|&m| (cost_of(m), m));
        cheaper.truncate(policy.cascade.max_steps - 1);
        let mut steps: Vec<CascadeStep> = cheaper
            .into_iter()
            .map(|m| CascadeStep {
                model: m,
                escalate_on: policy.cascade.escalate_on.clone(),
            })
            .collect();
        steps.push(CascadeStep {
            model: primary,
            escalate_on: Vec::new(),
        });
        reasons.push(reason(
            format!("cascade.{}", mode.as_str()),
            format!(
                "{} mode: try {} first, escalate on [{}] up to {}",
                mode.as_str(),
                policy.model(steps[0].model).id,
                policy.cascade.escalate_on.join(", "),
                policy.model(primary).id
            ),
        ));
        steps
    }
}

fn names(policy: &Policy, models: &[ModelIdx]) -> String {
    models
        .iter()
        .map(|&m| policy.model(m).id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Keep the models passing `keep`; if that would leave none, keep all. `explain(removed, kept)`
/// is called when anything was (or would have been) removed.
fn soft_filter(
    models: &mut Vec<ModelIdx>,
    keep: impl Fn(ModelIdx) -> bool,
    explain: impl Fn(&[ModelIdx], bool) -> Reason,
    reasons: &mut Vec<Reason>,
) {
    let (pass, fail): (Vec<ModelIdx>, Vec<ModelIdx>) = models.iter().partition(|&&m| keep(m));
    if fail.is_empty() {
        return;
    }
    if pass.is_empty() {
        reasons.push(explain(&fail, false));
    } else {
        reasons.push(explain(&fail, true));
        *models = pass;
    }
}

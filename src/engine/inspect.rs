//! Stage 1, inspect: what the request is before any model is considered. Detected PII or
//! secrets raise the data class (never lower it) and decide whether, and how redacted, the
//! prompt may be logged; the task comes from the caller's hint or the text; high-stakes domains
//! (from the text and the `domain` metadata hint) set the risk tier.

use std::collections::BTreeSet;

use super::request::{RouteInput, TaskSource};
use crate::classify::TextClassifier;
use crate::config::Policy;
use crate::domain::{DataClass, PiiKind, Reason, RiskDomain, RiskTier, TaskType, reason};
use crate::pii::PiiDetector;

/// What the router knows about the request after inspecting it.
pub(super) struct Inspection {
    pub(super) effective_class: DataClass,
    pub(super) pii: Vec<(PiiKind, u32)>,
    pub(super) loggable_prompt: Option<String>,
    pub(super) prompt_chars: usize,
    pub(super) prompt_tokens: u32,
    pub(super) task: TaskType,
    pub(super) task_source: TaskSource,
    pub(super) risk_domains: Vec<RiskDomain>,
    pub(super) risk_tier: RiskTier,
    pub(super) risk_constraints: Vec<String>,
    pub(super) min_model_quality: f64,
}

pub(super) fn inspect(
    policy: &Policy,
    pii: &PiiDetector,
    classifier: &TextClassifier,
    input: &RouteInput,
    reasons: &mut Vec<Reason>,
) -> Inspection {
    let text = input.prompt.full_text();

    // Data class: raised by detected PII or secrets, never lowered.
    let scan = pii.scan(&text);
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
    let (signals, text_domains) = classifier.analyze(input.prompt.task_text());
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

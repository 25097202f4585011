//! Stage 4, choose: the rule-based router always decides; the learned router, when the policy
//! has one, predicts each model's chance of an acceptable answer and picks the cheapest model
//! within the quality target. The policy's learned mode says which of the two is served; the
//! other is the shadow, logged for comparison.

use super::inspect::Inspection;
use super::request::{RouteInput, Shadow};
use crate::config::{LearnedMode, ModelIdx, Policy};
use crate::domain::{Reason, RouterKind, reason};
use crate::learned::LearnedRouter;
use crate::rules::{self, RuleContext};
use crate::telemetry::phases::RoutePhases;

/// The served choice among the eligible models, before budgets.
pub(super) struct Chosen {
    pub(super) router: RouterKind,
    pub(super) primary: ModelIdx,
    pub(super) fallbacks: Vec<ModelIdx>,
    /// Learned primary only: the cheaper models worth trying first in a cascade.
    pub(super) learned_cascade: Option<Vec<ModelIdx>>,
    /// Learned router: the quality target for the request's preference, and its margin.
    pub(super) target: Option<(f64, f64)>,
    pub(super) shadow: Option<Shadow>,
    /// The learned router's predictions, by model id (empty without one).
    pub(super) predicted_quality: Vec<(String, f64)>,
}

pub(super) fn choose(
    policy: &Policy,
    learned: Option<&LearnedRouter>,
    input: &RouteInput,
    seen: &Inspection,
    eligible: &[ModelIdx],
    reasons: &mut Vec<Reason>,
    phases: &mut RoutePhases,
) -> Chosen {
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
    let rules_choice = rules::choose(policy, &ctx, eligible);
    // The learned model's task: the caller's category, else the task (hint or detected).
    let task = input.category.as_deref().unwrap_or(seen.task.as_str());
    let prediction =
        learned.and_then(
            |l| match l.predict_timed(input.prompt.task_text(), Some(task), phases) {
                Ok(probs) => Some((l, probs)),
                Err(e) => {
                    tracing::warn!(error = %e, "learned prediction failed; the rules decide");
                    reasons.push(reason(
                        "learned.error",
                        format!("learned router unavailable for this request: {e}"),
                    ));
                    None
                }
            },
        );
    let learned_choice = prediction.as_ref().and_then(|(l, probs)| {
        l.choose(policy, probs, eligible, ctx.quality_preference, Some(task))
    });
    let predicted_quality: Vec<(String, f64)> = prediction
        .as_ref()
        .map(|(l, probs)| {
            l.models()
                .iter()
                .zip(probs)
                .map(|(&m, &p)| (policy.model(m).id.clone(), f64::from(p)))
                .collect()
        })
        .unwrap_or_default();
    let learned_primary = learned.is_some_and(|l| l.mode() == LearnedMode::LearnedPrimary);
    if prediction.is_some() && learned_choice.is_none() {
        reasons.push(reason(
            "learned.no_eligible_model",
            "the learned bundle knows none of the eligible models; the rules decide",
        ));
    }
    match learned_choice {
        Some(lc) if learned_primary => {
            reasons.extend(lc.reasons);
            Chosen {
                router: RouterKind::Learned,
                primary: lc.primary,
                fallbacks: lc.fallbacks,
                learned_cascade: Some(lc.cascade_first),
                target: Some((lc.quality_target, lc.margin)),
                shadow: Some(Shadow {
                    router: RouterKind::Rules,
                    primary: rules_choice.primary,
                    reasons: rules_choice.reasons,
                }),
                predicted_quality,
            }
        }
        Some(lc) => {
            reasons.extend(rules_choice.reasons);
            Chosen {
                router: RouterKind::Rules,
                primary: rules_choice.primary,
                fallbacks: rules_choice.fallbacks,
                learned_cascade: None,
                target: Some((lc.quality_target, lc.margin)),
                shadow: Some(Shadow {
                    router: RouterKind::Learned,
                    primary: lc.primary,
                    reasons: lc.reasons,
                }),
                predicted_quality,
            }
        }
        None => {
            reasons.extend(rules_choice.reasons);
            Chosen {
                router: RouterKind::Rules,
                primary: rules_choice.primary,
                fallbacks: rules_choice.fallbacks,
                learned_cascade: None,
                target: None,
                shadow: None,
                predicted_quality,
            }
        }
    }
}

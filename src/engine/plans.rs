//! Stage 6, plans: what the caller does around the primary model. A cascade (cheaper models
//! first, escalating on named signals) where the mode allows it, the retrieval plan for the
//! task, and the estimated cost of the primary.

use super::choose::Chosen;
use super::request::CascadeStep;
use crate::config::{ModelIdx, Policy, RetrievalPolicy};
use crate::domain::{Mode, Reason, RouterKind, TaskType, reason};
use crate::money::Micros;

/// What a model is expected to cost for a prompt of `prompt_tokens` and the policy's expected
/// output length.
pub(super) fn estimated_cost(policy: &Policy, prompt_tokens: u32, m: ModelIdx) -> Micros {
    policy.model(m).cost(
        u64::from(prompt_tokens),
        u64::from(policy.defaults.expected_output_tokens),
    )
}

pub(super) struct Plans {
    pub(super) cascade: Vec<CascadeStep>,
    pub(super) retrieval: Option<RetrievalPolicy>,
    pub(super) estimated_cost: Micros,
}

pub(super) fn plans(
    policy: &Policy,
    mode: Mode,
    task: TaskType,
    prompt_tokens: u32,
    chosen: &Chosen,
    eligible: &[ModelIdx],
    reasons: &mut Vec<Reason>,
) -> Plans {
    let cost_of = |m: ModelIdx| estimated_cost(policy, prompt_tokens, m);
    let primary = chosen.primary;
    let cascade = match &chosen.learned_cascade {
        // The learned plan is only valid for the primary it was made for (not after a
        // budget downgrade).
        Some(first) if chosen.router == RouterKind::Learned => {
            let first: Vec<ModelIdx> = first
                .iter()
                .copied()
                .filter(|&m| cost_of(m) < cost_of(primary))
                .collect();
            cascade_plan(policy, mode, primary, &first, &cost_of, reasons)
        }
        _ => cascade_plan(policy, mode, primary, eligible, &cost_of, reasons),
    };
    let retrieval = policy.retrieval.get(&task).cloned();
    if let Some(plan) = &retrieval {
        reasons.push(reason(
            format!("retrieval.{}", task.as_str()),
            format!(
                "task {} retrieves top {} from index {}{}",
                task.as_str(),
                plan.top_k,
                plan.index,
                if plan.rerank { " with reranking" } else { "" }
            ),
        ));
    }
    Plans {
        cascade,
        retrieval,
        estimated_cost: cost_of(primary),
    }
}

/// Cheaper eligible models first, cheapest first, up to `cascade.max_steps - 1`, then the
/// primary; empty when the mode has no cascade or nothing is cheaper.
fn cascade_plan(
    policy: &Policy,
    mode: Mode,
    primary: ModelIdx,
    eligible: &[ModelIdx],
    cost_of: &dyn Fn(ModelIdx) -> Micros,
    reasons: &mut Vec<Reason>,
) -> Vec<CascadeStep> {
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

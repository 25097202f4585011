//! Stages 2 and 3: which catalog models may serve the request (hard filters, which must hold)
//! and which are preferable (soft filters, relaxed with a reason when they would leave nothing).

use std::collections::BTreeMap;
use std::time::Instant;

use super::inspect::Inspection;
use super::request::{DecideError, RouteInput};
use crate::circuit::{CircuitBreakers, Gate};
use crate::config::{ModelIdx, Policy};
use crate::domain::{Mode, Reason, reason};

/// Stage 2, hard filters: the models that may serve this request at all (lanes allowed for the
/// data class, required capabilities, context window). None left: the request cannot be served.
pub(super) fn hard(
    policy: &Policy,
    input: &RouteInput,
    seen: &Inspection,
    reasons: &mut Vec<Reason>,
) -> Result<Vec<ModelIdx>, DecideError> {
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
    Ok(hard)
}

/// Stage 3, soft filters: of the `hard`-eligible models, those that meet the latency budget,
/// the risk tier's minimum quality and have no open circuit. Each filter is relaxed, with a
/// reason, when it would leave nothing.
pub(super) fn soft(
    policy: &Policy,
    input: &RouteInput,
    seen: &Inspection,
    hard: Vec<ModelIdx>,
    circuits: &CircuitBreakers,
    mono: Instant,
    reasons: &mut Vec<Reason>,
) -> Vec<ModelIdx> {
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
            circuits.gate(&policy.circuit, &spec.id, &spec.provider, mono),
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
                    format!("every eligible model has an open circuit ({detail}); routing anyway"),
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
    eligible
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

//! The rule-based router: ordered, readable rules from the policy file; the first rule that
//! matches and has an eligible model wins; the unconditional default rule is last. It is the
//! permanent baseline the learned router is shadow-scored against.

use std::collections::BTreeSet;

use crate::config::{Condition, ModelIdx, Policy};
use crate::domain::Reason;

#[cfg(test)]
mod tests;
use crate::domain::TaskType;
use crate::domain::{Capability, DataClass, Mode, RiskTier};

/// What a rule condition can look at.
#[derive(Debug, Clone)]
pub struct RuleContext<'a> {
    pub task: TaskType,
    pub mode: Mode,
    pub data_class: DataClass,
    pub risk_tier: RiskTier,
    pub prompt_tokens: u32,
    pub quality_preference: f64,
    pub capabilities: &'a BTreeSet<Capability>,
    pub tenant: &'a str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub primary: ModelIdx,
    pub fallbacks: Vec<ModelIdx>,
    pub rule_id: String,
    pub reasons: Vec<Reason>,
}

/// Choose among `eligible` (non-empty). Rule targets that are not eligible are skipped in
/// order, so an ineligible route moves the primary to the rule's next fallback, and says so.
pub fn choose(policy: &Policy, ctx: &RuleContext<'_>, eligible: &[ModelIdx]) -> Choice {
    let mut reasons = Vec::new();
    for rule in &policy.rules {
        if !matches(&rule.when, ctx) {
            continue;
        }
        let usable: Vec<ModelIdx> = rule
            .targets
            .iter()
            .copied()
            .filter(|m| eligible.contains(m))
            .collect();
        let Some((&primary, rest)) = usable.split_first() else {
            reasons.push(Reason {
                policy_id: format!("rule.{}", rule.id),
                message: format!(
                    "rule {} matched but none of its models is eligible; trying the next rule",
                    rule.id
                ),
            });
            continue;
        };
        let what = if rule.description.is_empty() {
            String::new()
        } else {
            format!(" ({})", rule.description)
        };
        reasons.push(Reason {
            policy_id: format!("rule.{}", rule.id),
            message: format!(
                "rule {}{what} routes to {}",
                rule.id,
                policy.model(rule.targets[0]).id
            ),
        });
        if primary != rule.targets[0] {
            let skipped = rule
                .targets
                .iter()
                .take_while(|&&m| m != primary)
                .map(|&m| policy.model(m).id.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            reasons.push(Reason {
                policy_id: format!("rule.{}.fallback", rule.id),
                message: format!(
                    "{skipped} not eligible now: primary moved to fallback {}",
                    policy.model(primary).id
                ),
            });
        }
        let mut fallbacks: Vec<ModelIdx> = rest.to_vec();
        if fallbacks.is_empty() {
            // Keep a fallback when the rule's own are all excluded: the best other eligible model.
            fallbacks.extend(best_by_quality(policy, eligible, primary));
        }
        return Choice {
            primary,
            fallbacks,
            rule_id: rule.id.clone(),
            reasons,
        };
    }
    // No rule had an eligible model: take the highest-quality eligible model.
    let mut ranked: Vec<ModelIdx> = eligible.to_vec();
    ranked.sort_by(|&a, &b| {
        policy
            .model(b)
            .quality
            .total_cmp(&policy.model(a).quality)
            .then(a.cmp(&b))
    });
    let primary = ranked[0];
    reasons.push(Reason {
        policy_id: "rule.none_eligible".into(),
        message: format!(
            "no rule's models are eligible: routed to the best eligible model {}",
            policy.model(primary).id
        ),
    });
    Choice {
        primary,
        fallbacks: ranked[1..].to_vec(),
        rule_id: "none_eligible".into(),
        reasons,
    }
}

fn best_by_quality(policy: &Policy, eligible: &[ModelIdx], except: ModelIdx) -> Option<ModelIdx> {
    eligible
        .iter()
        .copied()
        .filter(|&m| m != except)
        .max_by(|&a, &b| {
            policy
                .model(a)
                .quality
                .total_cmp(&policy.model(b).quality)
                .then(b.cmp(&a))
        })
}

/// All present conditions must hold.
pub fn matches(when: &Condition, ctx: &RuleContext<'_>) -> bool {
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
    } = when;
    task.as_ref().is_none_or(|t| t.contains(&ctx.task))
        && mode.is_none_or(|m| m == ctx.mode)
        && data_class
            .as_ref()
            .is_none_or(|d| d.contains(&ctx.data_class))
        && risk_tier
            .as_ref()
            .is_none_or(|r| r.contains(&ctx.risk_tier))
        && min_prompt_tokens.is_none_or(|n| ctx.prompt_tokens >= n)
        && max_prompt_tokens.is_none_or(|n| ctx.prompt_tokens <= n)
        && min_quality_preference.is_none_or(|q| ctx.quality_preference >= q)
        && max_quality_preference.is_none_or(|q| ctx.quality_preference <= q)
        && capabilities
            .as_ref()
            .is_none_or(|c| c.iter().any(|cap| ctx.capabilities.contains(cap)))
        && tenant.as_ref().is_none_or(|t| t.contains(ctx.tenant))
}

//! Stage 5, budget: the tenant's and user's spend (reported costs plus the estimates of
//! decisions in flight) against their caps. Within: nothing changes. Over a cap: `deny`
//! refuses the request; `downgrade` switches to the cheapest eligible model and says so.
//! (Holding the estimate, atomically with a re-check, happens after the decision, in
//! `service.rs`.)

use chrono::{DateTime, Utc};

use super::choose::Chosen;
use super::plans::estimated_cost;
use super::request::DecideError;
use crate::budget::{BudgetVerdict, BudgetView};
use crate::config::{ModelIdx, OnExceeded, Policy};
use crate::domain::{Reason, reason};

/// Apply the budget verdict to `chosen`; `Ok(true)` when a cap was reached and the decision is a
/// downgrade (or already the cheapest). `eligible` is left sorted by cost after a downgrade.
#[allow(clippy::too_many_arguments)]
pub(super) fn apply(
    policy: &Policy,
    budgets: &dyn BudgetView,
    tenant_id: &str,
    user_id: &str,
    now: DateTime<Utc>,
    prompt_tokens: u32,
    eligible: &mut [ModelIdx],
    chosen: &mut Chosen,
    reasons: &mut Vec<Reason>,
) -> Result<bool, DecideError> {
    let (policy_id, message, action) = match budgets.check(policy, tenant_id, user_id, now) {
        BudgetVerdict::Within => return Ok(false),
        BudgetVerdict::Exceeded {
            policy_id,
            message,
            action,
        } => (policy_id, message, action),
    };
    match action {
        OnExceeded::Deny => Err(DecideError::BudgetDenied { policy_id, message }),
        OnExceeded::Downgrade => {
            let cost_of = |m: ModelIdx| estimated_cost(policy, prompt_tokens, m);
            eligible.sort_by_key(|&m| (cost_of(m), m));
            let primary = chosen.primary;
            let cheapest = eligible.first().copied().unwrap_or(primary);
            if cost_of(cheapest) < cost_of(primary) {
                reasons.push(reason(
                    policy_id,
                    format!(
                        "{message}: downgraded from {} to the cheapest eligible model {}",
                        policy.model(primary).id,
                        policy.model(cheapest).id
                    ),
                ));
                chosen.primary = cheapest;
                chosen.fallbacks = eligible
                    .iter()
                    .copied()
                    .filter(|&m| m != cheapest)
                    .collect();
            } else {
                reasons.push(reason(
                    policy_id,
                    format!(
                        "{message}: {} is already the cheapest eligible model",
                        policy.model(primary).id
                    ),
                ));
            }
            Ok(true)
        }
    }
}

//! The rule-based router as an offline baseline, for the training CLI's evaluation: the primary
//! model the service would pick for a public, interactive request with no hints.

use std::time::Instant;

use crate::budget::BudgetLedger;
use crate::circuit::CircuitBreakers;
use crate::config::Policy;
use crate::engine::{DecideError, DecisionEngine, EngineError, RouteInput, RuntimeState};

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Decide(#[from] DecideError),
}

/// Reusable offline rule router (no budgets, no open circuits).
pub struct RulesBaseline {
    engine: DecisionEngine,
    budgets: BudgetLedger,
    circuits: CircuitBreakers,
}

impl RulesBaseline {
    /// The policy's rules only: a `[learned]` section is ignored (its bundle need not exist,
    /// e.g. while training the bundle it names).
    pub fn new(policy: &Policy) -> Result<RulesBaseline, BaselineError> {
        let mut rules_only = policy.clone();
        rules_only.learned = None;
        Ok(RulesBaseline {
            engine: DecisionEngine::new(rules_only)?,
            budgets: BudgetLedger::new(),
            circuits: CircuitBreakers::new(),
        })
    }

    /// Primary model id for `prompt`.
    pub fn primary(&self, prompt: &str) -> Result<String, BaselineError> {
        let state = RuntimeState {
            budgets: &self.budgets,
            circuits: &self.circuits,
        };
        let input = RouteInput::text("offline-baseline", prompt);
        let d = self
            .engine
            .decide(&input, &state, chrono::Utc::now(), Instant::now())?;
        Ok(self.engine.policy().model(d.primary).id.clone())
    }
}

/// One-shot convenience: the rule-based primary for `prompt` under `policy`.
pub fn rules_primary(policy: &Policy, prompt: &str) -> Result<String, BaselineError> {
    RulesBaseline::new(policy)?.primary(prompt)
}

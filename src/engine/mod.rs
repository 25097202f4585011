//! The decision, as a sequence of named stages, each in its own file:
//!
//! 1. [`inspect`]: PII raises the data class, the task (hint or detected), the risk tier;
//! 2. [`filters::hard`]: lanes for the data class, capabilities, context window;
//! 3. [`filters::soft`]: latency budget, risk-tier quality, open circuits (relaxed with a reason);
//! 4. [`choose`]: the rule-based and the learned router, one served and the other as shadow;
//! 5. [`budget`]: over a cap, downgrade to the cheapest eligible model or deny;
//! 6. [`plans`]: cascade, retrieval, estimated cost.
//!
//! Every stage appends the reasons it has to the decision's list, in this order.

use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::budget::BudgetView;
use crate::circuit::CircuitBreakers;
use crate::classify::TextClassifier;
use crate::config::{LearnedMode, Policy};
use crate::learned::{LearnedError, LearnedRouter};
use crate::pii::{PiiDetector, PiiKind};
use crate::telemetry::phases::{Interval, RoutePhases};

mod budget;
mod choose;
mod filters;
mod inspect;
mod plans;
mod request;

pub use crate::domain::Reason;
pub use request::{
    CascadeStep, ChatMessage, DecideError, Decision, Prompt, RouteInput, Shadow, TaskSource,
};

/// The compiled, immutable part of routing: policy plus detectors. Swapped whole on reload.
pub struct DecisionEngine {
    policy: Policy,
    learned: Option<LearnedRouter>,
    pii: PiiDetector,
    classifier: TextClassifier,
}

/// Mutable routing state that outlives reloads: budgets and circuit breakers.
pub struct RuntimeState<'a> {
    pub budgets: &'a dyn BudgetView,
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
        self.decide_timed(input, state, now, mono, &mut RoutePhases::default())
    }

    /// [`DecisionEngine::decide`], noting when the inspect, featurize and inference phases ran.
    pub fn decide_timed(
        &self,
        input: &RouteInput,
        state: &RuntimeState<'_>,
        now: DateTime<Utc>,
        mono: Instant,
        phases: &mut RoutePhases,
    ) -> Result<Decision, DecideError> {
        let policy = &self.policy;
        let mut reasons = Vec::new();
        let started = Instant::now();
        let seen = inspect::inspect(policy, &self.pii, &self.classifier, input, &mut reasons);
        phases.inspect = Some(Interval::since(started));
        let hard = filters::hard(policy, input, &seen, &mut reasons)?;
        let mut eligible = filters::soft(
            policy,
            input,
            &seen,
            hard,
            state.circuits,
            mono,
            &mut reasons,
        );
        let mut chosen = choose::choose(
            policy,
            self.learned.as_ref(),
            input,
            &seen,
            &eligible,
            &mut reasons,
            phases,
        );
        let budget_limited = budget::apply(
            policy,
            state.budgets,
            &input.tenant_id,
            &input.user_id,
            now,
            seen.prompt_tokens,
            &mut eligible,
            &mut chosen,
            &mut reasons,
        )?;
        let plans = plans::plans(
            policy,
            input.mode,
            seen.task,
            seen.prompt_tokens,
            &chosen,
            &eligible,
            &mut reasons,
        );
        Ok(Decision {
            budget_limited,
            primary: chosen.primary,
            fallbacks: chosen.fallbacks,
            estimated_cost: plans.estimated_cost,
            cascade: plans.cascade,
            retrieval: plans.retrieval,
            risk_tier: seen.risk_tier,
            risk_domains: seen.risk_domains,
            risk_constraints: seen.risk_constraints,
            task: seen.task,
            task_source: seen.task_source,
            effective_data_class: seen.effective_class,
            pii: seen.pii,
            reasons,
            router: chosen.router,
            policy_version: policy.version.clone(),
            model_version: self
                .learned
                .as_ref()
                .map(|l| l.version().to_string())
                .unwrap_or_default(),
            shadow: chosen.shadow,
            predicted_quality: chosen.predicted_quality,
            quality_target: chosen.target.map(|t| t.0),
            margin: chosen.target.map(|t| t.1),
            loggable_prompt: seen.loggable_prompt,
            prompt_chars: seen.prompt_chars,
            prompt_tokens: seen.prompt_tokens,
        })
    }
}

//! What the engine is asked ([`RouteInput`], a validated request) and what it answers
//! ([`Decision`], complete and explained).

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{ModelIdx, RetrievalPolicy};
use crate::domain::{
    Capability, DataClass, Mode, PiiKind, Reason, RiskDomain, RiskTier, RouterKind, TaskType,
};
use crate::money::Micros;

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

/// Why there is no decision.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecideError {
    #[error("no model satisfies the request's hard constraints: {0}")]
    NoEligibleModel(String),
    #[error("{message} [{policy_id}]")]
    BudgetDenied { policy_id: String, message: String },
}

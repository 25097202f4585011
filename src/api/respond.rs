//! domain -> proto: the RouteDecision and the OutcomeAck sent back.

use std::time::Duration;

use crate::config::Policy;
use crate::domain::{DataClass, Reason, RiskTier, RouterKind, TaskType};
use crate::engine::Decision;
use crate::proto;
use crate::service::Acknowledged;

fn target(policy: &Policy, m: usize) -> proto::Target {
    let spec = policy.model(m);
    proto::Target {
        model_id: spec.id.clone(),
        provider: spec.provider.clone(),
        lane: spec.lane.as_str().to_string(),
        region: spec.region.clone(),
    }
}

fn proto_task(t: TaskType) -> proto::TaskType {
    match t {
        TaskType::Code => proto::TaskType::Code,
        TaskType::Math => proto::TaskType::Math,
        TaskType::Extraction => proto::TaskType::Extraction,
        TaskType::Classification => proto::TaskType::Classification,
        TaskType::Summarization => proto::TaskType::Summarization,
        TaskType::Chat => proto::TaskType::Chat,
        TaskType::Qa => proto::TaskType::Qa,
    }
}

fn proto_class(c: DataClass) -> proto::DataClass {
    match c {
        DataClass::Public => proto::DataClass::Public,
        DataClass::Internal => proto::DataClass::Internal,
        DataClass::Pii => proto::DataClass::Pii,
        DataClass::Regulated => proto::DataClass::Regulated,
    }
}

pub(super) fn proto_router(r: RouterKind) -> proto::RouterKind {
    match r {
        RouterKind::Rules => proto::RouterKind::Rules,
        RouterKind::Learned => proto::RouterKind::Learned,
    }
}

fn proto_reasons(reasons: &[Reason]) -> Vec<proto::Reason> {
    reasons
        .iter()
        .map(|r| proto::Reason {
            policy_id: r.policy_id.clone(),
            message: r.message.clone(),
        })
        .collect()
}

/// Build the wire decision.
pub fn decision_response(
    decision_id: String,
    request_id: String,
    d: &Decision,
    policy: &Policy,
    server_time: Duration,
) -> proto::RouteDecision {
    proto::RouteDecision {
        decision_id,
        request_id,
        primary: Some(target(policy, d.primary)),
        fallbacks: d.fallbacks.iter().map(|&m| target(policy, m)).collect(),
        cascade: Some(proto::CascadePlan {
            enabled: !d.cascade.is_empty(),
            steps: d
                .cascade
                .iter()
                .map(|s| proto::CascadeStep {
                    target: Some(target(policy, s.model)),
                    escalate_on: s.escalate_on.clone(),
                })
                .collect(),
        }),
        retrieval: Some(match &d.retrieval {
            Some(r) => proto::RetrievalPlan {
                enabled: true,
                index: r.index.clone(),
                top_k: r.top_k,
                rerank: r.rerank,
            },
            None => proto::RetrievalPlan::default(),
        }),
        risk_tier: match d.risk_tier {
            RiskTier::Low => proto::RiskTier::Low,
            RiskTier::Elevated => proto::RiskTier::Elevated,
            RiskTier::High => proto::RiskTier::High,
        } as i32,
        risk_constraints: d.risk_constraints.clone(),
        task: proto_task(d.task) as i32,
        effective_data_class: proto_class(d.effective_data_class) as i32,
        pii: d
            .pii
            .iter()
            .map(|(k, n)| proto::PiiFinding {
                kind: k.as_str().to_string(),
                count: *n,
            })
            .collect(),
        reasons: proto_reasons(&d.reasons),
        estimated_cost_usd: d.estimated_cost.usd(),
        router: proto_router(d.router) as i32,
        policy_version: d.policy_version.clone(),
        model_version: d.model_version.clone(),
        shadow: d.shadow.as_ref().map(|s| proto::ShadowDecision {
            router: proto_router(s.router) as i32,
            primary: Some(target(policy, s.primary)),
            reasons: proto_reasons(&s.reasons),
            agrees: s.primary == d.primary,
        }),
        predicted_quality: d.predicted_quality.iter().cloned().collect(),
        server_time_us: u64::try_from(server_time.as_micros()).unwrap_or(u64::MAX),
        quality_target: d.quality_target,
        quality_margin: d.margin,
    }
}

/// Build the wire acknowledgement of an outcome.
pub fn outcome_ack(ack: Acknowledged) -> proto::OutcomeAck {
    let Acknowledged {
        decision_id,
        cost,
        circuit_state,
        duplicate,
    } = ack;
    proto::OutcomeAck {
        decision_id,
        cost_usd: cost.usd(),
        circuit_state: circuit_state.to_string(),
        duplicate,
    }
}

//! After a Route or ReportOutcome: its metrics and its trace (when `[telemetry]` asks for
//! them). Labels and span attributes name models, tasks, tiers, classes and tenants (tenants the
//! policy does not name count as `other` in metrics); never prompts or user ids.

use std::sync::Arc;
use std::time::Instant;

use opentelemetry::KeyValue;

use super::{Acknowledged, ServiceError};
use crate::domain::ErrorKind;
use crate::engine::{DecideError, Decision, RouteInput};
use crate::state::{LiveState, Shared};
use crate::telemetry::Call;
use crate::telemetry::metrics::{DecisionLabels, OutcomeLabels, Refusal};
use crate::telemetry::phases::{Interval, RoutePhases};
use crate::telemetry::traces::{Child, Finished, Under};

/// The phases of a ReportOutcome.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ReportPhases {
    /// Matching the decision, booking the cost, feeding the breakers.
    pub book: Option<Interval>,
    pub log: Option<Interval>,
}

/// What a ReportOutcome's metrics and trace name.
pub(super) struct ReportSeen {
    pub decision_id: String,
    pub model_id: String,
    pub success: bool,
    pub error: ErrorKind,
}

fn rpc(method: &'static str) -> [KeyValue; 3] {
    [
        KeyValue::new("rpc.system", "grpc"),
        KeyValue::new("rpc.service", "signalbox.v1.Router"),
        KeyValue::new("rpc.method", method),
    ]
}

/// The Route's phase spans: inspect, policy (with featurize and inference inside it), log.
fn route_children(p: &RoutePhases) -> Vec<Child> {
    let mut children = Vec::with_capacity(5);
    let mut push = |name, interval: Option<Interval>, under| {
        if let Some(interval) = interval {
            children.push(Child {
                name,
                interval,
                under,
            });
        }
    };
    push("inspect", p.inspect, Under::Root);
    push("policy", p.policy, Under::Root);
    let inner = if p.policy.is_some() {
        Under::Child(usize::from(p.inspect.is_some()))
    } else {
        Under::Root
    };
    push("featurize", p.featurize, inner);
    push("inference", p.inference, inner);
    push("log", p.log, Under::Root);
    children
}

impl Shared {
    pub(super) fn observe_route(
        &self,
        call: &Call,
        decision_id: &str,
        input: &RouteInput,
        phases: &RoutePhases,
        result: &Result<(Decision, Arc<LiveState>), ServiceError>,
    ) {
        let telemetry = &self.telemetry;
        if !telemetry.is_on() {
            return;
        }
        let ended = Instant::now();
        let server_time = ended.saturating_duration_since(call.started.mono);
        let current;
        let live = match result {
            Ok((_, live)) => live,
            Err(_) => {
                current = self.live.load_full();
                &current
            }
        };
        let policy = live.engine.policy();
        let tenant = policy.metrics_tenant(&input.tenant_id);
        let mut attributes = Vec::with_capacity(14);
        attributes.extend(rpc("Route"));
        attributes.push(KeyValue::new(
            "signalbox.decision_id",
            decision_id.to_string(),
        ));
        attributes.push(KeyValue::new("signalbox.tenant", input.tenant_id.clone()));
        attributes.push(KeyValue::new(
            "signalbox.server_time_ms",
            server_time.as_secs_f64() * 1e3,
        ));
        let error = match result {
            Ok((d, _)) => {
                let model = policy.model(d.primary);
                let labels = DecisionLabels {
                    router: d.router.as_str(),
                    model: &model.id,
                    lane: model.lane.as_str(),
                    task: d.task.as_str(),
                    risk_tier: d.risk_tier.as_str(),
                    data_class: d.effective_data_class.as_str(),
                    shadow_agrees: d.shadow.as_ref().map(|s| s.primary == d.primary),
                    downgraded: d.budget_limited,
                    tenant,
                };
                if let Some(m) = &telemetry.metrics {
                    m.decided(&labels, phases, server_time.as_secs_f64());
                }
                if telemetry.tracer.is_some() {
                    attributes.extend([
                        KeyValue::new("signalbox.router", d.router.as_str()),
                        KeyValue::new("signalbox.model", model.id.clone()),
                        KeyValue::new("signalbox.lane", model.lane.as_str()),
                        KeyValue::new("signalbox.task", d.task.as_str()),
                        KeyValue::new("signalbox.risk_tier", d.risk_tier.as_str()),
                        KeyValue::new("signalbox.data_class", d.effective_data_class.as_str()),
                        KeyValue::new("signalbox.budget_downgrade", d.budget_limited),
                    ]);
                    if let Some(agrees) = labels.shadow_agrees {
                        attributes.push(KeyValue::new("signalbox.shadow_agrees", agrees));
                    }
                }
                None
            }
            Err(e) => {
                let refusal = match e {
                    ServiceError::Decide(DecideError::BudgetDenied { .. }) => {
                        Some(Refusal::BudgetDenied)
                    }
                    ServiceError::Decide(DecideError::NoEligibleModel(_)) => {
                        Some(Refusal::NoEligibleModel)
                    }
                    ServiceError::UnknownModel(_)
                    | ServiceError::DecisionNotFound(_)
                    | ServiceError::Log(_)
                    | ServiceError::State(_) => None,
                };
                if let (Some(m), Some(why)) = (&telemetry.metrics, refusal) {
                    m.refused(why, tenant, phases);
                }
                attributes.push(KeyValue::new(
                    "signalbox.data_class",
                    input.data_class.as_str(),
                ));
                if let Some(why) = refusal {
                    attributes.push(KeyValue::new("signalbox.refusal", why.as_str()));
                }
                Some(e.to_string())
            }
        };
        if let Some(tracer) = &telemetry.tracer {
            tracer.finish(Finished {
                name: "Route",
                started: call.started,
                ended,
                parent: call.parent.as_ref(),
                children: &route_children(phases),
                attributes,
                error,
            });
        }
    }

    pub(super) fn observe_report(
        &self,
        call: &Call,
        seen: &ReportSeen,
        phases: &ReportPhases,
        result: &Result<Acknowledged, ServiceError>,
    ) {
        let telemetry = &self.telemetry;
        if let (Some(m), Ok(ack)) = (&telemetry.metrics, result) {
            if ack.duplicate {
                m.duplicate_outcome();
            } else {
                m.outcome(&OutcomeLabels {
                    model: &seen.model_id,
                    success: seen.success,
                    error: seen.error.as_str(),
                    cost_usd: ack.cost.usd(),
                });
            }
        }
        let Some(tracer) = &telemetry.tracer else {
            return;
        };
        let ended = Instant::now();
        let mut attributes = Vec::with_capacity(9);
        attributes.extend(rpc("ReportOutcome"));
        attributes.extend([
            KeyValue::new("signalbox.decision_id", seen.decision_id.clone()),
            KeyValue::new("signalbox.model", seen.model_id.clone()),
            KeyValue::new("signalbox.success", seen.success),
            KeyValue::new("signalbox.error_kind", seen.error.as_str()),
            KeyValue::new(
                "signalbox.server_time_ms",
                ended
                    .saturating_duration_since(call.started.mono)
                    .as_secs_f64()
                    * 1e3,
            ),
        ]);
        if let Ok(ack) = result {
            attributes.push(KeyValue::new("signalbox.duplicate", ack.duplicate));
        }
        let children: Vec<Child> = [("book", phases.book), ("log", phases.log)]
            .into_iter()
            .filter_map(|(name, interval)| {
                interval.map(|interval| Child {
                    name,
                    interval,
                    under: Under::Root,
                })
            })
            .collect();
        tracer.finish(Finished {
            name: "ReportOutcome",
            started: call.started,
            ended,
            parent: call.parent.as_ref(),
            children: &children,
            attributes,
            error: result.as_ref().err().map(ToString::to_string),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn learned_phases_hang_under_policy_and_the_rest_under_the_root() {
        let t0 = Instant::now();
        let iv = |a: u64, b: u64| {
            Some(Interval {
                start: t0 + Duration::from_micros(a),
                end: t0 + Duration::from_micros(b),
            })
        };
        let phases = RoutePhases {
            inspect: iv(0, 10),
            featurize: iv(12, 20),
            inference: iv(20, 30),
            policy: iv(10, 40),
            log: iv(40, 50),
        };
        let shape: Vec<(&str, Under)> = route_children(&phases)
            .iter()
            .map(|c| (c.name, c.under))
            .collect();
        assert_eq!(
            shape,
            [
                ("inspect", Under::Root),
                ("policy", Under::Root),
                ("featurize", Under::Child(1)),
                ("inference", Under::Child(1)),
                ("log", Under::Root),
            ]
        );
        // Rules only: no learned phases.
        let rules = RoutePhases {
            featurize: None,
            inference: None,
            ..phases
        };
        assert_eq!(route_children(&rules).len(), 3);
    }
}

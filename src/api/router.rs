//! The Router service: Route and ReportOutcome, each authorize (role, tenant, rate limits:
//! [`crate::auth`]) -> validate -> service -> respond.

use std::sync::Arc;
use tonic::{Request, Response, Status};

use super::ApiError;
use super::respond::{decision_response, outcome_ack};
use super::validate::{outcome_input, route_input};
use crate::auth::Admission;
use crate::auth::Role;
use crate::fleet::{FleetError, OnUnavailable};
use crate::proto;
use crate::service::ServiceError;
use crate::state::Shared;
use crate::telemetry::Call;
use crate::telemetry::traces::remote_parent;

/// The tonic service.
#[derive(Clone)]
pub struct RouterService {
    shared: Arc<Shared>,
}

impl RouterService {
    pub fn new(shared: Arc<Shared>) -> RouterService {
        RouterService { shared }
    }

    /// The call starting now; with tracing on, the caller's `traceparent` is read; with a
    /// shared state, its deadline (no Redis call outlasts it).
    fn call(&self, metadata: &tonic::metadata::MetadataMap) -> Call {
        let mut call = Call::now();
        if self.shared.telemetry.tracer.is_some() {
            call.parent = remote_parent(metadata);
        }
        if self.shared.fleet.is_some() {
            call.deadline = metadata
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .and_then(grpc_timeout)
                .and_then(|t| call.started.mono.checked_add(t));
        }
        call
    }

    /// Take the call's rate-limit tokens: from this process's buckets, or the fleet's shared
    /// ones (while Redis is unreachable: each replica's share, or `UNAVAILABLE`, as
    /// `on_unavailable` says).
    async fn admit(&self, admission: &Admission, call: &Call) -> Result<(), Status> {
        if admission.is_empty() {
            return Ok(());
        }
        let auth = &self.shared.auth;
        let now = call.started.mono;
        let Some(fleet) = self.shared.fleet.as_deref() else {
            return Ok(auth.admit_local(admission, now, 1)?);
        };
        let local = fleet.on_unavailable() == OnUnavailable::Local;
        let hint = fleet.policy.replicas_hint;
        if !fleet.is_up() {
            return if local {
                Ok(auth.admit_local(admission, now, hint)?)
            } else {
                Err(ApiError::from(ServiceError::State(FleetError::Unavailable(
                    "answering UNAVAILABLE until Redis is back (on_unavailable = fail_closed)"
                        .into(),
                )))
                .into())
            };
        }
        match auth
            .admit_shared(admission, fleet, fleet.deadline(call.deadline))
            .await
        {
            Ok(verdict) => Ok(verdict?),
            Err(FleetError::Unavailable(_)) if local => Ok(auth.admit_local(admission, now, hint)?),
            Err(e) => Err(ApiError::from(ServiceError::State(e)).into()),
        }
    }
}

/// A `grpc-timeout` header value: up to 8 digits and a unit (H, M, S, m, u, n).
fn grpc_timeout(v: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    let unit = v.chars().last()?;
    let digits = &v[..v.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[tonic::async_trait]
impl proto::router_server::Router for RouterService {
    async fn route(
        &self,
        request: Request<proto::RouteRequest>,
    ) -> Result<Response<proto::RouteDecision>, Status> {
        let call = self.call(request.metadata());
        let started = call.started.mono;
        // Who may route for which tenant, and how often: before anything is decided.
        let (req, admission) = {
            let live = self.shared.live.load();
            let policy = live.engine.policy();
            let (_, extensions, mut req) = request.into_parts();
            let auth = &self.shared.auth;
            let caller = auth.authorize(&extensions, &policy.auth, Role::Route)?;
            auth.bind_tenant(&caller, &mut req.tenant_id)?;
            let admission = auth.admission(&caller, Some(&req.tenant_id), &policy.rate_limits);
            (req, admission)
        };
        self.admit(&admission, &call).await?;
        let input = route_input(req, &self.shared.live.load().engine)?;
        let request_id = input.request_id.clone();
        let routed = self
            .shared
            .route(input, &call)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(decision_response(
            routed.decision_id,
            request_id,
            &routed.decision,
            routed.live.engine.policy(),
            started.elapsed(),
        )))
    }

    async fn report_outcome(
        &self,
        request: Request<proto::Outcome>,
    ) -> Result<Response<proto::OutcomeAck>, Status> {
        let call = self.call(request.metadata());
        let (outcome, caller, admission) = {
            let live = self.shared.live.load();
            let policy = live.engine.policy();
            let (_, extensions, req) = request.into_parts();
            let auth = &self.shared.auth;
            let caller = auth.authorize(&extensions, &policy.auth, Role::Report)?;
            // The tenant whose rate applies: the key's, or without keys the decision's.
            let payer = match caller.tenant() {
                None if !policy.rate_limits.is_empty() => {
                    self.shared.tracker.payer_of(&req.decision_id)
                }
                Some(_) | None => None,
            };
            let tenant = caller.tenant().or(payer.as_ref().map(|p| p.tenant_id()));
            let admission = auth.admission(&caller, tenant, &policy.rate_limits);
            (outcome_input(req, policy)?, caller, admission)
        };
        self.admit(&admission, &call).await?;
        let ack = self
            .shared
            .report_for(outcome, caller.tenant(), &call)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(outcome_ack(ack)))
    }
}

#[cfg(test)]
mod tests {
    use super::grpc_timeout;
    use std::time::Duration;

    #[test]
    fn grpc_timeouts_parse_and_nonsense_is_ignored() {
        assert_eq!(grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "123456789m", "12x", "-1m", "1.5S", "5é", "é"] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
    }
}

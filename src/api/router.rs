//! The Router service: Route and ReportOutcome, each authorize (role, tenant, rate limits:
//! [`crate::auth`]) -> validate -> service -> respond.

use std::sync::Arc;
use tonic::{Request, Response, Status};

use super::ApiError;
use super::respond::{decision_response, outcome_ack};
use super::validate::{outcome_input, route_input};
use crate::auth::Role;
use crate::proto;
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

    /// The call starting now; with tracing on, the caller's `traceparent` is read.
    fn call(&self, metadata: &tonic::metadata::MetadataMap) -> Call {
        let mut call = Call::now();
        if self.shared.telemetry.tracer.is_some() {
            call.parent = remote_parent(metadata);
        }
        call
    }
}

#[tonic::async_trait]
impl proto::router_server::Router for RouterService {
    async fn route(
        &self,
        request: Request<proto::RouteRequest>,
    ) -> Result<Response<proto::RouteDecision>, Status> {
        let call = self.call(request.metadata());
        let started = call.started.mono;
        let input = {
            let live = self.shared.live.load();
            let policy = live.engine.policy();
            let (_, extensions, mut req) = request.into_parts();
            // Who may route for which tenant, and how often: before anything is decided.
            let auth = &self.shared.auth;
            let caller = auth.authorize(&extensions, &policy.auth, Role::Route)?;
            auth.bind_tenant(&caller, &mut req.tenant_id)?;
            auth.admit(&caller, Some(&req.tenant_id), &policy.rate_limits, started)?;
            route_input(req, &live.engine)?
        };
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
        let (outcome, caller) = {
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
            auth.admit(&caller, tenant, &policy.rate_limits, call.started.mono)?;
            (outcome_input(req, policy)?, caller)
        };
        let ack = self
            .shared
            .report_for(outcome, caller.tenant(), &call)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(outcome_ack(ack)))
    }
}

//! The Router service: Route and ReportOutcome, each validate -> service -> respond.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::ApiError;
use super::respond::{decision_response, outcome_ack};
use super::validate::{outcome_input, route_input};
use crate::proto;
use crate::state::Shared;

/// The tonic service.
#[derive(Clone)]
pub struct RouterService {
    shared: Arc<Shared>,
}

impl RouterService {
    pub fn new(shared: Arc<Shared>) -> RouterService {
        RouterService { shared }
    }
}

#[tonic::async_trait]
impl proto::router_server::Router for RouterService {
    async fn route(
        &self,
        request: Request<proto::RouteRequest>,
    ) -> Result<Response<proto::RouteDecision>, Status> {
        let started = Instant::now();
        let input = {
            let live = self.shared.live.load();
            route_input(request.into_inner(), &live.engine)?
        };
        let request_id = input.request_id.clone();
        let routed = self.shared.route(input).await.map_err(ApiError::from)?;
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
        let outcome = {
            let live = self.shared.live.load();
            outcome_input(request.into_inner(), live.engine.policy())?
        };
        let ack = self.shared.report(outcome).await.map_err(ApiError::from)?;
        Ok(Response::new(outcome_ack(ack)))
    }
}

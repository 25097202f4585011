//! The Admin service: Reload (policy and bundle, as one unit) and Stats (decision counters).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tonic::{Request, Response, Status};

use super::ApiError;
use super::respond::proto_router;
use crate::auth::Role;
use crate::proto;
use crate::state::Shared;

/// The Admin service: reload and counters.
#[derive(Clone)]
pub struct AdminService {
    shared: Arc<Shared>,
}

impl AdminService {
    pub fn new(shared: Arc<Shared>) -> AdminService {
        AdminService { shared }
    }
}

impl AdminService {
    /// Every Admin call needs the `admin` role (mode `api_key`), within the key's rate limit.
    fn authorize(&self, extensions: &tonic::Extensions) -> Result<(), ApiError> {
        let live = self.shared.live.load();
        let policy = live.engine.policy();
        let auth = &self.shared.auth;
        let caller = auth.authorize(extensions, &policy.auth, Role::Admin)?;
        Ok(auth.admit(
            &caller,
            None,
            &policy.rate_limits,
            std::time::Instant::now(),
        )?)
    }
}

#[tonic::async_trait]
impl proto::admin_server::Admin for AdminService {
    async fn reload(
        &self,
        request: Request<proto::ReloadRequest>,
    ) -> Result<Response<proto::ReloadReply>, Status> {
        self.authorize(request.extensions())?;
        let proto::ReloadRequest {} = request.into_inner();
        match crate::reload::reload(&self.shared).await {
            Ok(loaded) => Ok(Response::new(proto::ReloadReply {
                policy_version: loaded.policy_version,
                model_version: loaded.model_version,
                router_mode: loaded.mode,
            })),
            Err(e) => Err(ApiError::from(e).into()),
        }
    }

    async fn stats(
        &self,
        request: Request<proto::StatsRequest>,
    ) -> Result<Response<proto::StatsReply>, Status> {
        self.authorize(request.extensions())?;
        let proto::StatsRequest {} = request.into_inner();
        let s = &self.shared.stats;
        let decisions = s
            .by_router_model
            .lock()
            .iter()
            .map(|((router, model), n)| proto::RouterModelCount {
                router: proto_router(*router) as i32,
                model_id: model.clone(),
                decisions: *n,
            })
            .collect();
        let loaded = crate::reload::describe(&self.shared.live.load());
        Ok(Response::new(proto::StatsReply {
            decisions,
            with_shadow: s.with_shadow.load(Ordering::Relaxed),
            shadow_agreements: s.shadow_agreements.load(Ordering::Relaxed),
            reloads: s.reloads.load(Ordering::Relaxed),
            failed_reloads: s.failed_reloads.load(Ordering::Relaxed),
            policy_version: loaded.policy_version,
            model_version: loaded.model_version,
            auth_failures: self.shared.auth.failures.load(Ordering::Relaxed),
            permission_denied: self.shared.auth.denied.load(Ordering::Relaxed),
            rate_limited: self.shared.auth.rate_limited.load(Ordering::Relaxed),
        }))
    }
}

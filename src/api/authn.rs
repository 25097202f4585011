//! Authentication of every call to the Router and Admin services (and reflection, per
//! `[auth] reflection`): a tonic interceptor that checks `authorization: Bearer <key>` against
//! the live key ring and puts the [`Caller`] in the request's extensions for the handlers.
//! Refusals are `UNAUTHENTICATED` with one message for every cause, counted and logged (sampled)
//! with the key id when the key exists.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Request, Status};

use super::ApiError;
use crate::auth::{AuthError, AuthMode, Caller, ReflectionAccess};
use crate::state::Shared;

/// Which service an interceptor guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Router and Admin: always authenticated in mode `api_key`.
    Api,
    /// Server reflection: authenticated unless `[auth] reflection = "open"`.
    Reflection,
}

/// The interceptor. Reads the live policy on every call, so a reload switches mode and keys.
#[derive(Clone)]
pub struct Authenticate {
    shared: Arc<Shared>,
    target: Target,
}

impl Authenticate {
    pub fn new(shared: Arc<Shared>, target: Target) -> Authenticate {
        Authenticate { shared, target }
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let identity = {
            let live = self.shared.live.load();
            let auth = &live.engine.policy().auth;
            // Mode none: nothing to check, and nothing to insert (a handler that finds no
            // caller treats it as anonymous only while the live mode is still none).
            if auth.mode == AuthMode::None
                || (self.target == Target::Reflection && auth.reflection == ReflectionAccess::Open)
            {
                return Ok(request);
            }
            let header = request
                .metadata()
                .get("authorization")
                .map(|v| v.as_bytes());
            match auth.keys.authenticate(header, chrono::Utc::now()) {
                Ok(identity) => identity,
                Err(failure) => {
                    self.shared
                        .auth
                        .unauthenticated(&failure, request.remote_addr());
                    return Err(ApiError::from(AuthError::Unauthenticated).into());
                }
            }
        };
        request.extensions_mut().insert(Caller::Key(identity));
        Ok(request)
    }
}

//! The gRPC transport, and only that: [`validate`] turns a proto request into domain input,
//! [`crate::service`] does the work, [`respond`] turns the result back into proto; [`router`]
//! and [`admin`] are the tonic services. Every error reaches the caller through the one
//! exhaustive mapping below.

use tonic::Status;

use crate::decision_log::LogError;
use crate::engine::DecideError;
use crate::reload::ReloadError;
use crate::service::ServiceError;

pub mod admin;
pub mod respond;
pub mod router;
pub mod validate;

pub use admin::AdminService;
pub use respond::{decision_response, outcome_ack};
pub use router::RouterService;
pub use validate::{MAX_CATEGORY_DIGIT_RUN, outcome_input, route_input};

/// Everything a gRPC handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; `field` names the offending field.
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Reload(#[from] ReloadError),
}

pub(crate) fn bad(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidArgument {
        field,
        message: message.into(),
    }
}

/// The one mapping from errors to gRPC status codes; no wildcard arm, so a new error variant
/// anywhere below breaks the build until it is given a code here.
impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let message = e.to_string();
        match e {
            ApiError::InvalidArgument { .. } => Status::invalid_argument(message),
            ApiError::Service(e) => match e {
                ServiceError::UnknownModel(_) => Status::invalid_argument(message),
                ServiceError::DecisionNotFound(_) => Status::not_found(message),
                ServiceError::Decide(DecideError::BudgetDenied { .. }) => {
                    Status::resource_exhausted(message)
                }
                ServiceError::Decide(DecideError::NoEligibleModel(_)) => {
                    Status::failed_precondition(message)
                }
                ServiceError::Log(LogError::Closed | LogError::Unwritable) => {
                    Status::unavailable(message)
                }
                ServiceError::Log(LogError::Io { .. } | LogError::WriterPanicked) => {
                    Status::internal(message)
                }
            },
            ApiError::Reload(e) => match e {
                // The running policy keeps serving; the file (or the way the server was
                // started) must change before a reload can succeed.
                ReloadError::NoConfigFile
                | ReloadError::Config(_)
                | ReloadError::Engine(_)
                | ReloadError::LogDirChanged { .. } => Status::failed_precondition(message),
                // The reload task itself failed (panicked or was cancelled): our fault.
                ReloadError::Join(_) => Status::internal(message),
            },
        }
    }
}

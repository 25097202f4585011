//! The gRPC transport, and only that: [`validate`] turns a proto request into domain input,
//! [`crate::service`] does the work, [`respond`] turns the result back into proto; [`router`]
//! and [`admin`] are the tonic services. Every error reaches the caller through the one
//! exhaustive mapping below.

use tonic::Status;

use crate::auth::{AuthError, retry_after_ms};
use crate::decision_log::LogError;
use crate::engine::DecideError;
use crate::fleet::FleetError;
use crate::reload::ReloadError;
use crate::service::ServiceError;

pub mod admin;
pub mod authn;
pub mod limits;
pub mod observe;
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
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// The metadata key of a rate-limit refusal's delay, in milliseconds (beside the
/// `google.rpc.RetryInfo` detail).
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

pub(crate) fn bad(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidArgument {
        field,
        message: message.into(),
    }
}

/// Refusals of the authentication layer take the one mapping below.
impl From<AuthError> for Status {
    fn from(e: AuthError) -> Status {
        ApiError::from(e).into()
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
                ServiceError::State(FleetError::Unavailable(_)) => Status::unavailable(message),
                ServiceError::State(FleetError::Deadline) => Status::deadline_exceeded(message),
                ServiceError::State(FleetError::Protocol(_) | FleetError::Client(_)) => {
                    Status::internal(message)
                }
            },
            ApiError::Reload(e) => match e {
                // The running policy keeps serving; the file (or the way the server was
                // started) must change before a reload can succeed.
                ReloadError::NoConfigFile
                | ReloadError::Config(_)
                | ReloadError::Engine(_)
                | ReloadError::LogDirChanged { .. }
                | ReloadError::LearnedRequired(_)
                | ReloadError::TlsToggled(_)
                | ReloadError::NoAuthOffLoopback => Status::failed_precondition(message),
                // The reload task itself failed (panicked or was cancelled): our fault.
                ReloadError::Join(_) => Status::internal(message),
            },
            ApiError::Auth(AuthError::Unauthenticated) => Status::unauthenticated(message),
            ApiError::Auth(AuthError::PermissionDenied(_)) => Status::permission_denied(message),
            ApiError::Auth(AuthError::RateLimited { retry_after, .. }) => {
                use tonic_types::{ErrorDetails, StatusExt};
                let mut status = Status::with_error_details(
                    tonic::Code::ResourceExhausted,
                    message,
                    ErrorDetails::with_retry_info(Some(retry_after)),
                );
                status.metadata_mut().insert(
                    RETRY_AFTER_MS,
                    tonic::metadata::MetadataValue::from(retry_after_ms(retry_after)),
                );
                status
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn code(e: impl Into<ApiError>) -> Code {
        Status::from(e.into()).code()
    }

    #[test]
    fn every_error_has_its_status_code() {
        assert_eq!(code(bad("text", "prompt is empty")), Code::InvalidArgument);
        assert_eq!(
            code(ServiceError::UnknownModel("m".into())),
            Code::InvalidArgument
        );
        assert_eq!(
            code(ServiceError::DecisionNotFound("d".into())),
            Code::NotFound
        );
        assert_eq!(
            code(ServiceError::Decide(DecideError::BudgetDenied {
                policy_id: "budget.tenant.daily".into(),
                message: "over".into(),
            })),
            Code::ResourceExhausted
        );
        assert_eq!(
            code(ServiceError::Decide(DecideError::NoEligibleModel(
                "x".into()
            ))),
            Code::FailedPrecondition
        );
        assert_eq!(code(ServiceError::Log(LogError::Closed)), Code::Unavailable);
        assert_eq!(
            code(ServiceError::Log(LogError::Unwritable)),
            Code::Unavailable
        );
        assert_eq!(
            code(ServiceError::Log(LogError::WriterPanicked)),
            Code::Internal
        );
        assert_eq!(
            code(ServiceError::State(FleetError::Unavailable("down".into()))),
            Code::Unavailable
        );
        assert_eq!(
            code(ServiceError::State(FleetError::Deadline)),
            Code::DeadlineExceeded
        );
        assert_eq!(
            code(ServiceError::State(FleetError::Protocol("x".into()))),
            Code::Internal
        );
        assert_eq!(code(ReloadError::NoConfigFile), Code::FailedPrecondition);
        assert_eq!(
            code(ReloadError::LogDirChanged {
                from: "a".into(),
                to: "b".into(),
            }),
            Code::FailedPrecondition
        );
    }

    #[test]
    fn auth_errors_have_their_codes_and_a_rate_limit_its_retry_delay() {
        use tonic_types::StatusExt;
        let status = Status::from(ApiError::from(AuthError::Unauthenticated));
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "missing or invalid API key");
        assert_eq!(
            code(ApiError::from(AuthError::PermissionDenied("no".into()))),
            Code::PermissionDenied
        );
        assert_eq!(
            code(ReloadError::NoAuthOffLoopback),
            Code::FailedPrecondition
        );
        let status = Status::from(ApiError::from(AuthError::RateLimited {
            scope: "tenant \"acme\"".into(),
            retry_after: std::time::Duration::from_micros(12_300),
        }));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "rate limit of tenant \"acme\" reached: retry in 13 ms"
        );
        assert_eq!(
            status.get_details_retry_info().and_then(|r| r.retry_delay),
            Some(std::time::Duration::from_micros(12_300))
        );
        assert_eq!(
            status
                .metadata()
                .get(RETRY_AFTER_MS)
                .and_then(|v| v.to_str().ok()),
            Some("13")
        );
    }

    #[tokio::test]
    async fn a_failed_reload_task_is_internal_not_a_precondition() {
        let join = tokio::spawn(async { panic!("reload task panicked") })
            .await
            .expect_err("the task panics");
        let status = Status::from(ApiError::from(ReloadError::Join(join)));
        assert_eq!(status.code(), Code::Internal);
        assert!(
            status.message().contains("reload task failed"),
            "{status:?}"
        );
    }

    #[test]
    fn messages_name_the_field() {
        assert_eq!(
            Status::from(bad("category", "longer than 64 bytes")).message(),
            "category: longer than 64 bytes"
        );
        assert_eq!(
            Status::from(ApiError::from(ServiceError::DecisionNotFound("d-1".into()))).message(),
            "decision_id: no recent decision \"d-1\" (unknown or expired)"
        );
        assert_eq!(
            Status::from(ApiError::from(ServiceError::UnknownModel("m".into()))).message(),
            "model_id: unknown model \"m\""
        );
    }
}

//! Counts every gRPC call by service, method and status code
//! (`signalbox_grpc_requests_total`), whoever answered it: a service, the authentication
//! interceptor, or the transport limits. The code is read from the response headers
//! (trailers-only answers, which every error is) or from the trailers at the end of the body; a
//! body dropped before its trailers (the caller went away) counts as `CANCELLED`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;

use crate::state::Shared;

/// The methods served, as (path, service, method): anything else counts as `unknown`.
const METHODS: [(&str, &str, &str); 8] = [
    ("/signalbox.v1.Router/Route", "signalbox.v1.Router", "Route"),
    (
        "/signalbox.v1.Router/ReportOutcome",
        "signalbox.v1.Router",
        "ReportOutcome",
    ),
    ("/signalbox.v1.Admin/Reload", "signalbox.v1.Admin", "Reload"),
    ("/signalbox.v1.Admin/Stats", "signalbox.v1.Admin", "Stats"),
    (
        "/grpc.health.v1.Health/Check",
        "grpc.health.v1.Health",
        "Check",
    ),
    (
        "/grpc.health.v1.Health/Watch",
        "grpc.health.v1.Health",
        "Watch",
    ),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1.ServerReflection",
        "ServerReflectionInfo",
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection",
        "ServerReflectionInfo",
    ),
];

fn rpc_of(path: &str) -> (&'static str, &'static str) {
    METHODS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map_or(("unknown", "unknown"), |&(_, s, m)| (s, m))
}

/// The canonical name of a gRPC status code.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

fn code_in(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let v = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(tonic::Code::from_i32(v))
}

/// The [`tower::Layer`]; outermost, so it sees the answers of the layers inside it.
#[derive(Clone)]
pub struct CountCalls {
    shared: Arc<Shared>,
}

impl CountCalls {
    pub fn new(shared: Arc<Shared>) -> CountCalls {
        CountCalls { shared }
    }
}

impl<S> tower::Layer<S> for CountCalls {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> tower::Service<http::Request<B>> for Counted<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if self.shared.telemetry.metrics.is_none() {
            return Box::pin(self.inner.call(req));
        }
        let rpc = rpc_of(req.uri().path());
        let call = self.inner.call(req);
        let shared = self.shared.clone();
        Box::pin(async move {
            let response = call.await?;
            let count = Count { shared, rpc };
            if let Some(code) = code_in(response.headers()) {
                count.record(code);
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            Ok(http::Response::from_parts(
                parts,
                Body::new(Trailed {
                    inner: body,
                    count: Some(count),
                }),
            ))
        })
    }
}

struct Count {
    shared: Arc<Shared>,
    rpc: (&'static str, &'static str),
}

impl Count {
    fn record(self, code: tonic::Code) {
        if let Some(m) = &self.shared.telemetry.metrics {
            m.call(self.rpc.0, self.rpc.1, code_name(code));
        }
    }
}

/// A response body that counts its call when the trailers go by.
struct Trailed {
    inner: Body,
    /// `None` once counted.
    count: Option<Count>,
}

impl HttpBody for Trailed {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(count) = self.count.take()
                {
                    count.record(code_in(trailers).unwrap_or(tonic::Code::Unknown));
                }
            }
            Poll::Ready(Some(Err(status))) => {
                let code = status.code();
                if let Some(count) = self.count.take() {
                    count.record(code);
                }
            }
            Poll::Ready(None) => {
                if let Some(count) = self.count.take() {
                    count.record(tonic::Code::Unknown);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Trailed {
    fn drop(&mut self) {
        if let Some(count) = self.count.take() {
            count.record(tonic::Code::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_name_their_method_and_others_are_unknown() {
        assert_eq!(
            rpc_of("/signalbox.v1.Router/Route"),
            ("signalbox.v1.Router", "Route")
        );
        assert_eq!(rpc_of("/x.Y/Z"), ("unknown", "unknown"));
        assert_eq!(code_name(tonic::Code::InvalidArgument), "INVALID_ARGUMENT");
    }
}

//! Per-call transport limits, enforced for one call at a time: metadata over
//! `server.max_metadata_bytes` is refused with `RESOURCE_EXHAUSTED` before the call reaches a
//! service (the HTTP/2 header list limit is set well above it, so an oversized call no longer
//! makes the connection go away under its neighbours), and tonic's "decoded message length too
//! large" (`OUT_OF_RANGE`) becomes `RESOURCE_EXHAUSTED` naming `server.max_message_bytes`, as
//! gRPC's status table asks.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::body::Body;

/// Bytes counted per header entry besides its name and value, as HTTP/2 counts them
/// (RFC 7540 §6.5.2).
const PER_ENTRY: usize = 32;

/// The size of a header map as HTTP/2's `SETTINGS_MAX_HEADER_LIST_SIZE` counts it.
pub fn header_list_size(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + PER_ENTRY)
        .sum()
}

/// The [`tower::Layer`] that applies the limits to every service of the server.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    pub max_metadata_bytes: usize,
    pub max_message_bytes: usize,
}

impl<S> tower::Layer<S> for CallLimits {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Limited<S> {
        Limited {
            inner,
            limits: *self,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Limited<S> {
    inner: S,
    limits: CallLimits,
}

impl<S, B> tower::Service<http::Request<B>> for Limited<S>
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
        let limits = self.limits;
        let size = header_list_size(req.headers());
        if size > limits.max_metadata_bytes {
            let status = Status::resource_exhausted(format!(
                "metadata is {size} bytes, over the limit of {} (server.max_metadata_bytes)",
                limits.max_metadata_bytes
            ));
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        let call = self.inner.call(req);
        Box::pin(async move {
            let mut response = call.await?;
            too_large_is_resource_exhausted(&mut response, limits.max_message_bytes);
            Ok(response)
        })
    }
}

/// tonic refuses an over-long message with `OUT_OF_RANGE` ("decoded message length too large");
/// that is `RESOURCE_EXHAUSTED` in gRPC's table. Our own errors never use `OUT_OF_RANGE`.
fn too_large_is_resource_exhausted(response: &mut http::Response<Body>, limit: usize) {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return;
    };
    if status.code() != tonic::Code::OutOfRange || !status.message().contains("length too large") {
        return;
    }
    let found = status
        .message()
        .split("found ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or("?");
    let replaced = Status::resource_exhausted(format!(
        "request message is {found} bytes, over the limit of {limit} (server.max_message_bytes)"
    ));
    // Only fails for a message that cannot be a header value; ours always can.
    let _ = replaced.add_header(response.headers_mut());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_list_size_counts_names_values_and_32_per_entry() {
        let mut h = http::HeaderMap::new();
        h.insert("a", http::HeaderValue::from_static("xyz"));
        h.insert("bb", http::HeaderValue::from_static(""));
        assert_eq!(header_list_size(&h), (1 + 3 + 32) + (2 + 32));
    }

    #[test]
    fn only_tonics_too_large_out_of_range_is_rewritten() {
        let too_large: http::Response<Body> = Status::out_of_range(
            "Error, decoded message length too large: found 5242885 bytes, the limit is: 4194304 bytes",
        )
        .into_http();
        let mut r = too_large;
        too_large_is_resource_exhausted(&mut r, 4194304);
        let s = Status::from_header_map(r.headers()).unwrap();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            s.message(),
            "request message is 5242885 bytes, over the limit of 4194304 (server.max_message_bytes)"
        );
        let mut other: http::Response<Body> = Status::out_of_range("something else").into_http();
        too_large_is_resource_exhausted(&mut other, 1);
        let s = Status::from_header_map(other.headers()).unwrap();
        assert_eq!(s.code(), tonic::Code::OutOfRange);
    }
}

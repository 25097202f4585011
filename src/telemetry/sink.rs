//! A minimal OTLP/gRPC trace receiver: counts the spans it is sent and keeps the first few.
//! The load generator runs it as the "live collector" of the tracing benchmark
//! (`signalbox-loadgen --otlp-sink ADDR`), and the tests inspect what the service exported.
//! `delay` makes every export answer late, as a slow collector would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A received span with its service name (the resource's `service.name`).
#[derive(Debug, Clone)]
pub struct Received {
    pub service_name: String,
    pub span: Span,
}

#[derive(Default)]
struct Store {
    spans: AtomicU64,
    exports: AtomicU64,
    kept: parking_lot::Mutex<Vec<Received>>,
}

struct Receiver {
    store: Arc<Store>,
    keep: usize,
    delay: Duration,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let req = request.into_inner();
        let mut n = 0;
        let mut kept = self.store.kept.lock();
        for rs in req.resource_spans {
            let service_name = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    n += 1;
                    if kept.len() < self.keep {
                        kept.push(Received {
                            service_name: service_name.clone(),
                            span,
                        });
                    }
                }
            }
        }
        drop(kept);
        self.store.spans.fetch_add(n, Ordering::Relaxed);
        self.store.exports.fetch_add(1, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A running receiver; stopped when dropped.
pub struct OtlpSink {
    addr: SocketAddr,
    store: Arc<Store>,
    task: JoinHandle<()>,
}

impl OtlpSink {
    /// Listen on `listen` (port 0: a free port), keeping the first `keep` spans.
    pub async fn start(
        listen: SocketAddr,
        keep: usize,
        delay: Duration,
    ) -> std::io::Result<OtlpSink> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let store = Arc::new(Store::default());
        let service = TraceServiceServer::new(Receiver {
            store: store.clone(),
            keep,
            delay,
        });
        let task = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
            {
                tracing::warn!(error = %e, "OTLP sink stopped");
            }
        });
        Ok(OtlpSink { addr, store, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `otlp_endpoint` to give the service.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Spans received so far.
    pub fn spans_received(&self) -> u64 {
        self.store.spans.load(Ordering::Relaxed)
    }

    /// Export calls answered so far.
    pub fn exports(&self) -> u64 {
        self.store.exports.load(Ordering::Relaxed)
    }

    /// The spans kept (the first `keep` received).
    pub fn kept(&self) -> Vec<Received> {
        self.store.kept.lock().clone()
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

//! OpenTelemetry traces. A Route (or ReportOutcome) becomes a server span with a child span
//! per phase, recorded after the request from the phase clock ([`super::phases`]), so nothing
//! on the request path waits on tracing. A caller's W3C `traceparent` (gRPC metadata) is
//! continued; new traces are sampled with `[telemetry] sample_ratio`, and a caller's sampling
//! decision is followed (parent-based: the OpenTelemetry SDK's sampler, ids and propagator).
//!
//! The request path only queues a compact record ([`Tracer::finish`]); a full queue drops it
//! and counts its spans (`signalbox_trace_spans_total{result="dropped"}`). The OTLP messages are
//! built and sent by an export thread of its own that runs only on CPU time the request
//! threads leave (`SCHED_IDLE`), in batches over OTLP/gRPC (the collector's service from `opentelemetry-proto`), one
//! call at a time within `export_timeout_ms`. A slow, absent or overwhelmed collector, or a
//! saturated CPU, costs spans, never request time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1 as otlp_common;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as otlp;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample,
};
use tokio::sync::{mpsc, oneshot};

use super::TelemetryPolicy;
use super::metrics::TraceCounts;
use super::phases::{Interval, Started};

/// How long the exporter waits for a trickle of traces to become a batch.
const BATCH_DELAY: Duration = Duration::from_millis(200);
/// How long shutdown waits for the last batch to be exported.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp_endpoint: {0}")]
pub struct TraceError(String);

/// The caller's span, from the `traceparent` (and `tracestate`) metadata of a call.
pub fn remote_parent(metadata: &tonic::metadata::MetadataMap) -> Option<SpanContext> {
    // Most calls carry none: skip the propagator.
    metadata.get("traceparent")?;
    let cx = TraceContextPropagator::new().extract(&Metadata(metadata));
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

struct Metadata<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Where a child span hangs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Under {
    Root,
    /// The child at this index of the same list (an earlier one).
    Child(usize),
}

/// One phase span of a request.
#[derive(Debug, Clone, Copy)]
pub struct Child {
    pub name: &'static str,
    pub interval: Interval,
    pub under: Under,
}

/// A finished request, to be traced.
pub struct Finished<'a> {
    /// `Route` or `ReportOutcome`.
    pub name: &'static str,
    pub started: Started,
    pub ended: Instant,
    pub parent: Option<&'a SpanContext>,
    pub children: &'a [Child],
    pub attributes: Vec<KeyValue>,
    /// The error answered, if any.
    pub error: Option<String>,
}

#[derive(Debug, Default)]
struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// One span of a queued trace.
#[derive(Debug, Clone, Copy)]
struct SpanRecord {
    name: &'static str,
    id: SpanId,
    /// `SpanId::INVALID`: a root without a caller's span.
    parent: SpanId,
    server: bool,
    start: SystemTime,
    end: SystemTime,
}

/// A finished request's spans as queued: turned into OTLP messages on the export thread.
#[derive(Debug)]
struct TraceRecord {
    trace_id: TraceId,
    /// The caller's `tracestate`, as its header.
    trace_state: String,
    parent_is_remote: bool,
    /// The request's span first, then its phases.
    spans: Vec<SpanRecord>,
    /// The request span's attributes.
    attributes: Vec<KeyValue>,
    error: Option<String>,
}

enum Msg {
    Trace(TraceRecord),
    Close(oneshot::Sender<()>),
}

/// What the export thread needs to reach the collector.
struct Export {
    /// The collector, with the export timeout set.
    endpoint: tonic::transport::Endpoint,
    timeout: Duration,
    batch_spans: usize,
    resource: Resource,
}

pub struct Tracer {
    sampler: Sampler,
    ids: RandomIdGenerator,
    queue: mpsc::Sender<Msg>,
    counters: Arc<Counters>,
}

impl Tracer {
    /// Start the export thread for `endpoint` (`http://host:port`; connected lazily, and again
    /// after failures).
    pub fn start(policy: &TelemetryPolicy, endpoint: &str) -> Result<Tracer, TraceError> {
        let timeout = Duration::from_millis(policy.export_timeout_ms);
        let endpoint = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| TraceError(format!("{endpoint:?}: {e}")))?
            .timeout(timeout);
        let (tx, rx) = mpsc::channel(policy.export_queue_traces.max(1));
        let counters = Arc::new(Counters::default());
        let export = Export {
            endpoint,
            timeout,
            batch_spans: policy.export_batch_spans.max(1),
            resource: Resource {
                attributes: vec![
                    string_attribute("service.name", &policy.service_name),
                    string_attribute("service.version", env!("CARGO_PKG_VERSION")),
                ],
                ..Resource::default()
            },
        };
        let thread_counters = counters.clone();
        std::thread::Builder::new()
            .name("trace-export".into())
            .spawn(move || export_thread(rx, export, thread_counters))
            .map_err(|e| TraceError(format!("cannot start the export thread: {e}")))?;
        Ok(Tracer {
            sampler: Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                policy.sample_ratio,
            ))),
            ids: RandomIdGenerator::default(),
            queue: tx,
            counters,
        })
    }

    pub fn counts(&self) -> TraceCounts {
        TraceCounts {
            exported: self.counters.exported.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }

    /// Is a request with this parent (or none) traced? Returns the trace id to use.
    fn sample(&self, parent: Option<&SpanContext>) -> Option<TraceId> {
        let trace_id = parent.map_or_else(|| self.ids.new_trace_id(), |p| p.trace_id());
        let cx = parent.map(|p| Context::new().with_remote_span_context(p.clone()));
        let result =
            self.sampler
                .should_sample(cx.as_ref(), trace_id, "", &SpanKind::Server, &[], &[]);
        (result.decision == SamplingDecision::RecordAndSample).then_some(trace_id)
    }

    /// Trace a finished request (when sampled): queue its spans, or count them dropped.
    pub fn finish(&self, f: Finished<'_>) {
        let Some(trace_id) = self.sample(f.parent) else {
            return;
        };
        let root = self.ids.new_span_id();
        let mut spans = Vec::with_capacity(1 + f.children.len());
        spans.push(SpanRecord {
            name: f.name,
            id: root,
            parent: f.parent.map_or(SpanId::INVALID, |p| p.span_id()),
            server: true,
            start: f.started.wall,
            end: f.started.wall_at(f.ended),
        });
        for child in f.children {
            let parent = match child.under {
                Under::Root => root,
                // Children are listed after what they hang under: index + 1 past the root.
                Under::Child(i) => spans.get(i + 1).map_or(root, |s| s.id),
            };
            spans.push(SpanRecord {
                name: child.name,
                id: self.ids.new_span_id(),
                parent,
                server: false,
                start: f.started.wall_at(child.interval.start),
                end: f.started.wall_at(child.interval.end),
            });
        }
        let n = spans.len() as u64;
        let record = TraceRecord {
            trace_id,
            trace_state: f
                .parent
                .map(|p| p.trace_state().header())
                .unwrap_or_default(),
            parent_is_remote: f.parent.is_some_and(|p| p.is_remote()),
            spans,
            attributes: f.attributes,
            error: f.error,
        };
        if self.queue.try_send(Msg::Trace(record)).is_err() {
            self.counters.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Export what is queued (waiting at most a couple of seconds), then stop the exporter.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        let closed = async {
            if self.queue.send(Msg::Close(tx)).await.is_ok() {
                let _ = rx.await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_WAIT, closed).await.is_err() {
            tracing::warn!("trace export did not finish within {SHUTDOWN_WAIT:?} of shutdown");
        }
    }
}

/// The export thread: below the request threads' CPU priority, with a runtime of its own.
fn export_thread(rx: mpsc::Receiver<Msg>, export: Export, counters: Arc<Counters>) {
    lower_thread_priority();
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(export_loop(rx, export, counters)),
        Err(e) => {
            tracing::error!(error = %e, "trace export thread: no runtime; traces are dropped")
        }
    }
}

/// The export thread runs only on CPU time the request threads leave: Linux's `SCHED_IDLE`
/// (failing that, the lowest niceness). When the CPU is saturated the queue fills and spans
/// are dropped, counted, instead of taking time from requests.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: gettid, sched_setscheduler and setpriority take plain integers and a pointer
        // to a local struct; with a thread id they change that thread only.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
            if libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) == 0 {
                0
            } else {
                libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19)
            }
        };
        if rc != 0 {
            tracing::debug!("trace export thread: could not lower its priority");
        }
    }
}

/// Collect queued traces into batches of up to `batch_spans` (waiting [`BATCH_DELAY`] for a
/// trickle to fill one) and export them one batch at a time, each within the timeout.
async fn export_loop(mut rx: mpsc::Receiver<Msg>, export: Export, counters: Arc<Counters>) {
    // Lazily connected (in this thread's runtime), and again after failures.
    let mut client = TraceServiceClient::new(export.endpoint.connect_lazy());
    let mut closing = None;
    while closing.is_none() {
        let mut batch = match rx.recv().await {
            Some(Msg::Trace(t)) => vec![t],
            Some(Msg::Close(done)) => {
                closing = Some(done);
                break;
            }
            None => break,
        };
        let mut spans: usize = batch[0].spans.len();
        let deadline = tokio::time::Instant::now() + BATCH_DELAY;
        while spans < export.batch_spans {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Msg::Trace(t))) => {
                    spans += t.spans.len();
                    batch.push(t);
                }
                Ok(Some(Msg::Close(done))) => {
                    closing = Some(done);
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        let n = spans as u64;
        let request = otlp_request(&export.resource, batch);
        match tokio::time::timeout(export.timeout, client.export(request)).await {
            Ok(Ok(_)) => counters.exported.fetch_add(n, Ordering::Relaxed),
            Ok(Err(status)) => {
                tracing::debug!(error = %status, spans = n, "trace export failed");
                counters.failed.fetch_add(n, Ordering::Relaxed)
            }
            Err(_) => {
                tracing::debug!(spans = n, "trace export timed out");
                counters.failed.fetch_add(n, Ordering::Relaxed)
            }
        };
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Span flags: the W3C sampled flag, and whether the parent is remote (known).
const FLAG_SAMPLED: u32 = 0x01;
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn string_attribute(key: &str, value: &str) -> otlp_common::KeyValue {
    otlp_common::KeyValue {
        key: key.to_string(),
        value: Some(otlp_common::AnyValue {
            value: Some(otlp_common::any_value::Value::StringValue(
                value.to_string(),
            )),
        }),
        ..otlp_common::KeyValue::default()
    }
}

fn attribute(kv: KeyValue) -> otlp_common::KeyValue {
    use otlp_common::any_value::Value as V;
    let value = match kv.value {
        Value::Bool(b) => V::BoolValue(b),
        Value::I64(i) => V::IntValue(i),
        Value::F64(f) => V::DoubleValue(f),
        Value::String(s) => V::StringValue(s.to_string()),
        other => V::StringValue(other.to_string()),
    };
    otlp_common::KeyValue {
        key: kv.key.to_string(),
        value: Some(otlp_common::AnyValue { value: Some(value) }),
        ..otlp_common::KeyValue::default()
    }
}

/// One OTLP request for a batch: one resource, one scope, every span.
fn otlp_request(resource: &Resource, batch: Vec<TraceRecord>) -> ExportTraceServiceRequest {
    let mut spans = Vec::with_capacity(batch.iter().map(|t| t.spans.len()).sum());
    for trace in batch {
        let trace_id = trace.trace_id.to_bytes().to_vec();
        let mut attributes = Some(trace.attributes);
        let mut error = trace.error;
        for s in trace.spans {
            let is_root = s.server;
            let remote = if is_root && trace.parent_is_remote {
                FLAG_IS_REMOTE
            } else {
                0
            };
            spans.push(otlp::Span {
                trace_id: trace_id.clone(),
                span_id: s.id.to_bytes().to_vec(),
                trace_state: trace.trace_state.clone(),
                parent_span_id: if s.parent == SpanId::INVALID {
                    Vec::new()
                } else {
                    s.parent.to_bytes().to_vec()
                },
                flags: FLAG_SAMPLED | FLAG_HAS_IS_REMOTE | remote,
                name: s.name.to_string(),
                kind: if is_root {
                    otlp::span::SpanKind::Server
                } else {
                    otlp::span::SpanKind::Internal
                } as i32,
                start_time_unix_nano: unix_nanos(s.start),
                end_time_unix_nano: unix_nanos(s.end),
                attributes: if is_root {
                    attributes
                        .take()
                        .unwrap_or_default()
                        .into_iter()
                        .map(attribute)
                        .collect()
                } else {
                    Vec::new()
                },
                status: match (is_root, error.take()) {
                    (true, Some(message)) => Some(otlp::Status {
                        message,
                        code: otlp::status::StatusCode::Error as i32,
                    }),
                    _ => None,
                },
                ..otlp::Span::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![otlp::ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![otlp::ScopeSpans {
                scope: Some(otlp_common::InstrumentationScope {
                    name: "signalbox".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..otlp_common::InstrumentationScope::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

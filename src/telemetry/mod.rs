//! What the service tells a monitoring stack: Prometheus metrics ([`metrics`], served over HTTP
//! by [`endpoint`]) and OpenTelemetry traces ([`traces`]), both fed from one phase clock per
//! request ([`phases`]). `[telemetry]` is read at start; a reload keeps it.

use std::net::SocketAddr;

use opentelemetry::trace::SpanContext;

pub mod endpoint;
pub mod metrics;
pub mod phases;
pub mod sink;
pub mod traces;

use metrics::Metrics;
use phases::Started;
use traces::Tracer;

/// `[telemetry]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryPolicy {
    /// Serve `/metrics` here (`--metrics-listen` overrides); `None`: no metrics are kept.
    pub metrics_listen: Option<SocketAddr>,
    /// OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`; `None`: no traces.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    /// Fraction of new traces sampled (a caller's `traceparent` decision is followed).
    pub sample_ratio: f64,
    /// Traces (one request's spans) waiting for export; more are dropped and counted.
    pub export_queue_traces: usize,
    /// Spans per export call.
    pub export_batch_spans: usize,
    /// How long one export call may take before its spans count as failed.
    pub export_timeout_ms: u64,
}

impl Default for TelemetryPolicy {
    fn default() -> TelemetryPolicy {
        TelemetryPolicy {
            metrics_listen: None,
            otlp_endpoint: None,
            service_name: "signalbox".into(),
            sample_ratio: 1.0,
            export_queue_traces: 2048,
            export_batch_spans: 512,
            export_timeout_ms: 5000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Traces(#[from] traces::TraceError),
}

/// Metrics when a metrics endpoint is configured, traces when an OTLP endpoint is.
pub struct Telemetry {
    pub metrics: Option<Metrics>,
    pub tracer: Option<Tracer>,
    /// As started.
    pub policy: TelemetryPolicy,
}

impl Telemetry {
    /// Nothing kept, nothing exported.
    pub fn off() -> Telemetry {
        Telemetry {
            metrics: None,
            tracer: None,
            policy: TelemetryPolicy::default(),
        }
    }

    /// Is anything counted or traced? Requests skip their telemetry work when not.
    pub fn is_on(&self) -> bool {
        self.metrics.is_some() || self.tracer.is_some()
    }

    /// Start what `policy` asks for; with an OTLP endpoint this needs a tokio runtime.
    pub fn start(policy: &TelemetryPolicy) -> Result<Telemetry, TelemetryError> {
        let metrics = match policy.metrics_listen {
            Some(_) => Some(Metrics::new()?),
            None => None,
        };
        let tracer = match &policy.otlp_endpoint {
            Some(endpoint) => Some(Tracer::start(policy, endpoint)?),
            None => None,
        };
        Ok(Telemetry {
            metrics,
            tracer,
            policy: policy.clone(),
        })
    }
}

/// A call's start, and the caller's span when it sent a `traceparent` (read only when tracing).
#[derive(Debug, Clone)]
pub struct Call {
    pub started: Started,
    pub parent: Option<SpanContext>,
    /// The caller's deadline (`grpc-timeout`), if it sent one.
    pub deadline: Option<std::time::Instant>,
}

impl Call {
    /// A call starting now, with no caller's trace.
    pub fn now() -> Call {
        Call {
            started: Started::now(),
            parent: None,
            deadline: None,
        }
    }
}

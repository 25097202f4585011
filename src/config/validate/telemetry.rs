//! `[telemetry]`: where metrics are served and traces go.

use std::net::SocketAddr;

use super::*;
use crate::telemetry::TelemetryPolicy;

/// The longest export queue and batch accepted (spans are a few hundred bytes each).
const MAX_QUEUE_TRACES: usize = 1_000_000;
const MAX_BATCH_SPANS: usize = 65_536;
const MAX_EXPORT_TIMEOUT_MS: u64 = 60_000;

pub(super) fn telemetry_policy(t: raw::Telemetry) -> Result<TelemetryPolicy, ConfigError> {
    let raw::Telemetry {
        metrics_listen,
        otlp_endpoint,
        service_name,
        sample_ratio,
        export_queue_traces,
        export_batch_spans,
        export_timeout_ms,
    } = t;
    let metrics_listen = metrics_listen
        .map(|a| {
            a.trim().parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "telemetry.metrics_listen",
                    format!(
                        "{a:?} is not an address such as 127.0.0.1:9464 (port 0: any free port)"
                    ),
                )
            })
        })
        .transpose()?;
    let otlp_endpoint = otlp_endpoint
        .map(|e| otlp_endpoint_url(e.trim()).map(|()| e.trim().to_string()))
        .transpose()?;
    if service_name.trim().is_empty() || service_name.len() > 255 {
        return Err(invalid(
            "telemetry.service_name",
            "must be 1 to 255 bytes, not blank",
        ));
    }
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(invalid(
            "telemetry.sample_ratio",
            format!("must be between 0 and 1, not {sample_ratio}"),
        ));
    }
    if !(1..=MAX_QUEUE_TRACES).contains(&export_queue_traces) {
        return Err(invalid(
            "telemetry.export_queue_traces",
            format!("must be 1 to {MAX_QUEUE_TRACES}"),
        ));
    }
    if !(1..=MAX_BATCH_SPANS).contains(&export_batch_spans) {
        return Err(invalid(
            "telemetry.export_batch_spans",
            format!("must be 1 to {MAX_BATCH_SPANS}"),
        ));
    }
    if !(1..=MAX_EXPORT_TIMEOUT_MS).contains(&export_timeout_ms) {
        return Err(invalid(
            "telemetry.export_timeout_ms",
            format!("must be 1 to {MAX_EXPORT_TIMEOUT_MS}"),
        ));
    }
    Ok(TelemetryPolicy {
        metrics_listen,
        otlp_endpoint,
        service_name: service_name.trim().to_string(),
        sample_ratio,
        export_queue_traces,
        export_batch_spans,
        export_timeout_ms,
    })
}

/// An `http://` URL with a host: OTLP over gRPC in plaintext (for TLS to a remote collector,
/// run a local agent, e.g. the OpenTelemetry Collector, and point this at it).
fn otlp_endpoint_url(e: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| {
        invalid(
            "telemetry.otlp_endpoint",
            format!("{e:?} {why} (e.g. http://127.0.0.1:4317)"),
        )
    };
    let uri: http::Uri = e.parse().map_err(|_| bad("is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(bad(
                "uses https, which the exporter does not speak: point it at a local collector over http",
            ));
        }
        _ => return Err(bad("must start with http://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    Ok(())
}

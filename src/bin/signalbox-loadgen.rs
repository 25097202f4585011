//! Load generator for a running signalbox: C concurrent Route callers over K HTTP/2 connections
//! for a fixed duration; prints throughput and client-side and server-side latency percentiles.
//!
//! signalbox-loadgen --addr http://127.0.0.1:50051 --concurrency 1 --duration 10
//! signalbox-loadgen --addr https://127.0.0.1:50051 --tls-ca ca.pem [--tls-cert c.pem --tls-key k.pem]
//! signalbox-loadgen --api-key "$KEY" --tenant acme   # a server with [auth] mode = "api_key"
//! signalbox-loadgen --otlp-sink 127.0.0.1:4317       # no load: be the trace collector

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use signalbox::proto::router_client::RouterClient;
use signalbox::proto::{self, route_request::Prompt};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

#[derive(Parser, Debug)]
#[command(
    name = "signalbox-loadgen",
    about = "Drive Route calls at a signalbox server"
)]
struct Args {
    /// Server URL.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// Concurrent callers, each with one request outstanding.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// HTTP/2 connections shared round-robin by the callers.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Report an outcome for every Nth decision (0 = never).
    #[arg(long, default_value_t = 0)]
    outcome_every: u64,
    /// Prompts, one per line (default: a built-in mix of tasks, PII and risk cases).
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Worker threads for the client runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Tenant id sent with every request (with --api-key: the key's tenant, or "" to take it
    /// from the key).
    #[arg(long, default_value = "loadgen")]
    tenant: String,
    /// TLS: the CA bundle (PEM) that issued the server's certificate; `--addr` is then
    /// `https://...`.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// mTLS: this client's certificate chain (PEM), with `--tls-key`.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// mTLS: this client's private key (PEM), with `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// TLS: the name to verify the server's certificate for (default: the host of `--addr`).
    #[arg(long)]
    tls_domain: Option<String>,
    /// API key sent as `authorization: Bearer KEY` (servers with `[auth] mode = "api_key"`);
    /// default: the environment variable SIGNALBOX_API_KEY, if set (not visible in `ps`).
    #[arg(long)]
    api_key: Option<String>,
    /// Instead of driving load, receive OTLP/gRPC traces on this address (the live collector of
    /// the tracing benchmark) until SIGTERM or Ctrl-C, then print how many spans came.
    #[arg(long, value_name = "ADDR")]
    otlp_sink: Option<std::net::SocketAddr>,
}

/// `--otlp-sink`: a collector that counts what it is sent.
async fn sink(listen: std::net::SocketAddr) -> Result<(), String> {
    let sink = signalbox::telemetry::sink::OtlpSink::start(listen, 0, Duration::ZERO)
        .await
        .map_err(|e| format!("--otlp-sink {listen}: {e}"))?;
    println!("otlp sink on {}", sink.endpoint());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    println!(
        "spans received: {} in {} exports",
        sink.spans_received(),
        sink.exports()
    );
    Ok(())
}

fn read_file(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `--addr` with the TLS settings: `https://` needs `--tls-ca`, and `--tls-*` needs `https://`.
fn endpoint(args: &Args) -> Result<Endpoint, String> {
    let endpoint = Endpoint::from_shared(args.addr.clone())
        .map_err(|e| format!("--addr {}: {e}", args.addr))?
        .tcp_nodelay(true);
    let https = args.addr.starts_with("https://");
    let Some(ca) = &args.tls_ca else {
        if https || args.tls_cert.is_some() {
            return Err("TLS (https:// or --tls-cert) needs --tls-ca".into());
        }
        return Ok(endpoint);
    };
    if !https {
        return Err(format!(
            "--tls-ca given: --addr must be https://, not {}",
            args.addr
        ));
    }
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_file(ca)?));
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        tls = tls.identity(Identity::from_pem(read_file(cert)?, read_file(key)?));
    }
    if let Some(name) = &args.tls_domain {
        tls = tls.domain_name(name.clone());
    }
    endpoint.tls_config(tls).map_err(|e| format!("TLS: {e}"))
}

/// Who the callers are: the tenant they name and the `authorization` metadata they send.
#[derive(Clone)]
struct Caller {
    tenant: String,
    authorization: Option<MetadataValue<Ascii>>,
}

impl Caller {
    /// A request with the `authorization` metadata, when there is a key.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }
}

const BUILTIN: &[&str] = &[
    "What is the capital of Australia?",
    "Write a Python function that parses an ISO 8601 date and returns a datetime.",
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes muffins with four. She sells the rest for $2 each. How much does she make?",
    "Summarize the following meeting notes in three bullet points: the team agreed to ship on Friday, QA found two regressions, and marketing needs screenshots.",
    "Classify the sentiment of this review as positive, negative or neutral: 'The battery died after two days.'",
    "Extract the invoice number, date and total from: Invoice INV-2291 dated 2024-03-02, total due EUR 1,204.50.",
    "hey, how are you doing today?",
    "Please email the contract to jane.doe@example.com and call +44 20 7946 0958 if anything is unclear.",
    "My patient is on warfarin; what is a safe dosage of ibuprofen for their back pain?",
    "Which of the following best describes the structure that collects urine in the body?\nA. Bladder\nB. Kidney\nC. Ureter\nD. Urethra\nAnswer:",
    "Explain the difference between a mutex and a semaphore, with an example in Rust.",
    "Translate 'Where is the train station?' into French and German.",
];

fn load_prompts(path: &Option<PathBuf>) -> Result<Vec<String>, String> {
    match path {
        None => Ok(BUILTIN.iter().map(|s| s.to_string()).collect()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let prompts: Vec<String> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect();
            if prompts.is_empty() {
                Err(format!("{}: no prompts", p.display()))
            } else {
                Ok(prompts)
            }
        }
    }
}

struct Tally {
    client_us: Histogram<u64>,
    server_us: Histogram<u64>,
    errors: u64,
}

fn new_hist() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())
}

async fn caller(
    mut client: RouterClient<Channel>,
    prompts: Arc<Vec<String>>,
    offset: usize,
    who: Caller,
    outcome_every: u64,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Result<Tally, String> {
    let mut tally = Tally {
        client_us: new_hist()?,
        server_us: new_hist()?,
        errors: 0,
    };
    let mut i = offset;
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let req = proto::RouteRequest {
            tenant_id: who.tenant.clone(),
            prompt: Some(Prompt::Text(prompts[i % prompts.len()].clone())),
            ..Default::default()
        };
        i += 1;
        let started = Instant::now();
        let result = client.route(who.request(req)).await;
        let elapsed = started.elapsed();
        let measured = measuring.load(Ordering::Relaxed);
        match result {
            Ok(resp) => {
                let d = resp.into_inner();
                if measured {
                    let us = u64::try_from(elapsed.as_micros())
                        .unwrap_or(u64::MAX)
                        .max(1);
                    tally.client_us.saturating_record(us);
                    tally.server_us.saturating_record(d.server_time_us.max(1));
                }
                n += 1;
                if outcome_every > 0 && n.is_multiple_of(outcome_every) {
                    let model_id = d.primary.map(|p| p.model_id).unwrap_or_default();
                    let o = proto::Outcome {
                        decision_id: d.decision_id,
                        model_id,
                        success: true,
                        latency_ms: 800,
                        tokens_in: 50,
                        tokens_out: 100,
                        ..Default::default()
                    };
                    if client.report_outcome(who.request(o)).await.is_err() && measured {
                        tally.errors += 1;
                    }
                }
            }
            Err(_) if measured => tally.errors += 1,
            Err(_) => {}
        }
    }
    Ok(tally)
}

async fn run(args: Args) -> Result<(), String> {
    let prompts = Arc::new(load_prompts(&args.prompts)?);
    let api_key = args
        .api_key
        .clone()
        .or_else(|| std::env::var("SIGNALBOX_API_KEY").ok());
    let authorization = match &api_key {
        None => None,
        Some(key) => Some(
            MetadataValue::try_from(format!("Bearer {}", key.trim()))
                .map_err(|_| "--api-key: not a valid metadata value".to_string())?,
        ),
    };
    let mut channels = Vec::new();
    let endpoint = endpoint(&args)?;
    for _ in 0..args.connections.max(1) {
        let ch = endpoint
            .clone()
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", args.addr))?;
        channels.push(ch);
    }
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..args.concurrency.max(1) {
        let client = RouterClient::new(channels[c % channels.len()].clone());
        tasks.push(tokio::spawn(caller(
            client,
            prompts.clone(),
            c * 7,
            Caller {
                tenant: args.tenant.clone(),
                authorization: authorization.clone(),
            },
            args.outcome_every,
            measuring.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    measuring.store(false, Ordering::Relaxed);
    let wall = started.elapsed();
    stop.store(true, Ordering::Relaxed);

    let mut client_us = new_hist()?;
    let mut server_us = new_hist()?;
    let mut errors = 0;
    for t in tasks {
        let tally = t.await.map_err(|e| e.to_string())??;
        client_us.add(&tally.client_us).map_err(|e| e.to_string())?;
        server_us.add(&tally.server_us).map_err(|e| e.to_string())?;
        errors += tally.errors;
    }
    let n = client_us.len();
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "concurrency={} connections={} duration={:.1}s decisions={} errors={} throughput={:.0}/s",
        args.concurrency,
        args.connections,
        wall.as_secs_f64(),
        n,
        errors,
        n as f64 / wall.as_secs_f64()
    );
    for (name, h) in [("client", &client_us), ("server", &server_us)] {
        println!(
            "{name} latency ms: p50={:.3} p90={:.3} p99={:.3} p99.9={:.3} max={:.3}",
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.90)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max())
        );
    }
    if errors > 0 {
        return Err(format!("{errors} requests failed"));
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("signalbox-loadgen: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match args.otlp_sink {
        Some(listen) => runtime.block_on(sink(listen)),
        None => runtime.block_on(run(args)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signalbox-loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

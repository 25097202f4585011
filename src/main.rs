//! The `signalbox` service binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use signalbox::auth::{AuthMode, Role, Roles};
use signalbox::config::Policy;

#[derive(Parser)]
#[command(
    name = "signalbox",
    version,
    about = "Model-routing decision service for LLM fleets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text, or as one JSON object per line (request lines carry the decision id).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Router gRPC API (plus health and reflection) until SIGTERM or Ctrl-C.
    Serve {
        /// Policy file.
        #[arg(long, default_value = "config/signalbox.toml")]
        config: PathBuf,
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// Async worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Serve without authentication (`[auth] mode = "none"`) on a non-loopback address.
        #[arg(long)]
        insecure_no_auth: bool,
        /// Serve Prometheus metrics at http://ADDR/metrics (port 0: a free port); overrides
        /// `[telemetry] metrics_listen`.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<SocketAddr>,
        /// This replica's name in its decision-log file names
        /// (`decisions-ID-<UTC start>-<seq>.jsonl`, `outcomes-ID-...`), which keeps apart the
        /// files of replicas sharing one log directory: 1 to 64 characters of A-Z a-z 0-9 . _ -
        /// [default: <host name>-<port>, the port actually bound]
        #[arg(long, value_name = "ID")]
        replica_id: Option<signalbox::decision_log::ReplicaId>,
    },
    /// Validate a policy file and exit (0 = valid).
    CheckConfig {
        #[arg(long, default_value = "config/signalbox.toml")]
        config: PathBuf,
    },
    /// Create and revoke API keys (policy `[auth] mode = "api_key"`).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key: print it once on stdout and append its record (its hash, never the key)
    /// to the keys file, created if missing.
    Create {
        /// The keys file (`[auth] keys_file`).
        #[arg(long)]
        keys_file: PathBuf,
        /// The tenant the key acts for.
        #[arg(long)]
        tenant: String,
        /// A role: route (Router/Route), report (Router/ReportOutcome), admin (Admin/*).
        /// Repeat for several.
        #[arg(long = "role", required = true, value_parser = ["route", "report", "admin"])]
        roles: Vec<String>,
        /// Expiry, RFC 3339 (e.g. 2027-01-01T00:00:00Z).
        #[arg(long)]
        expires: Option<String>,
        /// The key's own rate limit, with --burst.
        #[arg(long, requires = "burst")]
        requests_per_sec: Option<f64>,
        #[arg(long, requires = "requests_per_sec")]
        burst: Option<u32>,
    },
    /// Remove a key from the keys file; a running server refuses it after its next reload.
    Revoke {
        #[arg(long)]
        keys_file: PathBuf,
        /// The key id (the part after `sbx_`, as `keys create` logs it).
        #[arg(long)]
        id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, matches!(cli.command, Command::Keys { .. }));
    match cli.command {
        Command::Keys { command } => keys(command),
        Command::CheckConfig { config } => match Policy::load(&config) {
            // Every check `serve` runs before binding: the whole policy with its learned bundle
            // loaded, validated against the catalog and scored on the canaries, and the log
            // directory created and written.
            Ok(policy) => match signalbox::state::preflight(&policy)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    signalbox::engine::DecisionEngine::new(policy).map_err(|e| e.to_string())
                }) {
                Ok(engine) => {
                    let policy = engine.policy();
                    tracing::info!(
                        version = %policy.version,
                        models = policy.models.len(),
                        rules = policy.rules.len(),
                        model_version = engine.learned().map_or("", |l| l.version()),
                        auth = policy.auth.mode.as_str(),
                        api_keys = policy.auth.keys.len(),
                        "config is valid"
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::from(2)
                }
            },
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Serve {
            config,
            listen,
            threads,
            insecure_no_auth,
            metrics_listen,
            replica_id,
        } => {
            // Validate before anything is bound or started.
            let mut policy = match Policy::load(&config) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::from(2);
                }
            };
            if metrics_listen.is_some() {
                policy.telemetry.metrics_listen = metrics_listen;
            }
            // `None`: the server names the log after this host and the port it binds.
            policy.log.replica_id = replica_id;
            // Without authentication, anyone who reaches the port routes as any tenant and
            // reloads the policy: loopback only, unless asked for explicitly.
            let no_auth = policy.auth.mode == AuthMode::None;
            if no_auth && !listen.ip().is_loopback() {
                if !insecure_no_auth {
                    tracing::error!(
                        "refusing to serve without authentication on {listen}, which is not a loopback address: set [auth] mode = \"api_key\" in {} (see docs/operations.md#authentication), or pass --insecure-no-auth",
                        config.display()
                    );
                    return ExitCode::from(2);
                }
                tracing::warn!(
                    "serving WITHOUT authentication on {listen} (--insecure-no-auth): anyone who can reach this address can route as any tenant, report outcomes and reload the policy"
                );
            }
            // The machine-side checks `check-config` runs too (the bundle is checked when the
            // engine is built, also before binding).
            if let Err(e) = signalbox::state::preflight(&policy) {
                tracing::error!("{e}");
                return ExitCode::from(2);
            }
            raise_open_file_limit();
            limit_malloc_arenas(policy.telemetry.otlp_endpoint.is_some());
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = threads {
                builder.worker_threads(n.max(1));
            }
            let runtime = match builder.enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(policy, config, listen, insecure_no_auth)) {
                Ok(()) => ExitCode::SUCCESS,
                // The policy's learned bundle (or backend) is unusable: a config error, found
                // before anything is bound.
                Err(e @ signalbox::server::ServerError::Engine(_)) => {
                    tracing::error!("{e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(
    policy: Policy,
    config: PathBuf,
    listen: SocketAddr,
    insecure_no_auth: bool,
) -> Result<(), signalbox::server::ServerError> {
    tracing::info!(
        policy_version = %policy.version,
        log_dir = %policy.log.dir.display(),
        auth = policy.auth.mode.as_str(),
        api_keys = policy.auth.keys.len(),
        "starting"
    );
    if policy.auth.mode == AuthMode::ApiKey && policy.auth.keys.is_empty() {
        tracing::warn!(
            "the keys file has no API keys: every Router and Admin call will be refused (create one with `signalbox keys create`, then reload)"
        );
    }
    // Before anything is bound: a SIGTERM from now on drains and exits 0.
    let stop = shutdown_signal();
    let server = signalbox::server::start_from_file(policy, config, listen).await?;
    if insecure_no_auth {
        server.shared().auth.allow_no_auth(true);
    }
    {
        let live = server.shared().live.load();
        let loaded = signalbox::reload::describe(&live);
        tracing::info!(
            mode = %loaded.mode,
            model_version = %loaded.model_version,
            "router ready"
        );
    }
    #[cfg(unix)]
    {
        let shared = server.shared().clone();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::info!("SIGHUP: reloading");
                        let _ = signalbox::reload::reload(&shared).await;
                    }
                });
            }
            Err(e) => tracing::warn!("cannot install a SIGHUP handler ({e})"),
        }
    }
    tracing::info!("listening on {}", server.local_addr());
    stop.await;
    tracing::info!("shutting down: draining requests and the decision log");
    let stats = server.shutdown().await?;
    tracing::info!(
        decisions = stats.decisions,
        outcomes = stats.outcomes,
        "stopped"
    );
    Ok(())
}

/// `signalbox keys create|revoke`: 0 done, 2 refused (bad arguments or keys file), 1 I/O.
fn keys(command: KeysCommand) -> ExitCode {
    use signalbox::auth::keys::{KeysError, NewKey, create_key, revoke_key};
    let failed = |e: KeysError| {
        tracing::error!("{e}");
        match e {
            KeysError::Read { .. }
            | KeysError::Write { .. }
            | KeysError::Busy { .. }
            | KeysError::Random(_) => ExitCode::FAILURE,
            KeysError::Invalid { .. } | KeysError::UnknownId { .. } | KeysError::BadRequest(_) => {
                ExitCode::from(2)
            }
        }
    };
    match command {
        KeysCommand::Create {
            keys_file,
            tenant,
            roles,
            expires,
            requests_per_sec,
            burst,
        } => {
            let roles = roles
                .iter()
                .filter_map(|r| Role::parse(r))
                .fold(Roles::NONE, Roles::with);
            let expires = match expires.as_deref().map(chrono::DateTime::parse_from_rfc3339) {
                None => None,
                Some(Ok(at)) => {
                    let at = at.with_timezone(&chrono::Utc);
                    if at <= chrono::Utc::now() {
                        tracing::error!("--expires {at} is in the past");
                        return ExitCode::from(2);
                    }
                    Some(at)
                }
                Some(Err(e)) => {
                    tracing::error!("--expires: not an RFC 3339 time ({e})");
                    return ExitCode::from(2);
                }
            };
            let rate = match requests_per_sec.zip(burst) {
                None => None,
                Some((per_sec, burst)) => match signalbox::auth::Rate::new(per_sec, burst) {
                    Ok(r) => Some(r),
                    Err((field, message)) => {
                        tracing::error!("--{}: {message}", field.replace('_', "-"));
                        return ExitCode::from(2);
                    }
                },
            };
            let spec = NewKey {
                tenant,
                roles,
                expires,
                rate,
            };
            match create_key(&keys_file, &spec) {
                Ok(created) => {
                    use std::io::Write;
                    // The key, once, on stdout; everything else goes to the log on stderr.
                    let mut out = std::io::stdout().lock();
                    if writeln!(out, "{}", created.key.expose())
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        tracing::error!(
                            key_id = %created.id,
                            "cannot write the key to stdout; revoke it: signalbox keys revoke --keys-file {} --id {}",
                            keys_file.display(),
                            created.id
                        );
                        return ExitCode::FAILURE;
                    }
                    tracing::info!(
                        key_id = %created.id,
                        tenant = %spec.tenant,
                        roles = %roles.iter().map(Role::as_str).collect::<Vec<_>>().join(","),
                        keys_file = %keys_file.display(),
                        "created API key (shown once); a running server picks it up at its next reload"
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => failed(e),
            }
        }
        KeysCommand::Revoke { keys_file, id } => match revoke_key(&keys_file, &id) {
            Ok(()) => {
                tracing::info!(
                    key_id = %id,
                    keys_file = %keys_file.display(),
                    "revoked API key; a running server refuses it after its next reload"
                );
                ExitCode::SUCCESS
            }
            Err(e) => failed(e),
        },
    }
}

/// SIGTERM or Ctrl-C (SIGINT). The handlers are installed when this is called, not when the
/// future is first polled: call it before the server is bound, so a signal sent as soon as
/// `listening on` appears is never lost (it would otherwise kill the process undrained).
/// Log lines on stdout, as text or JSON (`keys`: on stderr, stdout carrying only the new key,
/// as in `KEY=$(signalbox keys create ...)`). `RUST_LOG` filters (default `info`).
fn init_logging(format: LogFormat, to_stderr: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let terminal = if to_stderr {
        std::io::IsTerminal::is_terminal(&std::io::stderr())
    } else {
        std::io::IsTerminal::is_terminal(&std::io::stdout())
    };
    match (format, to_stderr) {
        (LogFormat::Text, false) => builder.with_ansi(terminal).init(),
        (LogFormat::Text, true) => builder
            .with_ansi(terminal)
            .with_writer(std::io::stderr)
            .init(),
        // One object per line; a request's lines name its span and decision id
        // (`"span":{"decision_id":..,"name":"route"}`).
        (LogFormat::Json, false) => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        (LogFormat::Json, true) => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .init(),
    }
}

fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                (term, int) => {
                    if let Err(e) = term.as_ref().and(int.as_ref()) {
                        tracing::warn!("cannot install the SIGTERM/SIGINT handlers ({e})");
                    }
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Raise the soft limit on open files to the hard limit: every connection is a file descriptor,
/// and the default soft limit (often 1024) is far below what a router on a busy network needs.
/// At the limit the accept loop backs off instead of spinning (`listener.rs`).
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if got != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit");
        return;
    }
    let before = limit.rlim_cur;
    if before >= limit.rlim_max {
        tracing::info!(open_files = before, "open-file limit");
        return;
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        tracing::info!(
            from = before,
            to = limit.rlim_max,
            "raised the open-file limit"
        );
    } else {
        tracing::warn!(error = %std::io::Error::last_os_error(), open_files = before, "cannot raise the open-file limit");
    }
}

/// glibc malloc: at most two arenas, set before any thread starts (by default one per thread,
/// up to 8 per core). With this and the sweeper's `server::release_free_memory`, the example
/// policy's soak at 16 callers stays at 100 MB instead of 110 MB (docs/performance.md). With
/// traces exported (`[telemetry] otlp_endpoint`), four: the export thread, which runs only on
/// idle CPU time, otherwise shares an arena with the request threads, and its lock hold-ups cost
/// them 10–20% of their throughput (docs/performance.md#telemetry).
fn limit_malloc_arenas(tracing: bool) {
    let arenas = if tracing { 4 } else { 2 };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before the runtime's threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
}

//! The `signalbox` service binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    },
    /// Validate a policy file and exit (0 = valid).
    CheckConfig {
        #[arg(long, default_value = "config/signalbox.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let cli = Cli::parse();
    match cli.command {
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
        } => {
            // Validate before anything is bound or started.
            let policy = match Policy::load(&config) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::from(2);
                }
            };
            // The machine-side checks `check-config` runs too (the bundle is checked when the
            // engine is built, also before binding).
            if let Err(e) = signalbox::state::preflight(&policy) {
                tracing::error!("{e}");
                return ExitCode::from(2);
            }
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
            match runtime.block_on(serve(policy, config, listen)) {
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
) -> Result<(), signalbox::server::ServerError> {
    tracing::info!(policy_version = %policy.version, log_dir = %policy.log.dir.display(), "starting");
    let server = signalbox::server::start_from_file(policy, config, listen).await?;
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
    shutdown_signal().await;
    tracing::info!("shutting down: draining requests and the decision log");
    let stats = server.shutdown().await?;
    tracing::info!(
        decisions = stats.decisions,
        outcomes = stats.outcomes,
        "stopped"
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(e) => {
                tracing::warn!("cannot install a SIGTERM handler ({e}); Ctrl-C only");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

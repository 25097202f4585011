//! Hot reload of the policy and the model bundle, as one unit: load, validate (catalog, bundle
//! shapes, model ids, canary prompts), then swap the live state. A failed reload is logged and
//! counted; the running state keeps serving. Triggers: the Admin/Reload RPC, SIGHUP, and a
//! poller that watches the config file, the API keys file and the bundle directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use crate::config::{ConfigError, LearnedMode, Policy};
use crate::engine::{DecisionEngine, EngineError};
use crate::state::{LiveState, Shared};
use crate::telemetry::TelemetryPolicy;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the server was started without a config file; nothing to reload")]
    NoConfigFile,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("log.dir changed from {from} to {to}: restart to move the log")]
    LogDirChanged { from: PathBuf, to: PathBuf },
    #[error("server.tls was {0}: restart to switch between TLS and plaintext")]
    TlsToggled(&'static str),
    #[error("reload task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(
        "learned.required is set: the reload would change the serving router ({0}); the file may be half-written (save with a temp file and rename)"
    )]
    LearnedRequired(String),
    #[error(
        "auth.mode = \"none\" is refused: the server listens on a non-loopback address and was started without --insecure-no-auth"
    )]
    NoAuthOffLoopback,
}

/// What is serving after a successful reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub policy_version: String,
    pub model_version: String,
    pub mode: String,
}

pub fn describe(live: &LiveState) -> Loaded {
    let engine = &live.engine;
    Loaded {
        policy_version: engine.policy().version.clone(),
        model_version: engine
            .learned()
            .map(|l| l.version().to_string())
            .unwrap_or_default(),
        mode: engine
            .policy()
            .learned
            .as_ref()
            .map_or("rules_only", |l| l.mode.as_str())
            .to_string(),
    }
}

/// `[telemetry]` is read at start (the endpoint is bound, the exporter connected): a reload
/// that changes it says it applies at the next restart. A metrics address given on the command
/// line counts as running unless the file names another.
fn warn_if_telemetry_changed(running: &TelemetryPolicy, file: &TelemetryPolicy) {
    let listen_changed =
        file.metrics_listen.is_some() && file.metrics_listen != running.metrics_listen;
    let rest_changed = TelemetryPolicy {
        metrics_listen: running.metrics_listen,
        ..file.clone()
    } != *running;
    if listen_changed || rest_changed {
        tracing::warn!(
            "[telemetry] changed in the policy file: it applies at the next restart (the running metrics endpoint and trace export are kept)"
        );
    }
}

/// Reload from the config file the server was started with. Requests keep being served from
/// the old state until the new one is complete and valid.
pub async fn reload(shared: &Arc<Shared>) -> Result<Loaded, ReloadError> {
    let _one_at_a_time = shared.reload_lock.lock().await;
    let result = load_and_swap(shared).await;
    match &result {
        Ok(loaded) => {
            shared.stats.reloads.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                policy_version = %loaded.policy_version,
                model_version = %loaded.model_version,
                mode = %loaded.mode,
                "reloaded policy and model bundle"
            );
        }
        Err(e) => {
            shared.stats.failed_reloads.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "reload rejected; the previous policy and bundle keep serving");
        }
    }
    result
}

async fn load_and_swap(shared: &Arc<Shared>) -> Result<Loaded, ReloadError> {
    let path = shared
        .config_path
        .clone()
        .ok_or(ReloadError::NoConfigFile)?;
    // Parsing, bundle loading and canary inference are blocking work: keep them off the
    // request threads.
    let engine = tokio::task::spawn_blocking(move || -> Result<DecisionEngine, ReloadError> {
        let policy = Policy::load(&path)?;
        Ok(DecisionEngine::new(policy)?)
    })
    .await??;
    if engine.policy().auth.mode == crate::auth::AuthMode::None && !shared.auth.no_auth_allowed() {
        return Err(ReloadError::NoAuthOffLoopback);
    }
    let current = shared.live.load();
    guard(current.engine.policy(), engine.policy())?;
    let (from, to) = (&current.engine.policy().log.dir, &engine.policy().log.dir);
    if from != to {
        return Err(ReloadError::LogDirChanged {
            from: from.clone(),
            to: to.clone(),
        });
    }
    let new_tls = engine.policy().server.tls.clone();
    if new_tls.is_some() != shared.tls.is_some() {
        return Err(ReloadError::TlsToggled(if new_tls.is_some() {
            "added"
        } else {
            "removed"
        }));
    }
    warn_if_telemetry_changed(&shared.telemetry.policy, &engine.policy().telemetry);
    let running_state = match &shared.fleet {
        Some(f) => crate::fleet::StatePolicy::Redis(f.policy.clone()),
        None => crate::fleet::StatePolicy::Local,
    };
    if running_state != engine.policy().state {
        tracing::warn!(
            "[state] changed in the policy file: it applies at the next restart (the running state backend is kept)"
        );
    }
    let next = Arc::new(LiveState { engine });
    let loaded = describe(&next);
    shared.live.store(next);
    // The certificate files were read again with the policy: new handshakes get them.
    if let (Some(state), Some(tls)) = (&shared.tls, &new_tls) {
        state.install(tls);
    }
    Ok(loaded)
}

/// Which router serves, and whether a learned one runs at all, under `policy`.
fn routers(policy: &Policy) -> (&'static str, bool) {
    match policy.learned.as_ref().map(|l| l.mode) {
        Some(LearnedMode::LearnedPrimary) => ("learned", true),
        Some(LearnedMode::RulesPrimary) => ("rules", true),
        Some(LearnedMode::RulesOnly) | None => ("rules", false),
    }
}

/// A reload that changes the serving router or drops the `[learned]` section is worth a WARN:
/// a non-atomic save can leave a file cut before `[learned]` on disk for a moment, and such a file
/// is a valid rules-only policy. With `learned.required` in the running policy it is rejected.
fn guard(current: &Policy, next: &Policy) -> Result<(), ReloadError> {
    let (from, from_learned) = routers(current);
    let (to, to_learned) = routers(next);
    let dropped = current.learned.is_some() && next.learned.is_none();
    let mut changes = Vec::new();
    if from != to {
        changes.push(format!("the {from} router served, the {to} router would"));
    }
    if dropped {
        changes.push("the [learned] section is gone".to_string());
    } else if from_learned && !to_learned {
        changes.push("the learned router would no longer run".to_string());
    }
    if changes.is_empty() {
        return Ok(());
    }
    let what = changes.join("; ");
    if current.learned.as_ref().is_some_and(|l| l.required) {
        return Err(ReloadError::LearnedRequired(what));
    }
    tracing::warn!(change = %what, "reload changes the serving router");
    Ok(())
}

/// Modification times and sizes of the config file, the keys file and every file of the bundle
/// directory.
fn fingerprint(
    config: &Path,
    bundle: Option<&Path>,
    keys: Option<&Path>,
) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let stat = |p: &Path| {
        let m = std::fs::metadata(p).ok();
        (
            p.to_path_buf(),
            m.as_ref().and_then(|m| m.modified().ok()),
            m.map_or(0, |m| m.len()),
        )
    };
    let mut out = vec![stat(config)];
    out.extend(keys.map(stat));
    if let Some(dir) = bundle {
        out.push(stat(dir));
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut files: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            out.extend(files.iter().map(|f| stat(f)));
        }
    }
    out
}

/// Poll the config file, the keys file and the bundle; reload when any changes (and has been stable for one
/// more poll, so a bundle being written is not picked up half-way).
pub async fn watch(shared: Arc<Shared>) {
    let Some(config) = shared.config_path.clone() else {
        return;
    };
    let bundle_of = |shared: &Shared| {
        let live = shared.live.load();
        live.engine
            .policy()
            .learned
            .as_ref()
            .map(|l| l.bundle.clone())
    };
    let keys_of = |shared: &Shared| shared.live.load().engine.policy().auth.keys_file.clone();
    let interval_of = |shared: &Shared| {
        let live = shared.live.load();
        live.engine
            .policy()
            .learned
            .as_ref()
            .map_or(2, |l| l.watch_secs)
    };
    let mut seen = fingerprint(
        &config,
        bundle_of(&shared).as_deref(),
        keys_of(&shared).as_deref(),
    );
    let mut pending: Option<Vec<(PathBuf, Option<SystemTime>, u64)>> = None;
    loop {
        let secs = interval_of(&shared);
        tokio::time::sleep(Duration::from_secs(secs.max(1))).await;
        if secs == 0 {
            continue;
        }
        let now = fingerprint(
            &config,
            bundle_of(&shared).as_deref(),
            keys_of(&shared).as_deref(),
        );
        if now == seen {
            pending = None;
            continue;
        }
        if pending.as_ref() != Some(&now) {
            pending = Some(now);
            continue;
        }
        tracing::info!("config, keys file or bundle changed on disk: reloading");
        let _ = reload(&shared).await;
        // Whether it worked or not, do not retry the same files in a loop.
        seen = fingerprint(
            &config,
            bundle_of(&shared).as_deref(),
            keys_of(&shared).as_deref(),
        );
        pending = None;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const EXAMPLE: &str = include_str!("../config/signalbox.toml");

    /// The example policy with `learned` as its `[learned]` section (none when empty).
    fn policy(learned: &str) -> Policy {
        let rules_only = EXAMPLE
            .find("\n[learned]")
            .map_or(EXAMPLE, |at| &EXAMPLE[..at]);
        Policy::from_toml(
            &format!("{rules_only}\n{learned}"),
            Path::new("test.toml"),
            Path::new("/tmp"),
        )
        .unwrap()
    }

    fn learned(mode: &str, required: bool) -> Policy {
        policy(&format!(
            "[learned]\nmode = \"{mode}\"\nbundle = \"b\"\nrequired = {required}\n"
        ))
    }

    #[test]
    fn the_same_routers_pass_whatever_else_changed() {
        for (mode, required) in [("learned_primary", true), ("rules_primary", false)] {
            assert!(guard(&learned(mode, required), &learned(mode, false)).is_ok());
        }
        assert!(guard(&policy(""), &policy("")).is_ok());
        assert!(guard(&policy(""), &learned("rules_only", false)).is_ok());
    }

    #[test]
    fn a_changed_serving_router_or_dropped_section_is_rejected_only_when_required() {
        let cases = [
            ("learned_primary", "", "the [learned] section is gone"),
            (
                "learned_primary",
                "rules_only",
                "the learned router would no longer run",
            ),
            (
                "learned_primary",
                "rules_primary",
                "the learned router served, the rules",
            ),
            ("rules_primary", "", "the [learned] section is gone"),
            (
                "rules_primary",
                "learned_primary",
                "the rules router served, the learned",
            ),
        ];
        for (from, to, change) in cases {
            let next = if to.is_empty() {
                policy("")
            } else {
                learned(to, false)
            };
            assert!(
                guard(&learned(from, false), &next).is_ok(),
                "{from} -> {to}"
            );
            match guard(&learned(from, true), &next) {
                Err(e @ ReloadError::LearnedRequired(_)) => {
                    let message = e.to_string();
                    assert!(message.contains(change), "{from} -> {to}: {message}");
                    assert!(message.contains("learned.required"), "{message}");
                }
                other => panic!("{from} -> {to}: expected a rejection, got {other:?}"),
            }
        }
    }
}

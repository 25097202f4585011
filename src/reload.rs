//! Hot reload of the policy and the model bundle, as one unit: load, validate (catalog, bundle
//! shapes, model ids, canary prompts), then swap the live state. A failed reload is logged and
//! counted; the running state keeps serving. Triggers: the Admin/Reload RPC, SIGHUP, and a
//! poller that watches the config file, the API keys file and the bundle directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use crate::config::{ConfigError, Policy};
use crate::engine::{DecisionEngine, EngineError};
use crate::state::{LiveState, Shared};

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
    #[error("reload task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
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
    let (from, to) = (&current.engine.policy().log.dir, &engine.policy().log.dir);
    if from != to {
        return Err(ReloadError::LogDirChanged {
            from: from.clone(),
            to: to.clone(),
        });
    }
    let next = Arc::new(LiveState { engine });
    let loaded = describe(&next);
    shared.live.store(next);
    Ok(loaded)
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

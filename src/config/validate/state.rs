//! `[state]`: local memory, or Redis shared by the replicas of a fleet.

use std::time::Duration;

use super::*;
use crate::fleet::{OnUnavailable, RedisPolicy, StatePolicy};

const MAX_TIMEOUT_MS: u64 = 60_000;
const MAX_POOL: usize = 64;
const MAX_REPLICAS_HINT: u32 = 10_000;

pub(super) fn state_policy(s: raw::State, base: &Path) -> Result<StatePolicy, ConfigError> {
    let raw::State {
        backend,
        url,
        username,
        password_file,
        password_env,
        ca_file,
        key_prefix,
        connect_timeout_ms,
        command_timeout_ms,
        pool_size,
        on_unavailable,
        replicas_hint,
        circuit_refresh_ms,
    } = s;
    match backend.as_str() {
        "local" => {
            let redis_only = [
                ("state.url", url.is_some()),
                ("state.username", username.is_some()),
                ("state.password_file", password_file.is_some()),
                ("state.password_env", password_env.is_some()),
                ("state.ca_file", ca_file.is_some()),
            ];
            if let Some((key, _)) = redis_only.iter().find(|(_, set)| *set) {
                return Err(invalid(*key, "only used with state.backend = \"redis\""));
            }
            Ok(StatePolicy::Local)
        }
        "redis" => {
            let url = redis_url(url)?;
            let password = password(password_file, password_env, base)?;
            let ca_pem = ca_file
                .map(|f| {
                    if !url.starts_with("rediss://") {
                        return Err(invalid(
                            "state.ca_file",
                            "only used with a rediss:// (TLS) url",
                        ));
                    }
                    let path = resolve_path(base, &f);
                    let pem = std::fs::read(&path).map_err(|e| {
                        invalid(
                            "state.ca_file",
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?;
                    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                        return Err(invalid(
                            "state.ca_file",
                            format!("{} holds no PEM certificate", path.display()),
                        ));
                    }
                    Ok(pem)
                })
                .transpose()?;
            if key_prefix.is_empty()
                || key_prefix.len() > 64
                || !key_prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(invalid(
                    "state.key_prefix",
                    "must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
                ));
            }
            let ms = |key: &str, v: u64| {
                if (1..=MAX_TIMEOUT_MS).contains(&v) {
                    Ok(Duration::from_millis(v))
                } else {
                    Err(invalid(
                        key,
                        format!("must be 1 to {MAX_TIMEOUT_MS} ms, not {v}"),
                    ))
                }
            };
            let connect_timeout = ms("state.connect_timeout_ms", connect_timeout_ms)?;
            let command_timeout = ms("state.command_timeout_ms", command_timeout_ms)?;
            let circuit_refresh = ms("state.circuit_refresh_ms", circuit_refresh_ms)?;
            if !(1..=MAX_POOL).contains(&pool_size) {
                return Err(invalid(
                    "state.pool_size",
                    format!("must be 1 to {MAX_POOL} connections"),
                ));
            }
            let on_unavailable = match on_unavailable.as_str() {
                "fail_closed" => OnUnavailable::FailClosed,
                "local" => OnUnavailable::Local,
                other => {
                    return Err(invalid(
                        "state.on_unavailable",
                        format!("must be \"fail_closed\" or \"local\", not {other:?}"),
                    ));
                }
            };
            if !(1..=MAX_REPLICAS_HINT).contains(&replicas_hint) {
                return Err(invalid(
                    "state.replicas_hint",
                    format!("must be 1 to {MAX_REPLICAS_HINT}"),
                ));
            }
            Ok(StatePolicy::Redis(RedisPolicy {
                url,
                username: username.filter(|u| !u.is_empty()),
                password,
                ca_pem,
                key_prefix,
                connect_timeout,
                command_timeout,
                pool_size,
                on_unavailable,
                replicas_hint,
                circuit_refresh,
            }))
        }
        other => Err(invalid(
            "state.backend",
            format!("must be \"local\" or \"redis\", not {other:?}"),
        )),
    }
}

/// `redis://host[:port][/db]` or `rediss://…`, without credentials (they would end up in logs
/// and in the policy file's readers' hands: use `password_file` or `password_env`).
fn redis_url(url: Option<String>) -> Result<String, ConfigError> {
    let url = url
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| invalid("state.url", "required with state.backend = \"redis\""))?;
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
        .ok_or_else(|| {
            invalid(
                "state.url",
                format!("{url:?} must start with redis:// or rediss:// (TLS)"),
            )
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(invalid(
            "state.url",
            "must not hold credentials: give state.username and state.password_file or state.password_env",
        ));
    }
    if authority.is_empty() {
        return Err(invalid("state.url", format!("{url:?} names no host")));
    }
    if let Err(e) = redis::IntoConnectionInfo::into_connection_info(url.as_str()) {
        return Err(invalid("state.url", format!("{url:?}: {e}")));
    }
    Ok(url)
}

/// The password from a file (relative to the policy file; a trailing newline is dropped) or an
/// environment variable, not both.
fn password(
    file: Option<String>,
    env: Option<String>,
    base: &Path,
) -> Result<Option<String>, ConfigError> {
    match (file, env) {
        (Some(_), Some(_)) => Err(invalid(
            "state.password_env",
            "give state.password_file or state.password_env, not both",
        )),
        (Some(f), None) => {
            let path = resolve_path(base, &f);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                invalid(
                    "state.password_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let pw = text.trim_end_matches(['\r', '\n']).to_string();
            if pw.is_empty() {
                return Err(invalid(
                    "state.password_file",
                    format!("{} is empty", path.display()),
                ));
            }
            Ok(Some(pw))
        }
        (None, Some(var)) => match std::env::var(&var) {
            Ok(pw) if !pw.is_empty() => Ok(Some(pw)),
            Ok(_) => Err(invalid(
                "state.password_env",
                format!("the environment variable {var} is empty"),
            )),
            Err(_) => Err(invalid(
                "state.password_env",
                format!("the environment variable {var} is not set"),
            )),
        },
        (None, None) => Ok(None),
    }
}

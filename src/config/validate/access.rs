//! The sections about who may connect and what is kept about them: `[server]` (limits,
//! connection hygiene, `[server.tls]`), `[privacy]`, `[auth]` and `[rate_limits]`.

use std::path::Path;

use super::*;
use crate::privacy::{MIN_KEY_BYTES, UserIds};

/// `[server]`.
pub(super) fn server_policy(server: raw::Server, base: &Path) -> Result<ServerPolicy, ConfigError> {
    let raw::Server {
        max_prompt_bytes,
        decision_ttl_secs,
        max_tracked_decisions,
        max_message_bytes,
        max_metadata_bytes,
        preface_timeout_secs,
        idle_timeout_secs,
        max_connection_age_secs,
        keepalive_interval_secs,
        keepalive_timeout_secs,
        max_connections,
        tls,
    } = server;
    for (key, value) in [
        ("server.preface_timeout_secs", preface_timeout_secs),
        ("server.idle_timeout_secs", idle_timeout_secs),
        ("server.keepalive_timeout_secs", keepalive_timeout_secs),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be positive"));
        }
    }
    if max_connections == 0 {
        return Err(invalid("server.max_connections", "must be positive"));
    }
    if max_prompt_bytes == 0 {
        return Err(invalid("server.max_prompt_bytes", "must be positive"));
    }
    if max_tracked_decisions == 0 {
        return Err(invalid("server.max_tracked_decisions", "must be positive"));
    }
    if decision_ttl_secs == 0 {
        return Err(invalid("server.decision_ttl_secs", "must be positive"));
    }
    // A prompt at the limit must fit in a message, with room for the other fields.
    if max_message_bytes < max_prompt_bytes.saturating_add(64 * 1024) {
        return Err(invalid(
            "server.max_message_bytes",
            format!(
                "must be at least server.max_prompt_bytes + 64 KiB ({})",
                max_prompt_bytes.saturating_add(64 * 1024)
            ),
        ));
    }
    if max_message_bytes > MAX_MESSAGE_BYTES {
        return Err(invalid(
            "server.max_message_bytes",
            format!("at most {MAX_MESSAGE_BYTES}"),
        ));
    }
    if !(1024..=MAX_METADATA_BYTES).contains(&max_metadata_bytes) {
        return Err(invalid(
            "server.max_metadata_bytes",
            format!("must be in 1024..={MAX_METADATA_BYTES}"),
        ));
    }
    Ok(ServerPolicy {
        max_prompt_bytes,
        decision_ttl_secs,
        max_tracked_decisions,
        max_message_bytes,
        max_metadata_bytes,
        preface_timeout_secs,
        idle_timeout_secs,
        max_connection_age_secs,
        keepalive_interval_secs,
        keepalive_timeout_secs,
        max_connections,
        tls: tls.map(|t| tls_policy(t, base)).transpose()?,
    })
}

/// `[server.tls]`: paths relative to the config file's directory; the files are read and
/// checked now, so a missing or invalid one is an error naming its key and path.
pub(super) fn tls_policy(tls: raw::Tls, base: &Path) -> Result<TlsPolicy, ConfigError> {
    let raw::Tls {
        cert,
        key,
        client_ca,
        handshake_timeout_secs,
        watch_secs,
    } = tls;
    let path = |k: &str, p: &str| {
        if p.trim().is_empty() {
            Err(invalid(k, "must not be empty"))
        } else {
            Ok(resolve_path(base, p))
        }
    };
    let cert = path("server.tls.cert", &cert)?;
    let key = path("server.tls.key", &key)?;
    let client_ca = client_ca
        .map(|p| path("server.tls.client_ca", &p))
        .transpose()?;
    if handshake_timeout_secs == 0 {
        return Err(invalid(
            "server.tls.handshake_timeout_secs",
            "must be positive",
        ));
    }
    let loaded = crate::tls::load(crate::tls::TlsFiles {
        cert: &cert,
        key: &key,
        client_ca: client_ca.as_deref(),
    })
    .map_err(|e| invalid(e.key, format!("{}: {}", e.path.display(), e.message)))?;
    Ok(TlsPolicy {
        cert,
        key,
        client_ca,
        handshake_timeout_secs,
        watch_secs,
        loaded,
    })
}

/// `[privacy]`: user ids in clear, or replaced by their HMAC under the key in `hmac_key_file`.
pub(super) fn privacy_policy(privacy: raw::Privacy, base: &Path) -> Result<UserIds, ConfigError> {
    let raw::Privacy {
        user_id,
        hmac_key_file,
    } = privacy;
    match user_id.as_str() {
        "clear" => {
            if hmac_key_file.trim().is_empty() {
                Ok(UserIds::Clear)
            } else {
                Err(invalid(
                    "privacy.hmac_key_file",
                    "only used with privacy.user_id = \"hmac\"",
                ))
            }
        }
        "hmac" => {
            if hmac_key_file.trim().is_empty() {
                return Err(invalid(
                    "privacy.hmac_key_file",
                    "required with privacy.user_id = \"hmac\"",
                ));
            }
            let path = resolve_path(base, &hmac_key_file);
            let bytes = std::fs::read(&path).map_err(|e| {
                invalid(
                    "privacy.hmac_key_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            // A trailing newline from `echo` or an editor is not part of the key.
            let key = bytes.trim_ascii_end();
            if key.len() < MIN_KEY_BYTES {
                return Err(invalid(
                    "privacy.hmac_key_file",
                    format!(
                        "{} holds {} bytes of key; at least {MIN_KEY_BYTES} are needed (e.g. `head -c 32 /dev/urandom | base64`)",
                        path.display(),
                        key.len()
                    ),
                ));
            }
            UserIds::hmac(key).ok_or_else(|| {
                invalid(
                    "privacy.hmac_key_file",
                    format!("{}: not a usable HMAC key", path.display()),
                )
            })
        }
        other => Err(invalid(
            "privacy.user_id",
            format!("unknown mode {other:?}, expected \"clear\" or \"hmac\""),
        )),
    }
}

/// `[auth]`: the mode, reflection access, and the keys file (relative to the policy file),
/// read and validated here so that a bad keys file fails the load or reload like a bad policy.
pub(super) fn auth_policy(
    auth: raw::Auth,
    base: &Path,
) -> Result<crate::auth::AuthPolicy, ConfigError> {
    use crate::auth::{AuthMode, AuthPolicy, ReflectionAccess};
    let raw::Auth {
        mode,
        keys_file,
        reflection,
    } = auth;
    let mode = AuthMode::parse(&mode).ok_or_else(|| {
        invalid(
            "auth.mode",
            format!("unknown mode {mode:?}, expected \"none\" or \"api_key\""),
        )
    })?;
    let reflection = match reflection.as_str() {
        "open" => ReflectionAccess::Open,
        "authenticated" => ReflectionAccess::Authenticated,
        other => {
            return Err(invalid(
                "auth.reflection",
                format!("unknown value {other:?}, expected \"open\" or \"authenticated\""),
            ));
        }
    };
    let keys_file = match keys_file {
        Some(f) if f.trim().is_empty() => {
            return Err(invalid("auth.keys_file", "must not be empty"));
        }
        Some(f) => Some(resolve_path(base, &f)),
        None if mode == AuthMode::ApiKey => {
            return Err(invalid(
                "auth.keys_file",
                "required with mode = \"api_key\" (create it with `signalbox keys create`)",
            ));
        }
        None => None,
    };
    let keys = match &keys_file {
        Some(path) => crate::auth::keys::load(path)?,
        None => crate::auth::KeyRing::default(),
    };
    Ok(AuthPolicy {
        mode,
        reflection,
        keys_file,
        keys: std::sync::Arc::new(keys),
    })
}

/// `[rate_limits]`: a rate per named tenant (unique) and an optional default for the others.
pub(super) fn rate_limit_policy(
    limits: raw::RateLimits,
) -> Result<crate::auth::RateLimitPolicy, ConfigError> {
    use crate::auth::Rate;
    let raw::RateLimits {
        default_tenant,
        tenants,
    } = limits;
    let rate = |key: &str, per_sec: f64, burst: u32| {
        Rate::new(per_sec, burst)
            .map_err(|(field, message)| invalid(format!("{key}.{field}"), message))
    };
    let default_tenant = default_tenant
        .map(|r| {
            let raw::RateSpec {
                requests_per_sec,
                burst,
            } = r;
            rate("rate_limits.default_tenant", requests_per_sec, burst)
        })
        .transpose()?;
    let mut by_tenant = HashMap::new();
    for (i, t) in tenants.into_iter().enumerate() {
        let raw::TenantRate {
            tenant,
            requests_per_sec,
            burst,
        } = t;
        let key = format!("rate_limits.tenants[{i}]");
        if tenant.trim().is_empty() {
            return Err(invalid(format!("{key}.tenant"), "must not be empty"));
        }
        let r = rate(&key, requests_per_sec, burst)?;
        if by_tenant.insert(tenant.clone(), r).is_some() {
            return Err(invalid(
                format!("{key}.tenant"),
                format!("duplicate tenant {tenant:?}"),
            ));
        }
    }
    Ok(crate::auth::RateLimitPolicy {
        default_tenant,
        tenants: by_tenant,
    })
}

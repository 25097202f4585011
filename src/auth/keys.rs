//! The API keys file and the key ring loaded from it.
//!
//! A key handed to a caller is `sbx_<id>_<secret>`: a 16-hex-digit id (so the server finds the
//! record without scanning) and 64 hex digits of secret (256 bits from the OS RNG). The file
//! holds, per key, its id, the SHA-256 of the secret, the tenant it acts for, its roles, an
//! optional expiry and an optional rate limit; never the secret. It is TOML:
//!
//! ```toml
//! [[keys]]
//! id = "5f0c1e2d3a4b6978"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! tenant = "acme"
//! roles = ["route", "report"]
//! created = "2026-12-03T10:00:00Z"
//! expires = "2027-01-01T00:00:00Z"   # optional
//! requests_per_sec = 50.0            # optional, with burst
//! burst = 100
//! ```
//!
//! [`create_key`] and [`revoke_key`] are what `signalbox keys create|revoke` run: they validate
//! the whole file first and replace it atomically (temporary file, fsync, rename; mode 0600).

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ratelimit::Rate;
use super::{KeyIdentity, Role, Roles};

/// Every key starts with this.
pub const KEY_PREFIX: &str = "sbx_";
/// Hex digits of a key id (8 random bytes).
pub const ID_HEX: usize = 16;
/// Hex digits of a key secret (32 random bytes: 256 bits).
pub const SECRET_HEX: usize = 64;
/// The length of a whole key: `sbx_` + id + `_` + secret.
pub const KEY_LEN: usize = KEY_PREFIX.len() + ID_HEX + 1 + SECRET_HEX;
/// Longest tenant id a key may name (the API's limit on ids).
const MAX_TENANT_BYTES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read keys file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid keys file {path}: line {line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("cannot write keys file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "keys file {path} is being written by another command ({tmp} exists; remove it if no other `signalbox keys` command is running)"
    )]
    Busy { path: PathBuf, tmp: PathBuf },
    #[error("keys file {path}: no key with id {id:?}")]
    UnknownId { path: PathBuf, id: String },
    #[error("invalid key: {0}")]
    BadRequest(String),
    #[error("the OS random number generator failed: {0}")]
    Random(String),
}

/// A whole API key. Shown once, when created; its `Debug` and `Display` never show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// The key itself, to hand to the caller (and nowhere else).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// What a new key is for.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub tenant: String,
    pub roles: Roles,
    pub expires: Option<DateTime<Utc>>,
    pub rate: Option<Rate>,
}

/// A key just created: its id (logged, listed) and the key to hand out once.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub id: String,
    pub key: ApiKey,
}

/// Why a request's credentials were refused. The caller always gets the same answer; this is
/// for the log and the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `authorization` metadata.
    Missing,
    /// Not `Bearer sbx_<id>_<secret>`.
    Malformed,
    /// Well-formed, but no key has that id.
    UnknownKey,
    /// The key exists, the secret does not match.
    WrongSecret { key_id: String },
    /// The key's `expires` has passed.
    Expired { key_id: String },
}

impl AuthFailure {
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::UnknownKey => "unknown key id",
            AuthFailure::WrongSecret { .. } => "wrong secret",
            AuthFailure::Expired { .. } => "expired",
        }
    }

    /// The id of the key the attempt named, when that key exists.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            AuthFailure::WrongSecret { key_id } | AuthFailure::Expired { key_id } => Some(key_id),
            AuthFailure::Missing | AuthFailure::Malformed | AuthFailure::UnknownKey => None,
        }
    }
}

struct KeyEntry {
    sha256: [u8; 32],
    expires: Option<DateTime<Utc>>,
    identity: Arc<KeyIdentity>,
}

/// The keys of one keys file, by id.
#[derive(Default)]
pub struct KeyRing {
    by_id: HashMap<String, KeyEntry>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.by_id.len())
            .finish()
    }
}

/// A digest no secret hashes to in practice, compared against when the id is unknown so that an
/// unknown id costs the same work as a wrong secret.
const NO_KEY: [u8; 32] = [0; 32];

impl KeyRing {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The identity of the caller presenting `authorization` (the raw metadata value), at `now`.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<Arc<KeyIdentity>, AuthFailure> {
        let header = authorization.ok_or(AuthFailure::Missing)?;
        let token = bearer_token(header).ok_or(AuthFailure::Malformed)?;
        let (id, secret) = split_key(token).ok_or(AuthFailure::Malformed)?;
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let Some(entry) = self.by_id.get(id) else {
            // Same work as a known id; the result is thrown away.
            let _ = digest.ct_eq(&NO_KEY);
            return Err(AuthFailure::UnknownKey);
        };
        if !bool::from(digest.ct_eq(&entry.sha256)) {
            return Err(AuthFailure::WrongSecret {
                key_id: entry.identity.key_id.clone(),
            });
        }
        if entry.expires.is_some_and(|at| at <= now) {
            return Err(AuthFailure::Expired {
                key_id: entry.identity.key_id.clone(),
            });
        }
        Ok(entry.identity.clone())
    }
}

/// `Bearer <token>` (the scheme case-insensitive, one space), the token visible ASCII.
fn bearer_token(header: &[u8]) -> Option<&str> {
    const SCHEME: &[u8] = b"bearer ";
    // Anything longer than a key is not one: refuse before looking further.
    if header.len() != SCHEME.len() + KEY_LEN {
        return None;
    }
    let (scheme, token) = header.split_at(SCHEME.len());
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    std::str::from_utf8(token).ok()
}

/// `sbx_<16 hex id>_<64 hex secret>` → (id, secret), lowercase hex only.
fn split_key(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(KEY_PREFIX)?;
    if rest.len() != ID_HEX + 1 + SECRET_HEX || rest.as_bytes()[ID_HEX] != b'_' {
        return None;
    }
    let (id, secret) = (&rest[..ID_HEX], &rest[ID_HEX + 1..]);
    (is_lower_hex(id) && is_lower_hex(secret)).then_some((id, secret))
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// Hex SHA-256 of a key's secret, as the keys file stores it.
pub fn secret_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeysFile {
    #[serde(default)]
    keys: Vec<toml::Spanned<RawKey>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: String,
    sha256: String,
    tenant: String,
    roles: Vec<String>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    requests_per_sec: Option<f64>,
    #[serde(default)]
    burst: Option<u32>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.bytes().filter(|b| *b == b'\n').count())
        + 1
}

/// Read and validate a keys file.
pub fn load(path: &Path) -> Result<KeyRing, KeysError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Validate keys file text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<KeyRing, KeysError> {
    let invalid = |line: usize, message: String| KeysError::Invalid {
        path: path.to_path_buf(),
        line,
        message,
    };
    let raw: RawKeysFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        invalid(line, e.message().trim_end().to_string())
    })?;
    let mut by_id = HashMap::with_capacity(raw.keys.len());
    for spanned in raw.keys {
        let line = line_of(text, spanned.span().start);
        let (id, entry) = key_entry(spanned.into_inner()).map_err(|m| invalid(line, m))?;
        if by_id.contains_key(&id) {
            return Err(invalid(line, format!("id: duplicate key id {id:?}")));
        }
        by_id.insert(id, entry);
    }
    Ok(KeyRing { by_id })
}

/// One record: every field checked, the error naming it.
fn key_entry(raw: RawKey) -> Result<(String, KeyEntry), String> {
    let RawKey {
        id,
        sha256,
        tenant,
        roles,
        created,
        expires,
        requests_per_sec,
        burst,
    } = raw;
    if id.len() != ID_HEX || !is_lower_hex(&id) {
        return Err(format!(
            "id: must be {ID_HEX} lowercase hex digits (as `signalbox keys create` writes), got {id:?}"
        ));
    }
    let sha256 = unhex32(&sha256.to_ascii_lowercase())
        .ok_or("sha256: must be the 64 hex digits of the SHA-256 of the key's secret")?;
    if tenant.trim().is_empty() {
        return Err("tenant: must not be empty".into());
    }
    if tenant.len() > MAX_TENANT_BYTES || tenant.chars().any(char::is_control) {
        return Err(format!(
            "tenant: at most {MAX_TENANT_BYTES} bytes, no control characters"
        ));
    }
    if roles.is_empty() {
        return Err("roles: at least one of \"route\", \"report\", \"admin\"".into());
    }
    let mut parsed = Roles::NONE;
    for r in &roles {
        let role = Role::parse(r).ok_or_else(|| {
            format!("roles: unknown role {r:?}, expected \"route\", \"report\" or \"admin\"")
        })?;
        parsed = parsed.with(role);
    }
    if let Some(c) = &created {
        DateTime::parse_from_rfc3339(c)
            .map_err(|e| format!("created: not an RFC 3339 time ({e}): {c:?}"))?;
    }
    let expires = expires
        .map(|e| {
            DateTime::parse_from_rfc3339(&e)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|err| format!("expires: not an RFC 3339 time ({err}): {e:?}"))
        })
        .transpose()?;
    let rate = match (requests_per_sec, burst) {
        (None, None) => None,
        (Some(per_sec), Some(burst)) => Some(
            Rate::new(per_sec, burst).map_err(|(field, message)| format!("{field}: {message}"))?,
        ),
        (Some(_), None) => return Err("burst: required with requests_per_sec".into()),
        (None, Some(_)) => return Err("requests_per_sec: required with burst".into()),
    };
    let identity = Arc::new(KeyIdentity {
        key_id: id.clone(),
        tenant,
        roles: parsed,
        rate,
    });
    Ok((
        id,
        KeyEntry {
            sha256,
            expires,
            identity,
        },
    ))
}

fn random_hex(bytes: usize) -> Result<String, KeysError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| KeysError::Random(e.to_string()))?;
    Ok(hex(&buf))
}

/// Quote a string as a TOML basic string.
fn toml_string(s: &str) -> String {
    // serde_json's escaping is valid TOML basic-string escaping for what a tenant may hold
    // (no control characters).
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

const HEADER: &str = "# signalbox API keys: written by `signalbox keys create` and `signalbox keys revoke`.\n\
# One [[keys]] record per key: its id, the SHA-256 of its secret (never the secret), the tenant\n\
# it acts for, its roles (route, report, admin), and optionally expires and a rate limit\n\
# (requests_per_sec with burst). See docs/operations.md#authentication.\n";

/// Create a key for `spec`: append its record to the keys file at `path` (created if missing)
/// and return the key, which exists nowhere else. The file is validated first and replaced
/// atomically.
pub fn create_key(path: &Path, spec: &NewKey) -> Result<CreatedKey, KeysError> {
    if spec.roles == Roles::NONE {
        return Err(KeysError::BadRequest("at least one role".into()));
    }
    let tenant = &spec.tenant;
    if tenant.trim().is_empty()
        || tenant.len() > MAX_TENANT_BYTES
        || tenant.chars().any(char::is_control)
    {
        return Err(KeysError::BadRequest(format!(
            "tenant must be non-empty, at most {MAX_TENANT_BYTES} bytes, without control characters"
        )));
    }
    rewrite(path, |current| {
        let text = current.unwrap_or_else(|| HEADER.to_string());
        let ring = parse(&text, path)?;
        let id = loop {
            let id = random_hex(ID_HEX / 2)?;
            if !ring.by_id.contains_key(&id) {
                break id;
            }
        };
        let secret = random_hex(SECRET_HEX / 2)?;
        let mut record = format!(
            "\n[[keys]]\nid = \"{id}\"\nsha256 = \"{}\"\ntenant = {}\nroles = [{}]\ncreated = \"{}\"\n",
            secret_hash(&secret),
            toml_string(tenant),
            spec.roles
                .iter()
                .map(|r| format!("\"{}\"", r.as_str()))
                .collect::<Vec<_>>()
                .join(", "),
            Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        if let Some(at) = spec.expires {
            record.push_str(&format!(
                "expires = \"{}\"\n",
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ));
        }
        if let Some(rate) = spec.rate {
            record.push_str(&format!(
                "requests_per_sec = {:?}\nburst = {}\n",
                rate.per_sec, rate.burst
            ));
        }
        let mut next = text;
        if !next.is_empty() && !next.ends_with('\n') {
            next.push('\n');
        }
        next.push_str(&record);
        // What is written must load.
        let check = parse(&next, path)?;
        if !check.by_id.contains_key(&id) {
            return Err(KeysError::BadRequest("the new record did not load".into()));
        }
        let created = CreatedKey {
            key: ApiKey(format!("{KEY_PREFIX}{id}_{secret}")),
            id,
        };
        Ok((next, created))
    })
}

/// Remove the key `id` from the keys file. A running server stops accepting it at its next
/// reload of the file.
pub fn revoke_key(path: &Path, id: &str) -> Result<(), KeysError> {
    rewrite(path, |current| {
        let text = current.ok_or_else(|| KeysError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
        let ring = parse(&text, path)?;
        if !ring.by_id.contains_key(id) {
            return Err(KeysError::UnknownId {
                path: path.to_path_buf(),
                id: id.to_string(),
            });
        }
        let next = without_record(&text, id, path)?;
        let check = parse(&next, path)?;
        if check.by_id.contains_key(id) || check.len() + 1 != ring.len() {
            return Err(KeysError::BadRequest(format!(
                "cannot remove key {id:?} from {}: edit the file by hand",
                path.display()
            )));
        }
        Ok((next, ()))
    })
}

/// The text without the `[[keys]]` record of `id`: from its header line up to the next header
/// (comment and blank lines right before the next header stay, with it).
fn without_record(text: &str, id: &str, path: &Path) -> Result<String, KeysError> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let headers: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim() == "[[keys]]")
        .map(|(i, _)| i)
        .collect();
    for (n, &start) in headers.iter().enumerate() {
        let mut end = headers.get(n + 1).copied().unwrap_or(lines.len());
        let chunk: String = lines[start..end].concat();
        let is_it = parse(&chunk, path)
            .ok()
            .is_some_and(|r| r.by_id.contains_key(id));
        if !is_it {
            continue;
        }
        if n + 1 < headers.len() {
            while end > start + 1 {
                let l = lines[end - 1].trim();
                if l.is_empty() || l.starts_with('#') {
                    end -= 1;
                } else {
                    break;
                }
            }
        }
        let mut out: String = lines[..start].concat();
        out.push_str(&lines[end..].concat());
        return Ok(out);
    }
    Err(KeysError::BadRequest(format!(
        "cannot find the record of key {id:?} in {}: edit the file by hand",
        path.display()
    )))
}

/// Replace the keys file with what `edit` makes of its current text (`None`: no file yet).
/// The new text goes to a temporary file beside it (mode 0600), created exclusively before the
/// current text is read, so two commands cannot both edit the same version; then it is
/// fsynced and renamed over the file.
fn rewrite<T>(
    path: &Path,
    edit: impl FnOnce(Option<String>) -> Result<(String, T), KeysError>,
) -> Result<T, KeysError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "keys".into());
    let tmp = dir.join(format!(".{name}.tmp"));
    let write_err = |source| KeysError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(&tmp) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(KeysError::Busy {
                path: path.to_path_buf(),
                tmp,
            });
        }
        Err(e) => return Err(write_err(e)),
    };
    let replace = || -> Result<T, KeysError> {
        let current = match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(KeysError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let (next, out) = edit(current)?;
        file.write_all(next.as_bytes())
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(write_err)?;
        Ok(out)
    };
    let result = replace();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else if let Ok(d) = std::fs::File::open(&dir) {
        // The rename itself survives a crash once the directory is synced.
        let _ = d.sync_all();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tenant: &str, roles: &[Role]) -> NewKey {
        NewKey {
            tenant: tenant.into(),
            roles: roles.iter().fold(Roles::NONE, |r, x| r.with(*x)),
            expires: None,
            rate: None,
        }
    }

    fn bearer(key: &ApiKey) -> Vec<u8> {
        format!("Bearer {}", key.expose()).into_bytes()
    }

    #[test]
    fn created_keys_authenticate_and_only_their_hash_is_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keys.toml");
        let a = create_key(&path, &spec("acme", &[Role::Route, Role::Report])).unwrap();
        let b = create_key(&path, &spec("globex", &[Role::Admin])).unwrap();
        assert_eq!(a.key.expose().len(), KEY_LEN);
        assert!(a.key.expose().starts_with(&format!("sbx_{}_", a.id)));
        assert_eq!(format!("{:?}", a.key), "ApiKey(<redacted>)");
        let text = std::fs::read_to_string(&path).unwrap();
        let secret = &a.key.expose()[KEY_PREFIX.len() + ID_HEX + 1..];
        assert!(!text.contains(secret));
        assert!(text.contains(&secret_hash(secret)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let ring = load(&path).unwrap();
        assert_eq!(ring.len(), 2);
        let now = Utc::now();
        let who = ring.authenticate(Some(&bearer(&a.key)), now).unwrap();
        assert_eq!(who.tenant, "acme");
        assert!(who.roles.contains(Role::Route) && who.roles.contains(Role::Report));
        assert!(!who.roles.contains(Role::Admin));
        let lower = format!("bearer {}", b.key.expose());
        assert_eq!(
            ring.authenticate(Some(lower.as_bytes()), now)
                .unwrap()
                .key_id,
            b.id
        );

        revoke_key(&path, &a.id).unwrap();
        let ring = load(&path).unwrap();
        assert_eq!(ring.len(), 1);
        assert_eq!(
            ring.authenticate(Some(&bearer(&a.key)), now),
            Err(AuthFailure::UnknownKey)
        );
        assert!(ring.authenticate(Some(&bearer(&b.key)), now).is_ok());
        assert!(matches!(
            revoke_key(&path, &a.id),
            Err(KeysError::UnknownId { .. })
        ));
        assert!(!tmp.path().join(".keys.toml.tmp").exists());
    }

    #[test]
    fn malformed_wrong_and_expired_keys_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keys.toml");
        let ok = create_key(&path, &spec("acme", &[Role::Route])).unwrap();
        let mut old = spec("acme", &[Role::Route]);
        old.expires = Some(Utc::now() - chrono::Duration::seconds(1));
        let expired = create_key(&path, &old).unwrap();
        let ring = load(&path).unwrap();
        let now = Utc::now();
        let k = ok.key.expose();
        let last = if k.ends_with('0') { "1" } else { "0" };
        let wrong_secret = format!("Bearer {}{last}", &k[..k.len() - 1]);
        let junk = vec![b'x'; 10 * 1024];
        let expired_header = bearer(&expired.key);
        let cases: Vec<(Option<&[u8]>, AuthFailure)> = vec![
            (None, AuthFailure::Missing),
            (Some(b"Bearer"), AuthFailure::Malformed),
            (Some(b"Bearer "), AuthFailure::Malformed),
            (Some(b"Basic dXNlcjpwYXNz"), AuthFailure::Malformed),
            (Some(&junk), AuthFailure::Malformed),
            (Some("Bearer sbx_é".as_bytes()), AuthFailure::Malformed),
            (Some(k.as_bytes()), AuthFailure::Malformed),
            (
                Some(b"Bearer sbx_0000000000000000_0000000000000000000000000000000000000000000000000000000000000000"),
                AuthFailure::UnknownKey,
            ),
            (
                Some(wrong_secret.as_bytes()),
                AuthFailure::WrongSecret {
                    key_id: ok.id.clone(),
                },
            ),
            (
                Some(&expired_header),
                AuthFailure::Expired {
                    key_id: expired.id.clone(),
                },
            ),
        ];
        for (header, want) in cases {
            assert_eq!(ring.authenticate(header, now).err(), Some(want));
        }
        let upper = format!("Bearer {}", k.to_ascii_uppercase().replace("SBX_", "sbx_"));
        assert_eq!(
            ring.authenticate(Some(upper.as_bytes()), now).err(),
            Some(AuthFailure::Malformed)
        );
    }

    #[test]
    fn invalid_files_name_the_line_and_field() {
        let p = Path::new("keys.toml");
        let good = "[[keys]]\nid = \"0123456789abcdef\"\nsha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\ntenant = \"acme\"\nroles = [\"route\"]\n";
        assert_eq!(parse(good, p).unwrap().len(), 1);
        let err = |text: &str| parse(text, p).err().map(|e| e.to_string()).unwrap();
        let e = err(&format!(
            "# comment\n{good}\n[[keys]]\nid = \"0123456789abcdef\"\nsha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\ntenant = \"b\"\nroles = [\"admin\"]\n"
        ));
        assert!(
            e.contains("line 8") && e.contains("duplicate key id"),
            "{e}"
        );
        let e = err(&good.replace("\"route\"", "\"root\""));
        assert!(
            e.contains("line 1") && e.contains("roles: unknown role"),
            "{e}"
        );
        let e = err(&format!(
            "\n\n{}",
            good.replace("sha256 = \"9f", "sha256 = \"zz")
        ));
        assert!(e.contains("line 3") && e.contains("sha256"), "{e}");
        let e = err(&format!("{good}secret = \"x\"\n"));
        assert!(e.contains("line 6") && e.contains("secret"), "{e}");
        let e = err(&format!("{good}expires = \"tomorrow\"\n"));
        assert!(e.contains("expires"), "{e}");
        let e = err(&format!("{good}requests_per_sec = 5.0\n"));
        assert!(e.contains("burst: required"), "{e}");
        let e = err(&format!("{good}requests_per_sec = 0.0\nburst = 3\n"));
        assert!(e.contains("requests_per_sec"), "{e}");
        let e = err("[[keys]\n");
        assert!(e.contains("line 1"), "{e}");
        assert!(parse("", p).unwrap().is_empty());
    }

    #[test]
    fn a_leftover_temp_file_refuses_a_concurrent_write() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keys.toml");
        std::fs::write(tmp.path().join(".keys.toml.tmp"), "").unwrap();
        assert!(matches!(
            create_key(&path, &spec("acme", &[Role::Route])),
            Err(KeysError::Busy { .. })
        ));
        assert!(!path.exists());
        std::fs::remove_file(tmp.path().join(".keys.toml.tmp")).unwrap();
        // A failed edit leaves no temporary file behind.
        assert!(matches!(
            revoke_key(&path, "0123456789abcdef"),
            Err(KeysError::Read { .. })
        ));
        assert!(!tmp.path().join(".keys.toml.tmp").exists());
        create_key(&path, &spec("acme", &[Role::Route])).unwrap();
    }

    #[test]
    fn revoking_keeps_the_other_records_and_comments() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keys.toml");
        let ids: Vec<String> = (0..3)
            .map(|_| create_key(&path, &spec("acme", &[Role::Route])).unwrap().id)
            .collect();
        revoke_key(&path, &ids[1]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(HEADER));
        assert!(text.contains(&ids[0]) && !text.contains(&ids[1]) && text.contains(&ids[2]));
        revoke_key(&path, &ids[2]).unwrap();
        revoke_key(&path, &ids[0]).unwrap();
        assert!(load(&path).unwrap().is_empty());
    }
}

//! Replica ids: the name each replica's segments carry (`signalbox serve --replica-id`,
//! default `<host name>-<port>`), so several replicas can write into one directory.

use std::fmt;
use std::str::FromStr;

pub use signalbox_features::log_segments::ReplicaIdError;
use signalbox_features::log_segments::{REPLICA_ID_MAX_LEN, check_replica_id, is_replica_id_char};

/// A checked replica id: 1 to 64 characters of `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplicaId(String);

impl ReplicaId {
    pub fn new(id: impl Into<String>) -> Result<ReplicaId, ReplicaIdError> {
        let id = id.into();
        check_replica_id(&id)?;
        Ok(ReplicaId(id))
    }

    /// The id of a log opened without a server, or before the server has named it.
    pub fn local() -> ReplicaId {
        ReplicaId("local".to_string())
    }

    /// `<host name>-<port>`: the default of a server listening on `port`. Characters a replica
    /// id cannot hold become `_`, and a long host name is cut to fit.
    pub fn for_host_and_port(port: u16) -> ReplicaId {
        let suffix = format!("-{port}");
        let mut host: String = host_name()
            .chars()
            .map(|c| if is_replica_id_char(c) { c } else { '_' })
            .take(REPLICA_ID_MAX_LEN - suffix.len())
            .collect();
        if host.is_empty() {
            host.push_str("host");
        }
        ReplicaId(host + &suffix)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ReplicaId {
    type Err = ReplicaIdError;

    fn from_str(s: &str) -> Result<ReplicaId, ReplicaIdError> {
        ReplicaId::new(s)
    }
}

/// This machine's host name: `/proc/sys/kernel/hostname`, else `gethostname(2)`; empty if
/// neither answers.
pub fn host_name() -> String {
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let name = name.trim();
        if !name.is_empty() {
            return name.to_string();
        }
    }
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer passed by pointer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).trim().to_string()
}

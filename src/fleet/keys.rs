//! Key names. Everything of one tenant (its accounts' spend and holds, the outcome marks of its
//! decisions, its rate-limit buckets) shares one Redis Cluster hash tag, `{<prefix>:t:<tenant>}`,
//! so each multi-key script runs on one slot; all circuit breakers share `{<prefix>:cb}`. A
//! decision (read by id alone, at ReportOutcome) is one key of its own.

/// Names and user ids as they appear in keys: `%`, `{`, `}` and `:` escaped, so no name can
/// close a hash tag or pose as another key's part.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            ':' => out.push_str("%3A"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    fn tenant_tag(&self, tenant: &str) -> String {
        format!("{{{}:t:{}}}", self.prefix, esc(tenant))
    }

    /// An account's day spend, month spend, holds and hold expiries (`user` empty: the
    /// tenant's own account). `day` is `YYYYMMDD`, `month` `YYYYMM` (UTC).
    pub fn account(&self, tenant: &str, user: &str, day: &str, month: &str) -> [String; 4] {
        let base = if user.is_empty() {
            format!("{}:a:-", self.tenant_tag(tenant))
        } else {
            format!("{}:a:u{}", self.tenant_tag(tenant), esc(user))
        };
        [
            format!("{base}:d:{day}"),
            format!("{base}:m:{month}"),
            format!("{base}:h"),
            format!("{base}:hx"),
        ]
    }

    /// The attempts reported for a decision, and whether its hold was released.
    pub fn marks(&self, tenant: &str, decision_id: &str) -> String {
        format!("{}:o:{}", self.tenant_tag(tenant), esc(decision_id))
    }

    pub fn decision(&self, decision_id: &str) -> String {
        format!("{}:d:{}", self.prefix, esc(decision_id))
    }

    /// A breaker (`scope` model or provider) and its failure list.
    pub fn breaker(&self, scope: &str, name: &str) -> [String; 2] {
        let b = format!("{{{}:cb}}:{scope}:{}", self.prefix, esc(name));
        let f = format!("{b}:f");
        [b, f]
    }

    pub fn tenant_bucket(&self, tenant: &str) -> String {
        format!("{}:rl", self.tenant_tag(tenant))
    }

    /// An API key's bucket, under its tenant's tag (checked in one script with the tenant's).
    pub fn key_bucket(&self, tenant: &str, key_id: &str) -> String {
        format!("{}:rlk:{}", self.tenant_tag(tenant), esc(key_id))
    }
}

/// The Redis Cluster hash tag of a key: the part between the first `{` and the next `}`.
#[cfg(test)]
fn hash_tag(key: &str) -> &str {
    let Some(open) = key.find('{') else {
        return key;
    };
    match key[open + 1..].find('}') {
        Some(len) if len > 0 => &key[open + 1..open + 1 + len],
        _ => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_keys_share_one_slot_whatever_the_names() {
        let k = Keys::new("sb");
        for tenant in ["acme", "we{ir}d:tenant%", "}", "{"] {
            let mut all: Vec<String> = Vec::new();
            all.extend(k.account(tenant, "", "20261202", "202612"));
            all.extend(k.account(tenant, "u:1}", "20261202", "202612"));
            all.push(k.marks(tenant, "d-1"));
            all.push(k.tenant_bucket(tenant));
            all.push(k.key_bucket(tenant, "key{1}"));
            let tag = hash_tag(&all[0]).to_string();
            assert!(tag.starts_with("sb:t:"), "{tag}");
            assert!(all.iter().all(|key| hash_tag(key) == tag), "{all:?}");
        }
        assert_ne!(
            hash_tag(&k.account("a", "", "d", "m")[0]),
            hash_tag(&k.account("b", "", "d", "m")[0])
        );
        // A user id cannot pose as the tenant's own account or another user's.
        assert_ne!(k.account("t", "-", "d", "m"), k.account("t", "", "d", "m"));
        let [m, mf] = k.breaker("model", "gpt:4");
        let [p, _] = k.breaker("provider", "openai");
        assert_eq!(hash_tag(&m), hash_tag(&p));
        assert_eq!(hash_tag(&m), hash_tag(&mf));
    }
}

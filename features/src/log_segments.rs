//! The decision log's file names, as the service writes them and every reader lists them.
//!
//! Each replica writes its own segments, named
//! `{kind}-{replica}-{UTC start}-{seq:06}.jsonl` (e.g.
//! `decisions-node-a-50051-20261201T093000-000001.jsonl`), `kind` being `decisions` or
//! `outcomes`; closed outcome segments get a spend summary beside them,
//! `outcomes-{replica}-{UTC start}-{seq:06}.spend.json`. The replica id keeps the files of
//! replicas sharing one directory apart. Logs written before replica ids existed are named
//! `{kind}-{UTC start}-{seq:06}.jsonl`; every reader accepts both.
//!
//! Segments sort by start time, then sequence number, then replica id ([`segment_order`]):
//! within one replica that is the order they were written in (the sequence number counts the
//! segments of one process; the start time orders processes), and the segments of several
//! replicas interleave by time. A name that does not follow either pattern is still a segment
//! of its kind if it starts with `{kind}-` and ends in `.jsonl` (hand-made logs); such names
//! sort before all others, by name.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

/// The file name extension of a segment.
pub const SEGMENT_EXTENSION: &str = ".jsonl";

/// The longest replica id, in characters.
pub const REPLICA_ID_MAX_LEN: usize = 64;

/// Length of a segment's start stamp, `%Y%m%dT%H%M%S` (UTC).
const STAMP_LEN: usize = 15;

/// Why a replica id is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaIdError {
    #[error("replica id is empty (1 to {REPLICA_ID_MAX_LEN} characters of A-Z a-z 0-9 . _ -)")]
    Empty,
    #[error(
        "replica id {id:?} has {len} characters; at most {REPLICA_ID_MAX_LEN} (of A-Z a-z 0-9 . _ -)"
    )]
    TooLong { id: String, len: usize },
    #[error(
        "replica id {id:?} contains {found:?}: only A-Z a-z 0-9 . _ - are allowed (1 to {REPLICA_ID_MAX_LEN} characters)"
    )]
    BadCharacter { id: String, found: char },
}

/// Whether `c` may appear in a replica id.
pub fn is_replica_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// A replica id is 1 to [`REPLICA_ID_MAX_LEN`] characters of `[A-Za-z0-9._-]`, so that it can
/// stand in a file name of every file system and be told apart from the rest of the name.
pub fn check_replica_id(id: &str) -> Result<(), ReplicaIdError> {
    if id.is_empty() {
        return Err(ReplicaIdError::Empty);
    }
    if let Some(found) = id.chars().find(|&c| !is_replica_id_char(c)) {
        return Err(ReplicaIdError::BadCharacter {
            id: id.to_string(),
            found,
        });
    }
    // Only ASCII is left: bytes are characters.
    if id.len() > REPLICA_ID_MAX_LEN {
        return Err(ReplicaIdError::TooLong {
            id: id.to_string(),
            len: id.len(),
        });
    }
    Ok(())
}

/// The file name of segment `seq` of `kind`, written by `replica` from `stamp` on
/// (`%Y%m%dT%H%M%S`, UTC).
pub fn segment_file_name(kind: &str, replica: &str, stamp: &str, seq: u64) -> String {
    format!("{kind}-{replica}-{stamp}-{seq:06}{SEGMENT_EXTENSION}")
}

/// What a segment's file name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentName<'a> {
    /// `None` in the names written before replica ids existed.
    pub replica: Option<&'a str>,
    /// UTC start, `%Y%m%dT%H%M%S`.
    pub stamp: &'a str,
    pub seq: u64,
}

/// Whether `name` is a segment file of `kind` (`decisions` or `outcomes`): it starts with
/// `{kind}-` and ends in `.jsonl`, whatever is between (spend summaries are not segments).
pub fn is_segment_of(name: &str, kind: &str) -> bool {
    name.strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|rest| rest.ends_with(SEGMENT_EXTENSION))
}

fn is_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == STAMP_LEN
        && b.iter().enumerate().all(|(i, &c)| {
            if i == 8 {
                c == b'T'
            } else {
                c.is_ascii_digit()
            }
        })
}

/// Parses a segment file name of `kind`, old (`{kind}-{stamp}-{seq}.jsonl`) or new
/// (`{kind}-{replica}-{stamp}-{seq}.jsonl`); `None` for any other name. The stamp and the
/// sequence number are read from the end, so a replica id may contain `-`.
pub fn parse_segment_name<'a>(name: &'a str, kind: &str) -> Option<SegmentName<'a>> {
    let rest = name
        .strip_prefix(kind)?
        .strip_prefix('-')?
        .strip_suffix(SEGMENT_EXTENSION)?;
    let (rest, seq) = rest.rsplit_once('-')?;
    if seq.is_empty() || !seq.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let seq = seq.parse().ok()?;
    if is_stamp(rest) {
        return Some(SegmentName {
            replica: None,
            stamp: rest,
            seq,
        });
    }
    let (replica, stamp) = rest.rsplit_once('-')?;
    if !is_stamp(stamp) || check_replica_id(replica).is_err() {
        return None;
    }
    Some(SegmentName {
        replica: Some(replica),
        stamp,
        seq,
    })
}

/// The order of two segment files of `kind` (paths, possibly in different directories): by
/// start time, then sequence number, then replica id (old names, without one, first); names
/// that do not parse come before all others, by name; full paths break the remaining ties
/// (the same name in two directories).
pub fn segment_order(a: &Path, b: &Path, kind: &str) -> Ordering {
    fn key<'a>(p: &'a Path, kind: &str) -> (Option<(&'a str, u64, &'a str)>, &'a str) {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let parsed =
            parse_segment_name(name, kind).map(|s| (s.stamp, s.seq, s.replica.unwrap_or("")));
        (parsed, name)
    }
    key(a, kind).cmp(&key(b, kind)).then_with(|| a.cmp(b))
}

/// Sorts segment files of `kind` in [`segment_order`].
pub fn sort_segments(paths: &mut [PathBuf], kind: &str) {
    paths.sort_by(|a, b| segment_order(a, b, kind));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_ids_are_checked() {
        for ok in ["local", "node-a-50051", "a.b_c-D9", &"x".repeat(64)] {
            assert_eq!(check_replica_id(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_replica_id(""), Err(ReplicaIdError::Empty));
        assert!(matches!(
            check_replica_id(&"x".repeat(65)),
            Err(ReplicaIdError::TooLong { len: 65, .. })
        ));
        for (bad, c) in [("a b", ' '), ("a/b", '/'), ("é", 'é'), ("a*", '*')] {
            assert_eq!(
                check_replica_id(bad),
                Err(ReplicaIdError::BadCharacter {
                    id: bad.into(),
                    found: c
                })
            );
        }
        let msg = check_replica_id("a/b").unwrap_err().to_string();
        assert!(msg.contains("\"a/b\"") && msg.contains("'/'"), "{msg}");
    }

    #[test]
    fn old_and_new_names_parse() {
        let name = segment_file_name("decisions", "node-a-50051", "20261201T093000", 7);
        assert_eq!(name, "decisions-node-a-50051-20261201T093000-000007.jsonl");
        assert_eq!(
            parse_segment_name(&name, "decisions"),
            Some(SegmentName {
                replica: Some("node-a-50051"),
                stamp: "20261201T093000",
                seq: 7
            })
        );
        assert_eq!(parse_segment_name(&name, "outcomes"), None);
        assert_eq!(
            parse_segment_name("outcomes-20261201T093000-000012.jsonl", "outcomes"),
            Some(SegmentName {
                replica: None,
                stamp: "20261201T093000",
                seq: 12
            })
        );
        // A replica id that looks like a stamp, and a sequence number past six digits.
        assert_eq!(
            parse_segment_name(
                "outcomes-20261201T093000-20261201T093001-1234567.jsonl",
                "outcomes"
            ),
            Some(SegmentName {
                replica: Some("20261201T093000"),
                stamp: "20261201T093001",
                seq: 1_234_567
            })
        );
        for other in [
            "decisions-1.jsonl",
            "decisions-20261201T093000-.jsonl",
            "decisions-x-2026120T093000-000001.jsonl",
            "decisions-a b-20261201T093000-000001.jsonl",
            "decisions--20261201T093000-000001.jsonl",
            "decisions-x-20261201T093000-000001.spend.json",
        ] {
            assert_eq!(parse_segment_name(other, "decisions"), None, "{other}");
        }
        assert!(is_segment_of("decisions-1.jsonl", "decisions"));
        assert!(!is_segment_of("decisionsx-1.jsonl", "decisions"));
        assert!(!is_segment_of(
            "outcomes-a-20261201T093000-000001.spend.json",
            "outcomes"
        ));
    }

    #[test]
    fn segments_sort_by_time_then_sequence_then_replica() {
        let names = [
            "decisions-b-20261201T000000-000002.jsonl",
            "decisions-20261201T000000-000001.jsonl",
            "decisions-a-20261201T000001-000001.jsonl",
            "decisions-handmade.jsonl",
            "decisions-b-20261201T000000-000010.jsonl",
            "decisions-a-20261130T235959-000999.jsonl",
            "decisions-a-20261201T000000-000002.jsonl",
            "decisions-20261201T000000-000002.jsonl",
        ];
        let mut paths: Vec<PathBuf> = names.iter().map(PathBuf::from).collect();
        sort_segments(&mut paths, "decisions");
        let sorted: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            sorted,
            [
                "decisions-handmade.jsonl",
                "decisions-a-20261130T235959-000999.jsonl",
                "decisions-20261201T000000-000001.jsonl",
                "decisions-20261201T000000-000002.jsonl",
                "decisions-a-20261201T000000-000002.jsonl",
                "decisions-b-20261201T000000-000002.jsonl",
                // Numerically: 10 after 2 (also past six digits).
                "decisions-b-20261201T000000-000010.jsonl",
                "decisions-a-20261201T000001-000001.jsonl",
            ]
        );
        // The same name in two directories: by path.
        let mut paths = vec![
            PathBuf::from("r2/decisions-a-20261201T000000-000001.jsonl"),
            PathBuf::from("r1/decisions-a-20261201T000000-000001.jsonl"),
        ];
        sort_segments(&mut paths, "decisions");
        assert!(paths[0].starts_with("r1"));
    }
}

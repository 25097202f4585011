use std::collections::BTreeMap;

use super::*;

fn outcome(i: usize) -> OutcomeRecord {
    OutcomeRecord {
        schema: signalbox_features::log_schema::SCHEMA_VERSION,
        // Three days, two of them in one month.
        ts: [
            "2026-11-30T23:59:59Z",
            "2026-12-01T00:00:00Z",
            "2026-12-02T12:00:00Z",
        ][i % 3]
            .into(),
        decision_id: format!("d{i}"),
        tenant_id: ["acme", "trial"][i % 2].into(),
        user_id: ["", "alice", "bob"][i % 5 % 3].into(),
        model_id: "m".into(),
        success: true,
        quality: 1.0,
        latency_ms: 10,
        tokens_in: 1,
        tokens_out: 1,
        // Every 7th record has a cost that books nothing.
        cost_usd: if i.is_multiple_of(7) {
            -1.0
        } else {
            0.000_123 * i as f64
        },
        error: String::new(),
        attempt: 0,
    }
}

type Totals = BTreeMap<(String, String, chrono::NaiveDate), (u64, u64)>;

fn replayed(dir: &Path) -> (Totals, SpendReplay) {
    let mut totals = Totals::new();
    let stats = replay_spend(
        dir,
        None,
        |t, u, day, cost, n| {
            let slot = totals.entry((t.into(), u.into(), day)).or_default();
            slot.0 += cost.0;
            slot.1 += n;
        },
        |path, line, err| panic!("{}:{line}: {err}", path.display()),
    )
    .unwrap();
    (totals, stats)
}

#[tokio::test]
async fn spend_summaries_give_the_same_totals_as_the_records() {
    let tmp = tempfile::tempdir().unwrap();
    let log = DecisionLog::open(&LogPolicy {
        dir: tmp.path().to_path_buf(),
        segment_max_bytes: 4096,
        buffer_records: 64,
        flush_interval_ms: 10,
        ack: AckMode::Queued,
        replica_id: None,
    })
    .unwrap();
    let mut expected = Totals::new();
    for i in 0..500 {
        let o = outcome(i);
        if let Some((day, cost)) = outcome_spend(&o) {
            let slot = expected
                .entry((o.tenant_id.clone(), o.user_id.clone(), day))
                .or_default();
            slot.0 += cost.0;
            slot.1 += 1;
        }
        log.append(LogRecord::Outcome(o)).await.unwrap();
    }
    let stats = log.close().await.unwrap();
    assert_eq!(stats.outcomes, 500);
    let booked: u64 = expected.values().map(|v| v.1).sum();
    assert_eq!(booked, 500 - 500usize.div_ceil(7) as u64);

    let segs = segments(tmp.path(), "outcomes").unwrap();
    assert!(segs.len() > 10, "{} segments", segs.len());
    assert!(segs.iter().all(|s| spend_summary_path(s).exists()));
    let (from_summaries, st) = replayed(tmp.path());
    assert_eq!(from_summaries, expected);
    assert_eq!(
        (st.summarised, st.read, st.outcomes),
        (segs.len() as u64, 0, booked)
    );

    // A summary that no longer matches its segment is ignored; a missing one too.
    let mut first = OpenOptions::new().append(true).open(&segs[0]).unwrap();
    first.write_all(b"\n").unwrap();
    std::fs::remove_file(spend_summary_path(&segs[1])).unwrap();
    std::fs::write(spend_summary_path(&segs[2]), b"{\"bytes\": 1").unwrap();
    let (mixed, st) = replayed(tmp.path());
    assert_eq!(mixed, expected);
    assert_eq!((st.read, st.outcomes), (3, booked));
}

#[cfg(target_os = "linux")]
#[test]
fn a_failed_write_keeps_every_unwritten_byte() {
    let mut f = SegmentFile {
        path: PathBuf::from("/dev/full"),
        file: OpenOptions::new().write(true).open("/dev/full").unwrap(),
        buf: b"{\"a\":1}\n".to_vec(),
    };
    let err = f.write_out().unwrap_err();
    assert!(err.to_string().contains("/dev/full"), "{err}");
    assert_eq!(f.buf, b"{\"a\":1}\n");
    // Writable again (here: a real file): the same bytes go out once.
    let tmp = tempfile::NamedTempFile::new().unwrap();
    f.file = tmp.reopen().unwrap();
    f.write_out().unwrap();
    assert!(f.buf.is_empty());
    assert_eq!(std::fs::read(tmp.path()).unwrap(), b"{\"a\":1}\n");
}

#[tokio::test]
async fn the_writer_retries_a_failed_rotation_and_loses_nothing_queued() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = DecisionLog::open(&LogPolicy {
        dir: dir.clone(),
        segment_max_bytes: 1024,
        buffer_records: 1000,
        flush_interval_ms: 10,
        ack: AckMode::Queued,
        replica_id: None,
    })
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    // The first rotation fails: the log reports itself unwritable, and records queued
    // meanwhile (requests that passed the check just before) are kept.
    log.append(LogRecord::Outcome(outcome(0))).await.unwrap();
    for _ in 0..500 {
        if !log.writable() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!log.writable(), "a failing log says so");
    let accepted = 50;
    for i in 1..accepted {
        log.append(LogRecord::Outcome(outcome(i))).await.unwrap();
    }
    assert!(!log.writable());
    std::fs::create_dir_all(&dir).unwrap();
    for _ in 0..500 {
        if log.writable() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(log.writable());
    log.append(LogRecord::Outcome(outcome(accepted)))
        .await
        .unwrap();
    let stats = log.close().await.unwrap();
    assert_eq!(stats.outcomes, accepted as u64 + 1);
    let mut ids = Vec::new();
    read_records::<OutcomeRecord>(
        &dir,
        "outcomes",
        None,
        |o| ids.push(o.decision_id),
        |p, l, e| panic!("{}:{l}: {e}", p.display()),
    )
    .unwrap();
    assert_eq!(
        ids,
        (0..=accepted).map(|i| format!("d{i}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_writer_stuck_retrying_gives_up_at_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = DecisionLog::open_giving_up_after(
        &LogPolicy {
            dir: dir.clone(),
            segment_max_bytes: 1024,
            // A full queue: close() cannot even queue its message while the writer is stuck.
            buffer_records: 2,
            flush_interval_ms: 10,
            ack: AckMode::Queued,
            replica_id: None,
        },
        Duration::from_millis(300),
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    for i in 0..3 {
        log.append(LogRecord::Outcome(outcome(i))).await.unwrap();
    }
    for _ in 0..500 {
        if !log.writable() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!log.writable());
    let closed = tokio::time::timeout(Duration::from_secs(20), log.close()).await;
    let err = closed.expect("close returns").unwrap_err();
    assert!(matches!(err, LogError::Io { .. }), "{err}");
}

#[test]
fn read_newest_keeps_the_last_records_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    for (seg, range) in [(1, 0..4), (2, 4..6), (3, 6..9)] {
        let lines: String = range.map(|i| format!("{i}\n")).collect();
        std::fs::write(
            tmp.path()
                .join(format!("decisions-20261201T000000-{seg:06}.jsonl")),
            lines,
        )
        .unwrap();
    }
    let odd = |n: u32| (n % 2 == 1).then_some(n);
    let bad = |p: &Path, l: usize, e: String| panic!("{}:{l}: {e}", p.display());
    let got = read_newest::<u32, u32>(tmp.path(), "decisions", None, 3, odd, bad).unwrap();
    assert_eq!(got, vec![3, 5, 7]);
    let all = read_newest::<u32, u32>(tmp.path(), "decisions", None, 100, Some, bad).unwrap();
    assert_eq!(all, (0..9).collect::<Vec<_>>());
}

/// All bytes of every outcome segment in `dir`, as the OS has them now.
fn outcome_text(dir: &Path) -> String {
    segments(dir, "outcomes")
        .unwrap()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

#[tokio::test]
async fn with_ack_written_or_fsynced_an_appended_record_is_already_in_the_file() {
    for ack in [AckMode::Written, AckMode::Fsynced] {
        let tmp = tempfile::tempdir().unwrap();
        let log = Arc::new(
            DecisionLog::open(&LogPolicy {
                dir: tmp.path().to_path_buf(),
                segment_max_bytes: 8192,
                buffer_records: 1000,
                // Far longer than the test: only the group commit can have written them.
                flush_interval_ms: 60_000,
                ack,
                replica_id: None,
            })
            .unwrap(),
        );
        let mut tasks = Vec::new();
        for i in 0..200 {
            let log = log.clone();
            let dir = tmp.path().to_path_buf();
            tasks.push(tokio::spawn(async move {
                log.append(LogRecord::Outcome(outcome(i))).await.unwrap();
                let id = format!("\"decision_id\":\"d{i}\"");
                assert!(
                    outcome_text(&dir).contains(&id),
                    "{ack:?}: d{i} not written"
                );
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let stats = log.close().await.unwrap();
        assert_eq!(stats.outcomes, 200);
        assert!(stats.segments > 1, "rotation under group commit");
    }
}

/// What `outcomes` book, as the summaries add it up.
fn expected_totals(outcomes: impl IntoIterator<Item = OutcomeRecord>) -> Totals {
    let mut expected = Totals::new();
    for o in outcomes {
        if let Some((day, cost)) = outcome_spend(&o) {
            let slot = expected
                .entry((o.tenant_id.clone(), o.user_id.clone(), day))
                .or_default();
            slot.0 += cost.0;
            slot.1 += 1;
        }
    }
    expected
}

/// Two replicas writing into one directory (one named from the start, one named after it was
/// opened, as the server does) keep their segments and spend summaries apart by name; the
/// readers take the segments of both and a segment named before replica ids existed, in
/// start-time order, and the spend replay adds up all of them.
#[tokio::test]
async fn replicas_sharing_a_directory_keep_their_segments_apart_and_readers_take_all() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = |replica_id: Option<ReplicaId>| LogPolicy {
        dir: tmp.path().to_path_buf(),
        segment_max_bytes: 4096,
        buffer_records: 64,
        flush_interval_ms: 10,
        ack: AckMode::Queued,
        replica_id,
    };
    // Before replica ids: one old-style segment, a day older than anything below.
    let old = outcome(1000);
    std::fs::write(
        tmp.path().join("outcomes-20000101T000000-000001.jsonl"),
        serde_json::to_string(&old).unwrap() + "\n",
    )
    .unwrap();
    let a = DecisionLog::open(&policy(Some(ReplicaId::new("replica-a").unwrap()))).unwrap();
    let b = DecisionLog::open(&policy(None)).unwrap();
    assert_eq!(b.replica_id(), ReplicaId::local());
    b.set_replica_id(ReplicaId::new("node.b-50051").unwrap());
    assert_eq!(b.replica_id().as_str(), "node.b-50051");
    for i in 0..120 {
        let log = if i % 2 == 0 { &a } else { &b };
        log.append(LogRecord::Outcome(outcome(i))).await.unwrap();
    }
    a.close().await.unwrap();
    b.close().await.unwrap();

    let segs = segments(tmp.path(), "outcomes").unwrap();
    let names: Vec<String> = segs
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names[0], "outcomes-20000101T000000-000001.jsonl");
    let replica_of = |n: &str| {
        signalbox_features::log_segments::parse_segment_name(n, "outcomes")
            .unwrap_or_else(|| panic!("{n} does not parse"))
            .replica
            .map(str::to_string)
    };
    let of = |r: &str| {
        names
            .iter()
            .filter(|n| replica_of(n).as_deref() == Some(r))
            .count()
    };
    assert!(of("replica-a") > 1 && of("node.b-50051") > 1, "{names:?}");
    assert_eq!(of("replica-a") + of("node.b-50051") + 1, names.len());
    // Oldest first: by start stamp, then sequence, then replica.
    let keys: Vec<(String, u64, String)> = names
        .iter()
        .map(|n| {
            let s = signalbox_features::log_segments::parse_segment_name(n, "outcomes").unwrap();
            (
                s.stamp.to_string(),
                s.seq,
                s.replica.unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    // Every closed segment of a replica has its summary beside it, named alike.
    for seg in &segs[1..] {
        let summary = spend_summary_path(seg);
        assert!(summary.exists(), "{}", summary.display());
        let name = summary.file_name().unwrap().to_string_lossy().into_owned();
        let stem = seg.file_stem().unwrap().to_string_lossy().into_owned();
        assert_eq!(name, format!("{stem}.spend.json"));
    }
    // Nothing but segments and summaries was left behind.
    let files = std::fs::read_dir(tmp.path()).unwrap().count();
    assert_eq!(files, 2 * segs.len() - 1);

    let mut ids = Vec::new();
    read_records::<OutcomeRecord>(
        tmp.path(),
        "outcomes",
        None,
        |o| ids.push(o.decision_id),
        |p, l, e| panic!("{}:{l}: {e}", p.display()),
    )
    .unwrap();
    assert_eq!(ids.len(), 121);
    assert_eq!(ids[0], "d1000");
    let (totals, stats) = replayed(tmp.path());
    assert_eq!(totals, expected_totals((0..120).map(outcome).chain([old])));
    assert_eq!((stats.summarised, stats.read), (segs.len() as u64 - 1, 1));
}

#[test]
fn replica_ids_are_checked_and_the_default_is_one() {
    assert_eq!(ReplicaId::new("node-a.1_x").unwrap().as_str(), "node-a.1_x");
    for bad in ["", "a b", "a/b", &"x".repeat(65)] {
        let err = ReplicaId::new(bad).unwrap_err().to_string();
        assert!(err.contains("replica id"), "{err}");
    }
    assert_eq!(ReplicaId::local().as_str(), "local");
    assert!("ok-1".parse::<ReplicaId>().is_ok());
    let id = ReplicaId::for_host_and_port(50051);
    assert!(id.as_str().ends_with("-50051"), "{id}");
    assert!(ReplicaId::new(id.as_str()).is_ok(), "{id}");
    let host = host_name();
    if !host.is_empty() && ReplicaId::new(host.clone()).is_ok() && host.len() <= 58 {
        assert_eq!(id.as_str(), format!("{host}-50051"));
    }
    assert!(ReplicaId::for_host_and_port(0).as_str().len() <= 64);
}

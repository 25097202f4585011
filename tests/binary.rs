//! The `signalbox` binary as an operator runs it: config errors exit non-zero before binding,
//! `serve` announces its address, and SIGTERM loses no acknowledged record.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_signalbox");

#[test]
fn check_config_accepts_the_examples() {
    for config in ["config/signalbox.toml", "config/examples/llmrouter.toml"] {
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(config))
            .output()
            .unwrap();
        assert!(out.status.success(), "{config}: {out:?}");
    }
}

#[test]
fn invalid_config_exits_non_zero_naming_the_key_and_binds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            EXAMPLE_CONFIG.replace("[server]\n", "[server]\nmax_prompt_kb = 3\n"),
            "max_prompt_kb",
        ),
        (
            EXAMPLE_CONFIG.replace("route = \"gpt-4o-mini\"", "route = \"gpt-5-mega\""),
            "rules[4].route",
        ),
        (
            EXAMPLE_CONFIG.replace(
                "fallbacks = [\"gpt-4o-mini\", \"llama-3.1-70b-instruct\"]",
                "fallbacks = []",
            ),
            "rules[6].fallbacks",
        ),
        (
            EXAMPLE_CONFIG.replace("input_per_1k_usd = 0.003", "input_per_1k_usd = -1"),
            "models[1].input_per_1k_usd",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = tmp.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{key}: {out:?}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(all.contains(key), "{key} not named in: {all}");
        assert!(!all.contains("listening on"), "{all}");
    }
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "/nonexistent/signalbox.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("/nonexistent/signalbox.toml"));
}

/// A replica id that cannot stand in a file name is refused with the rule, before anything is
/// read or bound.
#[test]
fn an_invalid_replica_id_is_refused_naming_the_rule() {
    for bad in ["a b", "../up", "", &"x".repeat(65)] {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--replica-id", bad])
            .args(["--config", "/nonexistent/signalbox.toml"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--replica-id"), "{bad:?}: {err}");
        assert!(err.contains("A-Z a-z 0-9 . _ -"), "{bad:?}: {err}");
        assert!(!err.contains("nonexistent"), "{err}");
    }
}

#[test]
fn check_config_and_serve_agree_on_an_unusable_log_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let a_file = tmp.path().join("not-a-dir");
    std::fs::write(&a_file, "x").unwrap();
    let example = |dir: &str| {
        EXAMPLE_CONFIG.replace("dir = \"../signalbox-data/log\"", &format!("dir = {dir:?}"))
    };
    let cases = [
        (example(&a_file.display().to_string()), "log.dir"),
        (
            // TOML has no `\0` escape: `\u0000`.
            EXAMPLE_CONFIG.replace(
                "dir = \"../signalbox-data/log\"",
                &format!("dir = \"{}/sub\\u0000dir\"", tmp.path().display()),
            ),
            "NUL",
        ),
        (example(&"a".repeat(100_000)), "100000 bytes"),
        (
            example(&format!("{}/log", a_file.display())),
            "not-a-dir/log",
        ),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let path = tmp.path().join(format!("logdir{i}.toml"));
        std::fs::write(&path, text).unwrap();
        for command in ["check-config", "serve"] {
            let mut cmd = Command::new(BIN);
            cmd.arg(command).arg("--config").arg(&path);
            if command == "serve" {
                cmd.args(["--listen", "127.0.0.1:0"]);
            }
            let out = cmd.output().unwrap();
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.status.code(), Some(2), "{command} case {i}: {all}");
            assert!(all.contains("log.dir"), "{command} case {i}: {all}");
            assert!(
                all.contains(needle),
                "{command} case {i}: {needle} not in {all}"
            );
            assert!(!all.contains("listening on"), "{all}");
        }
    }
    // No probe file is left behind in a directory that works.
    let ok_dir = tmp.path().join("ok-log");
    let path = tmp.path().join("ok.toml");
    std::fs::write(&path, example_policy_text(&ok_dir)).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_dir(&ok_dir).unwrap().count(), 0);
}

/// The example policy with its `[learned]` section, its log in `log_dir` and its bundle at
/// `bundle` (absolute).
fn example_with_bundle(log_dir: &std::path::Path, bundle: &std::path::Path) -> String {
    let original = "bundle = \"../models/routellm-mmlu\"";
    assert!(
        EXAMPLE_CONFIG.contains(original),
        "example bundle path moved"
    );
    EXAMPLE_CONFIG
        .replace(
            "dir = \"../signalbox-data/log\"",
            &format!("dir = {:?}", log_dir.display().to_string()),
        )
        .replace(
            original,
            &format!("bundle = {:?}", bundle.display().to_string()),
        )
}

#[test]
fn a_missing_or_broken_bundle_is_a_config_error_for_check_config_and_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken-bundle");
    std::fs::create_dir_all(&broken).unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/routellm-mmlu");
    for f in ["manifest.json", "tokenizer.json", "idf.json"] {
        std::fs::copy(shipped.join(f), broken.join(f)).unwrap();
    }
    let onnx = std::fs::read(shipped.join("model.onnx")).unwrap();
    std::fs::write(broken.join("model.onnx"), &onnx[..onnx.len() / 2]).unwrap();
    for (i, bundle) in [tmp.path().join("no-such-bundle"), broken]
        .iter()
        .enumerate()
    {
        let config = tmp.path().join(format!("policy{i}.toml"));
        std::fs::write(
            &config,
            example_with_bundle(&tmp.path().join("log"), bundle),
        )
        .unwrap();
        for args in [
            vec!["check-config", "--config"],
            vec!["serve", "--listen", "127.0.0.1:0", "--config"],
        ] {
            let out = Command::new(BIN)
                .args(&args)
                .arg(&config)
                .env("RUST_LOG", "info")
                .output()
                .unwrap();
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                out.status.code(),
                Some(2),
                "{args:?} {}: {all}",
                bundle.display()
            );
            assert!(all.contains(&bundle.display().to_string()), "{all}");
            assert!(!all.contains("listening on"), "{all}");
        }
    }
}

/// Spawns `signalbox serve` on port 0 with `config`; returns the child, its address, and a
/// thread draining the rest of its stdout. Panics if it does not announce its address in 60 s.
fn spawn_server(
    config: &std::path::Path,
) -> (
    std::process::Child,
    String,
    std::thread::JoinHandle<Vec<String>>,
) {
    spawn_server_under(&[], &[], config)
}

/// [`spawn_server`] run through `wrapper` (e.g. `prlimit --nofile=96:96 --`), with `args` added
/// to `serve`'s.
fn spawn_server_under(
    wrapper: &[&str],
    args: &[&str],
    config: &std::path::Path,
) -> (
    std::process::Child,
    String,
    std::thread::JoinHandle<Vec<String>>,
) {
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let drain = std::thread::spawn(move || {
        let mut rest = Vec::new();
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !sent && let Some(pos) = line.find("listening on ") {
                let _ = tx.send(line[pos + "listening on ".len()..].trim().to_string());
                sent = true;
            }
            rest.push(line);
        }
        rest
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => (child, addr, drain),
        Err(_) => {
            let _ = child.kill();
            panic!("server did not announce its address: {:?}", drain.join());
        }
    }
}

/// The quickstart: the example policy as shipped (learned router, rules shadow) with the
/// shipped bundle, only its log moved to a temp dir.
#[test]
fn the_shipped_config_and_bundle_serve_learned_decisions() {
    let tmp = tempfile::tempdir().unwrap();
    let log_dir = tmp.path().join("log");
    let config = tmp.path().join("policy.toml");
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/routellm-mmlu");
    std::fs::write(&config, example_with_bundle(&log_dir, &shipped)).unwrap();
    let (mut child, addr, drain) =
        spawn_server_under(&[], &["--replica-id", "replica-a.1"], &config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client =
            signalbox::proto::router_client::RouterClient::connect(format!("http://{addr}"))
                .await
                .unwrap();
        let d = client
            .route(text_request(
                "acme",
                "Which of the following is a prime number?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:",
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            d.router,
            signalbox::proto::RouterKind::Learned as i32,
            "{:?}",
            d.reasons
        );
        assert!(
            d.model_version.starts_with("routellm-mmlu@"),
            "{}",
            d.model_version
        );
        assert_eq!(d.predicted_quality.len(), 2, "{:?}", d.predicted_quality);
        let shadow = d.shadow.as_ref().expect("rules shadow");
        assert_eq!(shadow.router, signalbox::proto::RouterKind::Rules as i32);
        let ack = client
            .report_outcome(outcome(&d.decision_id, primary_id(&d)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ack.decision_id, d.decision_id);
    });
    assert!(sigterm_and_wait(&mut child).success());
    drop(drain.join());
    let decisions = read_log(&log_dir, "decisions");
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0]["router"], "learned");
    assert_eq!(decisions[0]["shadow"]["router"], "rules");
    assert_eq!(read_log(&log_dir, "outcomes").len(), 1);
    // `--replica-id` names the segments.
    assert_eq!(segment_replicas(&log_dir), ["replica-a.1", "replica-a.1"]);
}

/// The replica id in the name of every segment in `dir`, decisions first.
fn segment_replicas(dir: &std::path::Path) -> Vec<String> {
    ["decisions", "outcomes"]
        .iter()
        .flat_map(|kind| {
            signalbox::decision_log::segments(dir, kind)
                .unwrap()
                .into_iter()
                .map(move |p| {
                    let name = p.file_name().unwrap().to_str().unwrap().to_string();
                    signalbox_features::log_segments::parse_segment_name(&name, kind)
                        .unwrap_or_else(|| panic!("{name}"))
                        .replica
                        .unwrap_or_else(|| panic!("no replica id in {name}"))
                        .to_string()
                })
        })
        .collect()
}

#[test]
fn sigterm_drains_and_syncs_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let log_dir = tmp.path().join("log");
    let config = tmp.path().join("policy.toml");
    std::fs::write(&config, example_policy_text(&log_dir)).unwrap();
    let (mut child, addr, drain) = spawn_server(&config);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let sent = rt.block_on(async {
        let mut client =
            signalbox::proto::router_client::RouterClient::connect(format!("http://{addr}"))
                .await
                .unwrap();
        for i in 0..300 {
            let d = client
                .route(text_request(
                    "acme",
                    &format!("Request {i}: name a prime number."),
                ))
                .await
                .unwrap()
                .into_inner();
            client
                .report_outcome(outcome(&d.decision_id, primary_id(&d)))
                .await
                .unwrap();
        }
        300
    });

    let status = sigterm_and_wait(&mut child);
    assert!(status.success(), "{status:?}");
    let stdout = drain.join().unwrap().join("\n");
    assert!(
        stdout.contains("decision log flushed and synced"),
        "{stdout}"
    );
    assert_eq!(read_log(&log_dir, "decisions").len(), sent);
    assert_eq!(read_log(&log_dir, "outcomes").len(), sent);
    // Without `--replica-id`, the segments carry the host name and the port bound for port 0.
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    assert_ne!(port, 0);
    let default = signalbox::decision_log::ReplicaId::for_host_and_port(port);
    let replicas = segment_replicas(&log_dir);
    assert!(replicas.len() >= 2);
    assert!(
        replicas.iter().all(|r| r == default.as_str()),
        "{replicas:?}"
    );
}

/// Every JSON line of one log kind, skipping a last line cut by a kill (none is expected: the
/// writer hands whole lines to the OS).
fn read_log_after_kill(dir: &std::path::Path, kind: &str) -> Vec<serde_json::Value> {
    let files = signalbox::decision_log::segments(dir, kind).unwrap();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            match serde_json::from_str(line) {
                Ok(v) => out.push(v),
                Err(e) => assert!(
                    i + 1 == lines.len() && !text.ends_with('\n'),
                    "torn line inside {}: {e}",
                    f.display()
                ),
            }
        }
    }
    out
}

/// `log.ack = "written"` (the default): a request is answered only once its record is handed to
/// the OS, so SIGKILL under load loses no acknowledged decision or outcome, and an outcome
/// re-sent after the restart is a duplicate.
#[test]
fn sigkill_under_load_loses_no_acknowledged_record() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let tmp = tempfile::tempdir().unwrap();
    let log_dir = tmp.path().join("log");
    let config = tmp.path().join("policy.toml");
    std::fs::write(&config, example_policy_text(&log_dir)).unwrap();
    let (mut child, addr, drain) = spawn_server(&config);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let decided = Arc::new(Mutex::new(Vec::<String>::new()));
    let reported = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for c in 0..8 {
        let (decided, reported, stop) = (decided.clone(), reported.clone(), stop.clone());
        let url = format!("http://{addr}");
        callers.push(rt.spawn(async move {
            let Ok(mut client) = signalbox::proto::router_client::RouterClient::connect(url).await
            else {
                return;
            };
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let Ok(d) = client
                    .route(text_request(
                        "acme",
                        &format!("Caller {c}, request {i}: name a colour."),
                    ))
                    .await
                else {
                    return;
                };
                let d = d.into_inner();
                decided.lock().unwrap().push(d.decision_id.clone());
                let mut o = outcome(&d.decision_id, primary_id(&d));
                o.attempt = 1;
                if client.report_outcome(o).await.is_err() {
                    return;
                }
                reported.lock().unwrap().push(d.decision_id);
            }
        }));
    }
    // Let the load run, then kill the server in the middle of it.
    let started = Instant::now();
    while decided.lock().unwrap().len() < 300 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for c in callers {
            let _ = c.await;
        }
    });
    drop(drain.join());

    let decided = decided.lock().unwrap().clone();
    let reported = reported.lock().unwrap().clone();
    assert!(
        decided.len() >= 300,
        "load ran: {} decisions",
        decided.len()
    );
    let logged: std::collections::HashSet<String> = read_log_after_kill(&log_dir, "decisions")
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<&String> = decided.iter().filter(|id| !logged.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged decisions lost",
        lost.len()
    );
    let logged: std::collections::HashSet<String> = read_log_after_kill(&log_dir, "outcomes")
        .iter()
        .map(|o| o["decision_id"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<&String> = reported.iter().filter(|id| !logged.contains(*id)).collect();
    assert!(lost.is_empty(), "{} acknowledged outcomes lost", lost.len());

    // After a restart, re-sending the last acknowledged outcome books nothing twice.
    let (mut child, addr, drain) = spawn_server(&config);
    let last = reported
        .last()
        .expect("some outcome was acknowledged")
        .clone();
    let ack = rt.block_on(async {
        let mut client =
            signalbox::proto::router_client::RouterClient::connect(format!("http://{addr}"))
                .await
                .unwrap();
        let mut o = outcome(&last, MIXTRAL);
        o.attempt = 1;
        client.report_outcome(o).await.unwrap().into_inner()
    });
    assert!(ack.duplicate, "{ack:?}");
    assert_eq!(ack.cost_usd, 0.0);
    let status = sigterm_and_wait(&mut child);
    let stdout = drain.join().unwrap().join("\n");
    assert!(status.success(), "{status:?}: {stdout}");
}

/// CPU time (user + system) the process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces): state is the 3rd field overall.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a system setting.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_sec)
}

/// At the open-file limit the accept loop backs off instead of spinning (CPU time bounded), and
/// serves again once connections close.
#[test]
fn out_of_file_descriptors_the_server_backs_off_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let log_dir = tmp.path().join("log");
    let config = tmp.path().join("policy.toml");
    // Silent connections are kept long enough to exhaust the descriptors.
    let text = example_policy_text(&log_dir).replacen(
        "[server]\n",
        "[server]\npreface_timeout_secs = 120\n",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let (mut child, addr, drain) =
        spawn_server_under(&["prlimit", "--nofile=96:96", "--"], &[], &config);

    // More idle connections than descriptors: the rest wait in the backlog.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(std::net::TcpStream::connect(&addr).unwrap());
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_time(child.id());
    std::thread::sleep(Duration::from_secs(3));
    let spent = cpu_time(child.id()) - before;
    assert!(
        spent < Duration::from_millis(600),
        "{spent:?} of CPU in 3 s at the descriptor limit: the accept loop spins"
    );

    // Connections close: the server accepts and serves again.
    drop(idle);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let started = Instant::now();
        loop {
            let attempt = async {
                let mut client = signalbox::proto::router_client::RouterClient::connect(format!(
                    "http://{addr}"
                ))
                .await
                .map_err(|e| e.to_string())?;
                client
                    .route(text_request("acme", "Back?"))
                    .await
                    .map_err(|e| e.to_string())
            };
            match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(_)) => break,
                other => assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "not serving again: {other:?}"
                ),
            }
        }
    });
    assert!(sigterm_and_wait(&mut child).success());
    let log = drain.join().unwrap().join("\n");
    assert!(log.contains("accept failed"), "{log}");
}

use super::*;

const EXAMPLE: &str = include_str!("../../config/signalbox.toml");

fn load(text: &str) -> Result<Policy, ConfigError> {
    Policy::from_toml(text, Path::new("test.toml"), Path::new("/srv/signalbox"))
}

fn error_of(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("config should be rejected"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_example_config_loads() {
    let p = load(EXAMPLE).unwrap();
    assert!(p.version.starts_with("example-2026-11+"));
    assert_eq!(p.models.len(), 6);
    assert_eq!(p.rules.last().unwrap().id, "default");
    assert_eq!(p.log.dir, Path::new("/srv/signalbox/../signalbox-data/log"));
    assert_eq!(p.model(0).input_per_1k, Micros(10_000));
    assert_eq!(
        p.budgets.tenant_caps("trial").unwrap().on_exceeded,
        OnExceeded::Deny
    );
    assert_eq!(
        p.budgets.tenant_caps("someone-else").unwrap().daily,
        Some(Micros(200_000_000))
    );
    assert!(p.budgets.user_caps("acme", "").is_none());
    assert_eq!(p.risk[0].tier, RiskTier::High, "highest tier first");
    let on_disk = Policy::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/signalbox.toml"
    )))
    .unwrap();
    assert_eq!(on_disk.version, p.version);
}

#[test]
fn the_version_changes_with_the_content() {
    let a = load(EXAMPLE).unwrap().version;
    let b = load(&EXAMPLE.replace("top_k = 8", "top_k = 9"))
        .unwrap()
        .version;
    assert_ne!(a, b);
}

#[test]
fn unknown_keys_are_rejected_with_their_name_and_position() {
    let e = error_of(&EXAMPLE.replace("[server]\n", "[server]\nmax_prompt_kb = 3\n"));
    assert!(e.contains("max_prompt_kb"), "{e}");
    assert!(e.contains("line"), "{e}");
    let e = error_of(&EXAMPLE.replace(
        "id = \"claude-3-5-sonnet\"",
        "id = \"claude-3-5-sonnet\"\nprice = 1",
    ));
    assert!(e.contains("unknown field `price`"), "{e}");
    let e = error_of(&format!("{EXAMPLE}\n[telemetry]\nendpoint = \"x\"\n"));
    assert!(e.contains("unknown field `endpoint`"), "{e}");
    let e = error_of(&format!("{EXAMPLE}\n[telemetree]\n"));
    assert!(e.contains("unknown field `telemetree`"), "{e}");
}

#[test]
fn unknown_model_ids_in_rules_are_rejected() {
    let e = error_of(&EXAMPLE.replace(
        "route = \"qwen2.5-coder-32b-instruct\"",
        "route = \"qwen-9000\"",
    ));
    assert_eq!(
        e,
        "invalid config: `rules[0].route`: unknown model id \"qwen-9000\" (not in [[models]])"
    );
    let e = error_of(&EXAMPLE.replace(
        "fallbacks = [\"gpt-4o-mini\", \"llama-3.1-70b-instruct\"]",
        "fallbacks = [\"gpt-4o-mini\", \"llama-4\"]",
    ));
    assert!(
        e.contains("`rules[6].fallbacks[1]`") && e.contains("llama-4"),
        "{e}"
    );
}

#[test]
fn empty_fallbacks_are_rejected() {
    let e = error_of(&EXAMPLE.replace(
        "fallbacks = [\"gpt-4-1106-preview\", \"llama-3.1-70b-instruct\"]",
        "fallbacks = []",
    ));
    assert!(
        e.contains("`rules[0].fallbacks`") && e.contains("at least one"),
        "{e}"
    );
}

#[test]
fn negative_or_invalid_prices_are_rejected() {
    let e = error_of(&EXAMPLE.replace("input_per_1k_usd = 0.01", "input_per_1k_usd = -0.01"));
    assert!(e.contains("`models[0].input_per_1k_usd`"), "{e}");
    assert!(e.contains("non-negative"), "{e}");
    let e = error_of(&EXAMPLE.replace("output_per_1k_usd = 0.03", "output_per_1k_usd = nan"));
    assert!(e.contains("`models[0].output_per_1k_usd`"), "{e}");
    let e = error_of(&EXAMPLE.replace("daily_usd = 50.0", "daily_usd = -5.0"));
    assert!(e.contains("`budgets.tenants[0].daily_usd`"), "{e}");
}

#[test]
fn other_semantic_errors_name_their_key() {
    let cases = [
        (
            EXAMPLE.replace("lane = \"hosted\"", "lane = \"moon\""),
            "`models[0].lane`",
        ),
        (
            EXAMPLE.replace(
                "capabilities = [\"json_output\"]",
                "capabilities = [\"telepathy\"]",
            ),
            "`models[4].capabilities`",
        ),
        (
            EXAMPLE.replace("quality = 0.90", "quality = 1.5"),
            "`models[0].quality`",
        ),
        (
            EXAMPLE.replace("[data_classes.regulated]", "[data_classes.secret]"),
            "`data_classes.secret`",
        ),
        (
            EXAMPLE.replace(
                "domains = [\"medical\", \"legal\"]",
                "domains = [\"astrology\"]",
            ),
            "`risk[0].domains`",
        ),
        (
            EXAMPLE.replace("on_exceeded = \"deny\"", "on_exceeded = \"panic\""),
            "`budgets.tenants[1].on_exceeded`",
        ),
        (
            EXAMPLE.replace("task = \"chat\"", "task = \"poetry\""),
            "`retrieval[1].task`",
        ),
        (
            EXAMPLE.replace(
                "when = { task = [\"code\"] }",
                "when = { task = [\"coding\"] }",
            ),
            "`rules[0].when.task`",
        ),
        (
            EXAMPLE.replace(
                "id = \"default\"",
                "id = \"default\"\nwhen = { mode = \"batch\" }",
            ),
            "`rules[6].when`",
        ),
        (
            EXAMPLE.replace("id = \"claude-3-5-sonnet\"", "id = \"gpt-4o-mini\""),
            "`models[2].id`",
        ),
        (
            EXAMPLE.replace("failure_threshold = 5 ", "failure_threshold = 0 "),
            "`circuit_breaker.failure_threshold`",
        ),
    ];
    for (text, key) in cases {
        let e = error_of(&text);
        assert!(e.contains(key), "expected {key} in: {e}");
    }
}

#[test]
fn every_data_class_must_be_configured() {
    let text = EXAMPLE.replace(
        "[data_classes.regulated]\nlanes = [\"private\"]\nstore_prompt = false\n",
        "",
    );
    assert!(error_of(&text).contains("`data_classes.regulated`"));
}

#[test]
fn model_cost_is_exact_and_rounds_up() {
    let p = load(EXAMPLE).unwrap();
    let gpt4 = p.model(p.find_model("gpt-4-1106-preview").unwrap());
    // 1000 in at $0.01/1k + 1000 out at $0.03/1k = $0.04.
    assert_eq!(gpt4.cost(1000, 1000), Micros(40_000));
    // 1 token in at 10_000 µ$/1k = 10 µ$; 1 out = 30 µ$.
    assert_eq!(gpt4.cost(1, 1), Micros(40));
    let mini = p.model(p.find_model("gpt-4o-mini").unwrap());
    // 1 token at 150 µ$/1k = 0.15 µ$, rounded up to 1.
    assert_eq!(mini.cost(1, 0), Micros(1));
}

#[test]
fn auth_and_rate_limits_default_to_none_and_their_errors_name_the_key() {
    let p = load(EXAMPLE).unwrap();
    assert_eq!(p.auth.mode, crate::auth::AuthMode::None);
    assert_eq!(
        p.auth.reflection,
        crate::auth::ReflectionAccess::Authenticated
    );
    assert!(p.auth.keys.is_empty() && p.auth.keys_file.is_none());
    assert!(p.rate_limits.tenant_rate("acme").is_none());

    let limits = "\n[rate_limits]\ndefault_tenant = { requests_per_sec = 5.0, burst = 10 }\n\n[[rate_limits.tenants]]\ntenant = \"acme\"\nrequests_per_sec = 100.0\nburst = 200\n";
    let p = load(&format!("{EXAMPLE}{limits}")).unwrap();
    assert_eq!(p.rate_limits.tenant_rate("acme").unwrap().burst, 200);
    assert_eq!(p.rate_limits.tenant_rate("other").unwrap().burst, 10);

    let cases = [
        ("[auth]\nmode = \"password\"\n", "`auth.mode`"),
        ("[auth]\nmode = \"api_key\"\n", "`auth.keys_file`"),
        ("[auth]\nkeys_file = \"\"\n", "`auth.keys_file`"),
        ("[auth]\nreflection = \"closed\"\n", "`auth.reflection`"),
        ("[auth]\nmodes = \"none\"\n", "unknown field `modes`"),
        (
            "[rate_limits]\ndefault_tenant = { requests_per_sec = -1.0, burst = 1 }\n",
            "`rate_limits.default_tenant.requests_per_sec`",
        ),
        (
            "[[rate_limits.tenants]]\ntenant = \"a\"\nrequests_per_sec = 1.0\nburst = 0\n",
            "`rate_limits.tenants[0].burst`",
        ),
        (
            "[[rate_limits.tenants]]\ntenant = \"a\"\nrequests_per_sec = 1.0\nburst = 1\n[[rate_limits.tenants]]\ntenant = \"a\"\nrequests_per_sec = 2.0\nburst = 1\n",
            "`rate_limits.tenants[1].tenant`",
        ),
        (
            "[[rate_limits.tenants]]\ntenant = \"a\"\nrate = 1.0\n",
            "unknown field `rate`",
        ),
    ];
    for (section, key) in cases {
        let e = error_of(&format!("{EXAMPLE}\n{section}"));
        assert!(e.contains(key), "expected {key} in: {e}");
    }
    // The keys file is read relative to the policy file; a missing one is named.
    let e = error_of(&format!(
        "{EXAMPLE}\n[auth]\nmode = \"api_key\"\nkeys_file = \"keys.toml\"\n"
    ));
    assert!(e.contains("/srv/signalbox/keys.toml"), "{e}");
}

#[test]
fn telemetry_is_off_by_default_and_its_errors_name_the_key() {
    let p = load(EXAMPLE).unwrap();
    assert_eq!(p.telemetry, crate::telemetry::TelemetryPolicy::default());
    assert!(p.telemetry.metrics_listen.is_none() && p.telemetry.otlp_endpoint.is_none());

    let on = "\n[telemetry]\nmetrics_listen = \"0.0.0.0:9464\"\notlp_endpoint = \"http://collector:4317\"\nservice_name = \"router-eu\"\nsample_ratio = 0.25\n";
    let p = load(&format!("{EXAMPLE}{on}")).unwrap();
    assert_eq!(
        p.telemetry.metrics_listen,
        Some("0.0.0.0:9464".parse().unwrap())
    );
    assert_eq!(
        p.telemetry.otlp_endpoint.as_deref(),
        Some("http://collector:4317")
    );
    assert_eq!(
        (p.telemetry.service_name.as_str(), p.telemetry.sample_ratio),
        ("router-eu", 0.25)
    );

    let cases = [
        (
            "metrics_listen = \"localhost\"",
            "`telemetry.metrics_listen`",
        ),
        (
            "otlp_endpoint = \"collector:4317\"",
            "`telemetry.otlp_endpoint`",
        ),
        (
            "otlp_endpoint = \"grpc://collector:4317\"",
            "`telemetry.otlp_endpoint`",
        ),
        ("otlp_endpoint = \"not a url\"", "`telemetry.otlp_endpoint`"),
        (
            "otlp_endpoint = \"https://collector:4317\"",
            "`telemetry.otlp_endpoint`",
        ),
        ("service_name = \" \"", "`telemetry.service_name`"),
        ("sample_ratio = 1.5", "`telemetry.sample_ratio`"),
        ("sample_ratio = -0.1", "`telemetry.sample_ratio`"),
        ("export_queue_traces = 0", "`telemetry.export_queue_traces`"),
        ("export_batch_spans = 0", "`telemetry.export_batch_spans`"),
        ("export_timeout_ms = 0", "`telemetry.export_timeout_ms`"),
        ("metrics_port = 9464", "unknown field `metrics_port`"),
    ];
    for (line, key) in cases {
        let e = error_of(&format!("{EXAMPLE}\n[telemetry]\n{line}\n"));
        assert!(e.contains(key), "expected {key} in: {e}");
    }
}

#[test]
fn metrics_label_tenants_the_policy_names_and_others_as_other() {
    let p = load(EXAMPLE).unwrap();
    // Caps of their own (acme, trial), a user's caps (acme), none (anyone else).
    assert_eq!(p.metrics_tenant("acme"), "acme");
    assert_eq!(p.metrics_tenant("trial"), "trial");
    assert_eq!(p.metrics_tenant("a-new-customer"), "other");
    assert_eq!(p.metrics_tenant(""), "other");
}

#[test]
fn state_defaults_to_local_and_its_errors_name_the_key() {
    use crate::fleet::{OnUnavailable, StatePolicy};
    assert_eq!(load(EXAMPLE).unwrap().state, StatePolicy::Local);
    let p = load(&format!(
        "{EXAMPLE}\n[state]\nbackend = \"redis\"\nurl = \"redis://10.0.0.5:6380/2\"\non_unavailable = \"local\"\nreplicas_hint = 3\n"
    ))
    .unwrap();
    let StatePolicy::Redis(r) = &p.state else {
        panic!("redis expected: {:?}", p.state)
    };
    assert_eq!(r.url, "redis://10.0.0.5:6380/2");
    assert_eq!(r.on_unavailable, OnUnavailable::Local);
    assert_eq!(
        (r.replicas_hint, r.pool_size, r.key_prefix.as_str()),
        (3, 2, "signalbox")
    );
    assert_eq!(r.command_timeout, std::time::Duration::from_millis(250));
    assert!(r.password.is_none());
    let redis = "[state]\nbackend = \"redis\"\n";
    let cases = [
        ("[state]\nbackend = \"etcd\"\n", "`state.backend`"),
        ("[state]\nurl = \"redis://h\"\n", "`state.url`"),
        (redis, "`state.url`"),
        (&format!("{redis}url = \"http://h:6379\"\n"), "`state.url`"),
        (
            &format!("{redis}url = \"redis://:pw@h:6379\"\n"),
            "must not hold credentials",
        ),
        (&format!("{redis}url = \"redis://\"\n"), "`state.url`"),
        (
            &format!("{redis}url = \"redis://h\"\non_unavailable = \"open\"\n"),
            "`state.on_unavailable`",
        ),
        (
            &format!("{redis}url = \"redis://h\"\nkey_prefix = \"a b\"\n"),
            "`state.key_prefix`",
        ),
        (
            &format!("{redis}url = \"redis://h\"\ncommand_timeout_ms = 0\n"),
            "`state.command_timeout_ms`",
        ),
        (
            &format!("{redis}url = \"redis://h\"\npool_size = 0\n"),
            "`state.pool_size`",
        ),
        (
            &format!("{redis}url = \"redis://h\"\nreplicas_hint = 0\n"),
            "`state.replicas_hint`",
        ),
        (
            &format!("{redis}url = \"redis://h\"\nca_file = \"ca.pem\"\n"),
            "`state.ca_file`",
        ),
        (
            &format!("{redis}url = \"redis://h\"\npassword_file = \"no-such-file\"\n"),
            "`state.password_file`",
        ),
        (
            &format!("{redis}url = \"redis://h\"\npassword_file = \"a\"\npassword_env = \"B\"\n"),
            "`state.password_env`",
        ),
        (
            &format!(
                "{redis}url = \"redis://h\"\npassword_env = \"SIGNALBOX_TEST_UNSET_VAR_4711\"\n"
            ),
            "`state.password_env`",
        ),
        (
            &format!("{redis}url = \"redis://h\"\nttl = 5\n"),
            "unknown field `ttl`",
        ),
    ];
    for (section, key) in cases {
        let e = error_of(&format!("{EXAMPLE}\n{section}"));
        assert!(e.contains(key), "expected {key} in: {e}");
    }
}

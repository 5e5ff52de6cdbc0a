#![allow(
    clippy::result_large_err,
    reason = "figment's Jail fixes the closure's error type"
)]

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::ServeArgs;

fn load(file: Option<&str>, flags: &[(&'static str, Value)]) -> Result<ServeConfig, ConfigError> {
    ServeConfig::load(file.map(Path::new), flags)
}

#[test]
fn layers_file_environment_and_flags() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "floe.toml",
            "[broker]\nlinger = \"250ms\"\nid = \"from-file\"\nsegment_max_bytes = 1000\n",
        )?;
        jail.set_env("FLOE_BROKER__ID", "from-env");
        // Variables of other tools, and ones without a section, are not settings.
        jail.set_env("FLOE_SERVER", "http://127.0.0.1:9");
        jail.set_env("FLOE_BUCKET", "x");
        let flags = [("broker.segment_max_bytes", json!(2000))];
        let config = load(Some("floe.toml"), &flags).expect("loads");
        assert_eq!(config.broker.linger, Some(Duration::from_millis(250)));
        assert_eq!(config.broker.id, "from-env");
        assert_eq!(config.broker.segment_max_bytes, 2000);
        assert_eq!(config.server.listen, ServerOptions::default().listen);
        Ok(())
    });
}

#[test]
fn linger_defaults_by_store_kind_and_a_setting_wins_on_both() {
    figment::Jail::expect_with(|_jail| {
        let config = load(None, &[]).expect("defaults");
        assert_eq!(config.broker.linger_for(true), Duration::from_millis(2));
        assert_eq!(config.broker.linger_for(false), Duration::from_millis(100));
        let config = load(None, &[("broker.linger", json!("20ms"))]).expect("flag");
        assert_eq!(config.broker.linger_for(true), Duration::from_millis(20));
        assert_eq!(config.broker.linger_for(false), Duration::from_millis(20));
        Ok(())
    });
}

#[test]
fn the_trace_sample_ratio_is_a_fraction_and_a_whole_number_is_one_too() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("floe.toml", "[tracing]\nsample_ratio = 1\n")?;
        let config = load(Some("floe.toml"), &[]).expect("an integer ratio");
        assert!((config.tracing.sample_ratio - 1.0).abs() < f64::EPSILON);
        let config = load(None, &[("tracing.sample_ratio", json!(0.25))]).expect("0.25");
        assert!((config.tracing.sample_ratio - 0.25).abs() < f64::EPSILON);
        let error = load(None, &[("tracing.sample_ratio", json!(1.5))]).expect_err("over 1");
        assert!(
            error.to_string().contains("tracing.sample_ratio"),
            "{error}"
        );
        let error = load(None, &[("tracing.otlp_endpoint", json!("collector:4318"))])
            .expect_err("no scheme");
        assert!(
            error.to_string().contains("tracing.otlp_endpoint"),
            "{error}"
        );
        Ok(())
    });
}

#[test]
fn the_idle_flush_interval_follows_the_linger_on_s3_only() {
    figment::Jail::expect_with(|_jail| {
        let config = load(None, &[]).expect("defaults");
        assert!(config.broker.flush_when_idle);
        assert_eq!(config.broker.min_flush_interval_for(true), Duration::ZERO);
        assert_eq!(
            config.broker.min_flush_interval_for(false),
            Duration::from_millis(100)
        );
        let config = load(None, &[("broker.linger", json!("250ms"))]).expect("linger");
        assert_eq!(config.broker.min_flush_interval_for(true), Duration::ZERO);
        assert_eq!(
            config.broker.min_flush_interval_for(false),
            Duration::from_millis(250)
        );
        let config = load(
            None,
            &[
                ("broker.min_flush_interval", json!("40ms")),
                ("broker.flush_when_idle", json!(false)),
            ],
        )
        .expect("set");
        assert!(!config.broker.flush_when_idle);
        assert_eq!(
            config.broker.min_flush_interval_for(false),
            Duration::from_millis(40)
        );
        Ok(())
    });
}

#[test]
fn unknown_keys_are_refused_from_the_file_and_the_environment() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("floe.toml", "[broker]\nlingr = \"5ms\"\n")?;
        let error = load(Some("floe.toml"), &[]).expect_err("unknown key");
        assert!(error.to_string().contains("lingr"), "{error}");
        jail.create_file("top.toml", "linger = \"5ms\"\n")?;
        assert!(load(Some("top.toml"), &[]).is_err(), "flat keys are gone");
        jail.set_env("FLOE_CACHE__MEMORY_BYTS", "1");
        let error = load(None, &[]).expect_err("unknown variable");
        assert!(error.to_string().contains("memory_byts"), "{error}");
        Ok(())
    });
}

#[test]
fn variables_from_before_sections_are_refused_by_name() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("FLOE_ETCD", "http://etcd:2379");
        let error = load(None, &[]).expect_err("a variable from before sections");
        let message = error.to_string();
        assert!(
            message.contains("FLOE_ETCD") && message.contains("FLOE_CLUSTER__ETCD"),
            "{message}"
        );
        Ok(())
    });
}

#[test]
fn an_invalid_value_anywhere_names_its_key() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("floe.toml", "[jobs]\ncompaction_fan_in = 1\n")?;
        let error = load(Some("floe.toml"), &[]).expect_err("fan-in 1");
        assert!(
            error.to_string().contains("jobs.compaction_fan_in"),
            "{error}"
        );

        let flags = [
            ("cluster.etcd", json!("http://etcd:2379")),
            ("cluster.lease_ttl", json!("1500ms")),
        ];
        let error = load(None, &flags).expect_err("1.5s");
        assert!(error.to_string().contains("cluster.lease_ttl"), "{error}");

        let error = load(None, &[("broker.linger", json!("soon"))]).expect_err("not a duration");
        assert!(error.to_string().contains("linger"), "{error}");

        jail.set_env("FLOE_CACHE__BLOCK_BYTES", "100");
        let error = load(None, &[]).expect_err("tiny block");
        assert!(error.to_string().contains("cache.block_bytes"), "{error}");
        Ok(())
    });
}

#[test]
fn zero_is_refused_rather_than_clamped() {
    figment::Jail::expect_with(|_jail| {
        for (key, value) in [
            ("broker.max_inflight_uploads", json!(0)),
            ("jobs.bytes_per_second", json!(0)),
            ("jobs.deletes_per_second", json!(0)),
            ("jobs.min_bytes_per_second", json!(0)),
            ("jobs.yield_delay", json!("0s")),
            ("jobs.compaction_target_bytes", json!(0)),
            ("server.max_request_bytes", json!(0)),
            ("sequencer.snapshot_every", json!(0)),
        ] {
            let error = load(None, &[(key, value)]).expect_err(key);
            assert!(error.to_string().contains(key), "{key}: {error}");
        }
        Ok(())
    });
}

/// Every setting as `(dotted key, default)`: sections in `SECTIONS` order, fields in
/// alphabetical order (serde_json sorts object keys).
fn settings_with_defaults() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let tree = serde_json::to_value(ServeConfig::default()).expect("serializes");
    for section in SECTIONS {
        let fields = tree[section].as_object().expect("a section is a table");
        for (field, value) in fields {
            out.push((format!("{section}.{field}"), value.clone()));
        }
    }
    out
}

#[test]
fn sections_are_every_field_of_the_config() {
    let tree = serde_json::to_value(ServeConfig::default()).expect("serializes");
    let fields: Vec<&str> = tree
        .as_object()
        .expect("table")
        .keys()
        .map(String::as_str)
        .collect();
    let mut sections = SECTIONS.to_vec();
    sections.sort_unstable();
    let mut fields = fields.clone();
    fields.sort_unstable();
    assert_eq!(sections, fields);
}

#[test]
fn every_flag_sets_a_real_key() {
    let keys: Vec<String> = settings_with_defaults()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for (flag, key) in ServeArgs::KEYS {
        assert!(
            keys.iter().any(|known| known == key),
            "--{flag} sets unknown {key}"
        );
    }
}

#[test]
fn flags_given_on_a_command_line_reach_the_config() {
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }
    figment::Jail::expect_with(|_jail| {
        let cli = Cli::parse_from([
            "floe",
            "--listen",
            "127.0.0.1:9999",
            "--linger",
            "7ms",
            "--broker-id",
            "b7",
            "--background-jobs",
            "false",
            "--object-grace",
            "2m",
            "--cache-disk-bytes",
            "0",
            "--cluster",
            "c7",
            "--store",
            "memory://",
        ]);
        let config = load(None, &cli.serve.settings()).expect("loads");
        assert_eq!(config.server.listen.port(), 9999);
        assert_eq!(config.broker.linger, Some(Duration::from_millis(7)));
        assert_eq!(config.broker.id, "b7");
        assert!(!config.jobs.enabled);
        assert_eq!(config.jobs.object_grace, Duration::from_secs(120));
        assert_eq!(config.cache.disk_bytes, Some(0));
        assert_eq!(config.cluster.name, "c7");
        assert_eq!(config.store.url.as_deref(), Some("memory://"));
        Ok(())
    });
}

/// The settings table of `docs/configuration.md`: one row per setting, in the code's order,
/// with its flag and its real default. Meanings are prose and only need to be there.
#[test]
fn the_configuration_guide_lists_every_setting_with_its_default() {
    let guide = include_str!("../../../../docs/configuration.md");
    let rows: Vec<Vec<String>> = guide
        .lines()
        .skip_while(|line| !line.starts_with("| key | flag | default | meaning |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            line.trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect();
    let expected: Vec<(String, String, Value)> = settings_with_defaults()
        .into_iter()
        .map(|(key, default)| {
            let flag = ServeArgs::KEYS
                .iter()
                .find(|(_, flag_key)| *flag_key == key)
                .map_or("—".to_owned(), |(field, _)| {
                    format!("`--{}`", field.replace('_', "-"))
                });
            (key, flag, default)
        })
        .collect();
    let skeleton: String = expected
        .iter()
        .map(|(key, flag, default)| format!("| `{key}` | {flag} | {} | … |\n", render(default)))
        .collect();
    assert_eq!(
        rows.len(),
        expected.len(),
        "docs/configuration.md must have one row per setting, in this order:\n{skeleton}"
    );
    for (row, (key, flag, default)) in rows.iter().zip(&expected) {
        assert!(
            row.len() >= 4,
            "row {row:?} needs key, flag, default and meaning"
        );
        assert_eq!(row[0], format!("`{key}`"), "rows in order:\n{skeleton}");
        assert_eq!(&row[1], flag, "{key}: flag");
        match default {
            Value::Null => assert!(row[2].starts_with("unset"), "{key}: default {:?}", row[2]),
            value => assert_eq!(row[2], render(value), "{key}: default"),
        }
        assert!(!row[3].is_empty(), "{key}: meaning");
    }
}

fn render(value: &Value) -> String {
    match value {
        Value::Null => "unset".to_owned(),
        Value::String(text) => format!("`{text}`"),
        other => format!("`{other}`"),
    }
}

#[test]
fn an_unspecified_address_is_never_advertised() {
    let bound: SocketAddr = "0.0.0.0:8080".parse().expect("address");
    let mut server = ServerOptions::default();
    assert_eq!(server.advertised(bound), None);
    let v6: SocketAddr = "[::]:8080".parse().expect("address");
    assert_eq!(server.advertised(v6), None);
    let loopback: SocketAddr = "127.0.0.1:8080".parse().expect("address");
    assert_eq!(
        server.advertised(loopback).as_deref(),
        Some("http://127.0.0.1:8080")
    );
    server.advertise = Some("10.1.2.3:8080".into());
    assert_eq!(
        server.advertised(bound).as_deref(),
        Some("http://10.1.2.3:8080")
    );
}

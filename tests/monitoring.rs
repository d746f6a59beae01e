//! The shipped dashboard and alert rules (`charts/stateward/files/`, linked from
//! `monitoring/`) and the metrics they read. With the Prometheus tier (`STATEWARD_PROMETHEUS`,
//! see tests/support/tiers.rs): `promtool check rules`, and `promtool test rules` firing and
//! clearing every alert. The end-to-end proof against a real Prometheus scraping the real
//! processes is the `monitoring_every_panel_and_alert_has_data` case of `tests/e2e.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
#[path = "support/promql.rs"]
mod promql;
#[path = "support/tiers.rs"]
mod tiers;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn promtool(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(dir.join("promtool"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn promtool_checks_the_rules() {
    let Some(dir) = tiers::prometheus() else {
        return;
    };
    let text = promtool(&dir, &["check", "rules", "monitoring/alerts.yaml"]);
    println!("{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

/// `monitoring/alerts.test.yaml` against the rules with `summary` as their only annotation
/// (promtool compares every annotation; the descriptions are prose). Every alert has a case
/// where it fires and one where it is clear.
#[test]
fn promtool_rule_tests_fire_and_clear_every_alert() {
    let Some(dir) = tiers::prometheus() else {
        return;
    };
    let text = std::fs::read_to_string(root().join("monitoring/alerts.yaml")).expect("rules");
    let mut rules: Value = serde_saphyr::from_str(&text).expect("rules parse");
    for group in rules["groups"].as_array_mut().expect("groups") {
        for rule in group["rules"].as_array_mut().expect("rules") {
            if let Some(a) = rule.get_mut("annotations") {
                let summary = a["summary"].clone();
                assert!(summary.is_string(), "every alert has a summary: {rule}");
                *a = serde_json::json!({ "summary": summary });
            }
        }
    }
    let tests_text =
        std::fs::read_to_string(root().join("monitoring/alerts.test.yaml")).expect("tests");
    let work = tempfile::tempdir().expect("tempdir");
    std::fs::write(work.path().join("alerts.yaml"), rules.to_string()).expect("write");
    std::fs::write(work.path().join("alerts.test.yaml"), &tests_text).expect("write");
    let out = promtool(
        &dir,
        &[
            "test",
            "rules",
            &work.path().join("alerts.test.yaml").display().to_string(),
        ],
    );
    println!("{out}");

    let tests: Value = serde_saphyr::from_str(&tests_text).expect("tests parse");
    let (mut fired, mut cleared) = (BTreeSet::new(), BTreeSet::new());
    for case in tests["tests"].as_array().expect("tests") {
        for t in case["alert_rule_test"].as_array().into_iter().flatten() {
            let name = t["alertname"].as_str().unwrap_or_default().to_owned();
            let alerts = t["exp_alerts"].as_array().map_or(0, Vec::len);
            for a in t["exp_alerts"].as_array().into_iter().flatten() {
                let severity = a["exp_labels"]["severity"].as_str().unwrap_or_default();
                fired.insert((name.clone(), severity.to_owned()));
            }
            if alerts == 0 {
                cleared.insert(name);
            }
        }
    }
    for rule in promql::rules(root()).iter().filter(|r| r.alert) {
        assert!(
            fired.contains(&(rule.name.clone(), rule.severity.clone())),
            "{} ({}) never fires in alerts.test.yaml",
            rule.name,
            rule.severity
        );
        assert!(
            cleared.contains(&rule.name),
            "{} never clears in alerts.test.yaml",
            rule.name
        );
    }
}

/// Every alert says what to do and has its runbook section; every panel has a description
/// and a query.
#[test]
fn alerts_have_runbooks_and_panels_have_queries() {
    let docs = std::fs::read_to_string(root().join("docs/monitoring.md")).expect("docs");
    for rule in promql::rules(root()).iter().filter(|r| r.alert) {
        let runbook = rule.annotations["runbook"].as_str().unwrap_or_default();
        let anchor = format!("docs/monitoring.md#{}", rule.name.to_lowercase());
        assert_eq!(runbook, anchor, "{}", rule.name);
        assert!(
            docs.contains(&format!("### {}", rule.name)),
            "docs/monitoring.md has no runbook section for {}",
            rule.name
        );
        assert!(
            rule.annotations["description"]
                .as_str()
                .is_some_and(|d| d.len() > 80),
            "{} needs a description that says what to do",
            rule.name
        );
    }
    let text = std::fs::read_to_string(root().join("monitoring/dashboard.json")).expect("json");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            continue;
        }
        assert!(panel["description"].is_string(), "{}", panel["title"]);
        assert!(
            panel["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "{}",
            panel["title"]
        );
        assert!(
            docs.contains(panel["title"].as_str().unwrap_or_default()),
            "docs/monitoring.md does not list the panel {}",
            panel["title"]
        );
    }
}

#[test]
fn selectors_and_comparisons_are_read_from_promql() {
    assert_eq!(
        promql::selectors(
            r#"histogram_quantile(0.99, sum by (endpoint, le) (rate(a_bucket{x="}"}[5m]))) > 0.5 * scalar(b:c)"#
        ),
        [r#"a_bucket{x="}"}"#, "b:c"]
    );
    assert_eq!(
        promql::selectors(
            r#"((sum(up{job="s"}) or vector(0)) == 0) and on() (info{p="Fail"} == 1)"#
        ),
        [r#"up{job="s"}"#, r#"info{p="Fail"}"#]
    );
    assert_eq!(
        promql::comparison_lhs("x - time() < 14 * 86400").as_deref(),
        Some("x - time()")
    );
    assert_eq!(
        promql::comparison_lhs(r#"sum by (a) (m{mode="enforce"}) > 0"#).as_deref(),
        Some(r#"sum by (a) (m{mode="enforce"})"#)
    );
    assert_eq!(promql::comparison_lhs("(a == 0) and on() b"), None);
    assert_eq!(promql::comparison_lhs(r#"sum(rate(x{a!="b"}[1m]))"#), None);
}

/// A plain HTTP GET of the admin port.
fn get(addr: &str, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `serve --dev` exports the notAfter of its serving certificate and of the CA beside it,
/// and when it last loaded the certificate; a rotated certificate moves both.
#[test]
fn serve_exports_certificate_expiry_and_the_last_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let admin = format!("127.0.0.1:{port}");
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let child = Command::new(env!("CARGO_BIN_EXE_stateward"))
        .args([
            "serve",
            "--dev",
            "--cluster",
            "off",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            &admin,
            "--reload-interval",
            "0.1",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let _child = Kill(child);
    let wait = |what: &str, ok: &dyn Fn(&str) -> bool| -> String {
        let t = Instant::now();
        loop {
            if let Some(text) = get(&admin, "/metrics")
                && ok(&text)
            {
                return text;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no {what} on /metrics"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let serving = r#"stateward_certificate_expiry_timestamp_seconds{certificate="serving"}"#;
    let ca = r#"stateward_certificate_expiry_timestamp_seconds{certificate="ca"}"#;
    let loaded = r#"stateward_last_reload_success_timestamp_seconds{resource="certificate"}"#;
    let text = wait("certificate metrics", &|t| {
        sample(t, serving).is_some() && sample(t, loaded).is_some()
    });
    let certs = dir.path().join("certs/dev");
    let files = stateward::webhook::tls::certificate_expiries(&certs.join("tls.crt"));
    assert_eq!(
        sample(&text, serving),
        Some(files[0].1 as f64),
        "the file's notAfter"
    );
    assert_eq!(sample(&text, ca), Some(files[1].1 as f64), "{text}");
    assert!(
        files[0].1 as f64 > started + 86_400.0,
        "a dev certificate lasts days"
    );
    let first_load = sample(&text, loaded).expect("loaded");
    assert!(
        first_load >= started.floor() - 1.0,
        "{first_load} vs {started}"
    );

    // Rotation: a new pair whose notAfter is 2031-05-17.
    std::thread::sleep(Duration::from_millis(1100));
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.not_after = rcgen::date_time_ymd(2031, 5, 17);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    std::fs::write(certs.join("tls.key.new"), key.serialize_pem()).expect("write");
    std::fs::write(certs.join("tls.crt.new"), cert.pem()).expect("write");
    std::fs::rename(certs.join("tls.key.new"), certs.join("tls.key")).expect("rename");
    std::fs::rename(certs.join("tls.crt.new"), certs.join("tls.crt")).expect("rename");
    let text = wait("the rotated certificate", &|t| {
        sample(t, serving) == Some(1_936_742_400.0)
    });
    assert!(
        sample(&text, loaded).expect("loaded") > first_load,
        "{text}"
    );
}

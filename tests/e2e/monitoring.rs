//! The dashboard and the alert rules against a real Prometheus (the Prometheus tier,
//! `STATEWARD_PROMETHEUS`): Prometheus on loopback, in the work directory, scraping every
//! second the e2e `stateward serve`, a `gc --watch` and an `audit --watch`, with the rule
//! file loaded. After traffic that makes every metric appear (allowed, patched and denied
//! admissions, an orphaned claim deleted and one kept, audit reports with an enforce
//! finding, a rejected policy reload), every dashboard query must return data, and every
//! series selector of every rule must match a series (see docs/monitoring.md#tests).
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::core::params::PostParams;
use serde_json::{Value, json};

use crate::audit::{AuditWatch, create, install_crds, unwatched_namespace};
use crate::cases::{WAIT, check, create_set, say, verdict};
use crate::gc::{GcWatch, opt_in, scale, set_with_claims, wait_deleted};
use crate::harness::{Env, free_port};
use crate::k8s::{headless_service, http_get, send, statefulset, statefulsets, to_vec};
use crate::process::{Proc, Spec};
use crate::promql;

/// Percent-encodes a query for a URL.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The result of an instant query: its series (or the error).
async fn query(prometheus: std::net::SocketAddr, q: &str) -> Result<Vec<Value>, String> {
    let (status, body) =
        http_get(prometheus, &format!("/api/v1/query?query={}", encode(q))).await?;
    let reply: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if status != 200 || reply["status"] != "success" {
        return Err(format!("HTTP {status}: {body}"));
    }
    match reply["data"]["resultType"].as_str() {
        Some("vector" | "matrix") => Ok(reply["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()),
        Some("scalar") => Ok(vec![
            json!({"metric": {}, "value": reply["data"]["result"]}),
        ]),
        other => Err(format!("result type {other:?}")),
    }
}

/// `{labels} value` of each series, for the record.
fn values(series: &[Value]) -> String {
    series
        .iter()
        .map(|s| {
            let labels: Vec<String> = s["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| *k != "instance")
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            format!(
                "{{{}}} {}",
                labels.join(","),
                s["value"][1].as_str().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What is checked: a label for the output, the query, and whether it must have data.
struct Probe {
    what: String,
    query: String,
}

fn probes(root: &Path) -> Vec<Probe> {
    let mut out = Vec::new();
    for (title, expr) in promql::dashboard_queries(root) {
        out.push(Probe {
            what: format!("panel  {title}"),
            query: promql::for_api(&expr),
        });
    }
    for rule in promql::rules(root) {
        let kind = if rule.alert { "alert " } else { "record" };
        let name = if rule.severity.is_empty() {
            rule.name.clone()
        } else {
            format!("{} ({})", rule.name, rule.severity)
        };
        if let Some(lhs) = promql::comparison_lhs(&rule.expr) {
            out.push(Probe {
                what: format!("{kind} {name}: condition's left side"),
                query: lhs,
            });
        } else if !rule.alert {
            out.push(Probe {
                what: format!("{kind} {name}"),
                query: rule.expr.clone(),
            });
        }
        for selector in promql::selectors(&rule.expr) {
            out.push(Probe {
                what: format!("{kind} {name}: selector"),
                query: selector,
            });
        }
    }
    out
}

pub async fn every_panel_and_alert_has_data(env: Arc<Env>) {
    let c = "monitoring_every_panel_and_alert_has_data";
    let Some(bin) = crate::tiers::prometheus() else {
        return;
    };
    let env = &*env;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();

    // The collector: `db` opted in (its orphan is deleted), `web` not (its orphan stays a
    // candidate).
    let ns = &env.namespace(c).await;
    set_with_claims(env, ns, "db", 2).await;
    set_with_claims(env, ns, "web", 2).await;
    opt_in(env, ns, "db").await;
    let mut gc = GcWatch::start(
        env,
        "monitoring",
        &env.admin_kubeconfig,
        &["-n", ns, "--grace", "1s"],
        &[],
    );
    gc.wait_ready().await;
    // The audit: reports served, a set with grace 0 where the webhook does not look.
    install_crds(env).await;
    let legacy = &unwatched_namespace(env, "monitoring_legacy").await;
    let mut set = statefulset("legacy", 1, "legacy");
    set["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(0);
    create(env, legacy, headless_service("legacy", "legacy"), set).await;
    let mut audit = AuditWatch::start(env, legacy, &[]);

    // Prometheus.
    let dir = env.dir.join("prometheus");
    std::fs::create_dir_all(dir.join("data")).expect("prometheus dir");
    let rules = root.join("charts/stateward/files/alerts.yaml");
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         rule_files: ['{}']\n\
         scrape_configs:\n\
         - {{job_name: stateward, static_configs: [{{targets: ['{}']}}]}}\n\
         - {{job_name: stateward-gc, static_configs: [{{targets: ['{}']}}]}}\n\
         - {{job_name: stateward-audit, static_configs: [{{targets: ['{}']}}]}}\n",
        rules.display(),
        env.stateward_admin,
        gc.admin,
        audit.admin
    );
    std::fs::write(dir.join("prometheus.yml"), &config).expect("prometheus.yml");
    let port = free_port();
    let prometheus: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let spec = Spec::new(
        "prometheus",
        bin.join("prometheus"),
        vec![
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address={prometheus}"),
            "--log.level=warn".into(),
        ],
    );
    let _prometheus = Proc::start(&spec, &env.dir);
    let t = Instant::now();
    while !matches!(http_get(prometheus, "/-/ready").await, Ok((200, _))) {
        assert!(
            t.elapsed() < WAIT,
            "Prometheus not ready; log in {}",
            env.dir.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    say(
        c,
        format!(
            "Prometheus {prometheus} ready after {:.1} s",
            t.elapsed().as_secs_f64()
        ),
    );
    // A first scrape of every target before the traffic, so that rates show it.
    let t = Instant::now();
    loop {
        let up = query(prometheus, "count(up == 1)")
            .await
            .unwrap_or_default();
        if up.first().and_then(|s| s["value"][1].as_str()) == Some("3") {
            break;
        }
        assert!(
            t.elapsed() < WAIT,
            "Prometheus does not scrape all three targets: {up:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Traffic through the API server: allowed and patched creates, a denied one, scale-downs.
    let r = create_set(env, ns, "shop", 1).await;
    check(&mut problems, r.status == 201, format!("create shop: {r}"));
    let mut bad = statefulset("bad", 1, "shop");
    bad["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(0);
    let r = send(
        &env.admin,
        statefulsets(ns).create(&PostParams::default(), to_vec(&bad)),
    )
    .await;
    check(
        &mut problems,
        r.status >= 400,
        format!("grace 0 denied: {r}"),
    );
    scale(env, ns, "db", 1).await;
    scale(env, ns, "web", 1).await;
    wait_deleted(env, ns, "data-db-1", WAIT).await;
    say(
        c,
        "db 2 -> 1 (opted in: data-db-1 deleted), web 2 -> 1 (data-web-1 kept), a grace-0 set denied",
    );
    audit.wait_passes(0, 2).await;

    // A policy the webhook rejects, then the good one again.
    let policy = env.dir.join("e2e-policy.yaml");
    let good = std::fs::read_to_string(&policy).expect("e2e policy");
    std::fs::write(
        &policy,
        "apiVersion: stateward.io/v1alpha1\nkind: Policy\nspec: {nonsense: 1}\n",
    )
    .expect("write");
    let failed = r#"stateward_reloads_total{resource="policy",outcome="failure"}"#;
    let t = Instant::now();
    loop {
        let text = http_get(env.stateward_admin, "/metrics")
            .await
            .map(|r| r.1)
            .unwrap_or_default();
        if text.contains(failed) {
            break;
        }
        assert!(t.elapsed() < WAIT, "no rejected policy reload");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    std::fs::write(&policy, &good).expect("restore the policy");
    say(c, "a bad policy rejected, the good one restored");

    // Until every probe has data (scrapes every second, rate windows of 1 minute need two
    // samples), at most a minute.
    let probes = probes(root);
    let t = Instant::now();
    let results = loop {
        let mut results = Vec::new();
        for p in &probes {
            results.push(query(prometheus, &p.query).await);
        }
        let empty = results
            .iter()
            .filter(|r| !matches!(r, Ok(s) if !s.is_empty()))
            .count();
        if empty == 0 || t.elapsed() > Duration::from_secs(60) {
            break results;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    say(
        c,
        format!("after {:.0} s of scraping:", t.elapsed().as_secs_f64()),
    );
    let mut without = 0;
    for (p, r) in probes.iter().zip(&results) {
        let count = match r {
            Ok(series) => series.len().to_string(),
            Err(e) => format!("error {e}"),
        };
        say(c, format!("{:<4} series | {} | {}", count, p.what, p.query));
        if !matches!(r, Ok(s) if !s.is_empty()) {
            without += 1;
            problems.push(format!("{} has no data: {}", p.what, p.query));
        }
    }
    say(
        c,
        format!("{} expressions, {without} without data", probes.len()),
    );
    for title in [
        "Admission rate by decision and kind",
        "Certificate days left",
        "Findings by rule and namespace",
    ] {
        for (p, r) in probes.iter().zip(&results) {
            if p.what == format!("panel  {title}") {
                say(c, format!("values of \"{title}\": {}", p.query));
                say(
                    c,
                    format!("  {}", r.as_ref().map(|s| values(s)).unwrap_or_default()),
                );
            }
        }
    }
    let status = gc.stop().await;
    check(
        &mut problems,
        status.success(),
        format!("gc --watch exit {status}"),
    );
    let status = audit.stop().await;
    check(
        &mut problems,
        status.code().is_some(),
        format!("audit --watch exit {status}"),
    );
    // Leave no grace-0 set or orphaned claim behind for cases that look at every namespace.
    for name in [ns, legacy] {
        let r = send(
            &env.admin,
            kube::core::Request::new("/api/v1/namespaces")
                .delete(name, &kube::core::params::DeleteParams::default()),
        )
        .await;
        check(
            &mut problems,
            r.status == 200 || r.status == 202,
            format!("delete namespace {name}: {r}"),
        );
    }
    verdict(problems);
}

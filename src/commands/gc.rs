//! `stateward gc`: the one-shot plan (and `--delete`), rendered as text or JSON, and
//! `gc --watch`, the reconcile loop on the daemon scaffold ([`super::daemon`]). This module
//! is wiring only: flags become [`crate::gc::Options`] and the loop's settings, and the
//! passes of [`crate::gc`] are run; the collector's decisions live there.
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;

use super::daemon::{self, Loop, Start};
use crate::admin::ReadyCheck;
use crate::cli::{GcArgs, OutputFormat};
use crate::cluster::MAX_BACKOFF;
use crate::cluster::views::now_seconds;
use crate::commands::Exit;
use crate::gc::classify::Orphan;
use crate::gc::collect::{Gate, GcError, Outcome, collect, open_gate};
use crate::gc::watch::{GcMetrics, PassContext, PassOptions, PassOutcome, Scope, Stores, pass};
use crate::shutdown::Shutdown;

pub fn run(args: GcArgs) -> anyhow::Result<Exit> {
    if args.watch {
        return watch(args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let exit = runtime.block_on(async {
        // The one signal listener of the process, before anything else.
        let shutdown = Shutdown::install();
        shutdown.log_first();
        let Some(client) = crate::commands::command_client(
            args.cluster.kubeconfig.as_deref(),
            args.cluster.context.as_deref(),
        )
        .await
        else {
            return Ok(Exit::Usage);
        };
        let gate = move || shutdown.requested().then_some("stopped by a signal");
        match run_once_gated(&options(&args), args.output, client, now_seconds(), &gate).await {
            Ok((text, exit)) => {
                std::io::stdout().write_all(text.as_bytes())?;
                Ok(exit)
            }
            Err(err) => {
                eprintln!("error: {err}");
                Ok(Exit::Usage)
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
    exit
}

/// The collector's options per the flags of `gc`.
pub fn options(args: &GcArgs) -> crate::gc::Options {
    crate::gc::Options {
        namespace: args.scope.namespace().map(str::to_owned),
        selector: args.scope.selector.clone(),
        min_age_seconds: args.min_age.map_or(0, seconds),
        delete: args.delete,
        include_unverified: args.include_unverified,
    }
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// The one-shot `gc`: the plan (and the deletions) rendered as `format`, and the exit
/// status: 1 when a deletion failed.
pub async fn run_once(
    options: &crate::gc::Options,
    format: OutputFormat,
    client: Client,
    now: i64,
) -> Result<(String, Exit), GcError> {
    run_once_gated(options, format, client, now, &open_gate).await
}

/// [`run_once`], with deletions stopped when `gate` closes (a signal).
pub async fn run_once_gated(
    options: &crate::gc::Options,
    format: OutputFormat,
    client: Client,
    now: i64,
    gate: Gate<'_>,
) -> Result<(String, Exit), GcError> {
    let collected = collect(options, &client, now, gate).await?;
    let exit = if collected.failed() {
        Exit::Failure
    } else {
        Exit::Ok
    };
    let text = render(
        &collected.orphans,
        collected.outcomes.as_deref(),
        now,
        format,
    );
    Ok((text, exit))
}

fn human_bytes_or_dash(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-".into(), crate::quantity::human_bytes)
}

fn human_age(seconds: Option<i64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 3600 => format!("{}m", s / 60),
        Some(s) if s < 86_400 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86_400),
    }
}

#[derive(Serialize)]
struct JsonRow<'a> {
    #[serde(flatten)]
    orphan: &'a Orphan,
    age_seconds: Option<i64>,
}

/// Renders the plan (and the outcomes of `--delete`).
pub fn render(
    orphans: &[Orphan],
    outcomes: Option<&[Outcome]>,
    now: i64,
    format: OutputFormat,
) -> String {
    match format {
        OutputFormat::Json => {
            let rows: Vec<JsonRow> = orphans
                .iter()
                .map(|o| JsonRow {
                    orphan: o,
                    age_seconds: o.created.map(|c| now - c),
                })
                .collect();
            let mut doc = serde_json::json!({"candidates": rows});
            if let Some(outcomes) = outcomes {
                doc["results"] = serde_json::to_value(outcomes).unwrap_or_default();
            }
            format!("{doc:#}\n")
        }
        OutputFormat::Text => {
            if orphans.is_empty() {
                return "no orphaned claims\n".into();
            }
            let mut out = format!(
                "{:20} {:40} {:24} {:>7} {:12} {:>6} {:>8} {}\n",
                "NAMESPACE", "CLAIM", "STATEFULSET", "ORDINAL", "REASON", "AGE", "SIZE", "VERIFIED"
            );
            for o in orphans {
                out.push_str(&format!(
                    "{:20} {:40} {:24} {:>7} {:12} {:>6} {:>8} {}\n",
                    o.namespace,
                    o.claim,
                    o.statefulset,
                    o.ordinal,
                    o.reason.as_str(),
                    human_age(o.created.map(|c| now - c)),
                    human_bytes_or_dash(o.requested_bytes),
                    if o.verified { "yes" } else { "no" }
                ));
            }
            match outcomes {
                None => out.push_str(&format!(
                    "\n{} candidate(s); nothing was changed. Run again with --delete to delete the verified ones.\n",
                    orphans.len()
                )),
                Some(outcomes) => {
                    out.push('\n');
                    for r in outcomes {
                        let reason = if r.reason.is_empty() { String::new() } else { format!(": {}", r.reason) };
                        out.push_str(&format!("{:8} {}/{}{reason}\n", r.result, r.namespace, r.claim));
                    }
                }
            }
            out
        }
    }
}

/// `gc --watch`: the watch-fed stores, and a reconcile pass every `--interval` while this
/// replica leads.
fn watch(args: GcArgs) -> anyhow::Result<Exit> {
    let scope = Scope {
        namespace: args.scope.namespace().map(str::to_owned),
        selector: args.scope.selector.clone(),
    };
    let lease = match daemon::lease(&args.lease, scope.namespace.as_deref()) {
        Ok(lease) => lease,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(Exit::Usage);
        }
    };
    let settings = daemon::Settings {
        admin_listen: args.admin.admin_listen,
        lease,
        interval: args.interval.max(Duration::from_secs(1)),
    };
    let options = PassOptions {
        now: 0,
        grace_seconds: seconds(args.grace),
        min_age_seconds: args.min_age.map_or(0, seconds),
    };
    daemon::run(&args.cluster, settings, |client, process| {
        let metrics = GcMetrics::register(process.registry_mut());
        let stores = Arc::new(Stores::start(
            client,
            &scope,
            process.registry_mut(),
            MAX_BACKOFF,
        ));
        let synced = stores.clone();
        Start {
            checks: vec![ReadyCheck {
                name: "stores listed",
                ready: Box::new(move || synced.first_synced()),
            }],
            pass: Reconcile {
                context: PassContext::new(client, metrics.clone()),
                metrics,
                stores,
                scope,
                options,
            },
        }
    })
}

/// The loop of `gc --watch`.
struct Reconcile {
    context: PassContext,
    metrics: GcMetrics,
    stores: Arc<Stores>,
    scope: Scope,
    options: PassOptions,
}

impl Loop for Reconcile {
    fn leader_gauge(&self) -> Gauge {
        self.metrics.leader.clone()
    }

    fn started(&self, leader_elect: bool, identity: &str) {
        if self.scope.namespace.is_some() {
            tracing::info!(
                "--namespace: only StatefulSet annotations opt in (namespace annotations are not read, which would need cluster-wide permission)"
            );
        }
        tracing::info!(
            namespace = self.scope.namespace.as_deref().unwrap_or("(all)"),
            selector = self.scope.selector.as_deref().unwrap_or(""),
            grace_seconds = self.options.grace_seconds,
            min_age_seconds = self.options.min_age_seconds,
            leader_elect,
            identity,
            "waiting for the StatefulSet, claim, pod and namespace stores"
        );
    }

    fn ready(&self) -> bool {
        let ready = self.stores.first_synced();
        if ready {
            tracing::info!("gc reconcile loop started");
        }
        ready
    }

    async fn pass(&mut self, gate: Gate<'_>) {
        let options = PassOptions {
            now: now_seconds(),
            ..self.options
        };
        match pass(&self.context, &self.stores, &options, gate).await {
            Ok(PassOutcome::Stale(_)) => {}
            Ok(PassOutcome::Done(report)) => {
                tracing::info!(
                    annotated = report.annotated.len(),
                    marked = report.marked.len(),
                    cleared = report.cleared.len(),
                    deleted = report.deleted.len(),
                    skipped = report.skipped.len(),
                    failed = report.failed.len(),
                    stopped = report.stopped.unwrap_or(""),
                    "reconciled"
                );
            }
            Err(err) => {
                self.metrics.errors.inc();
                tracing::error!(error = %err, "reconcile failed; retrying at the next interval");
            }
        }
    }
}

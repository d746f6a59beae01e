//! `stateward gc`: the one-shot plan (and `--delete`) and `gc --watch`, the reconcile loop.
//! This module is wiring only: flags are checked, the client, admin port, stores and leader
//! election are started, and the passes of [`crate::gc`] are run; the collector's decisions
//! live there.
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use serde::Serialize;

use crate::admin::{ReadyCheck, admin_router};
use crate::cli::{GcArgs, OutputFormat};
use crate::cluster::MAX_BACKOFF;
use crate::cluster::views::now_seconds;
use crate::commands::Exit;
use crate::gc::classify::Orphan;
use crate::gc::collect::{Gate, GcError, Outcome, collect, open_gate, parse_duration_flag};
use crate::gc::shutdown::Shutdown;
use crate::gc::watch::{
    GcMetrics, PassContext, PassOptions, PassOutcome, Scope, Stores, grace_seconds, pass,
};
use crate::leader::{Elector, LeaseSettings, default_identity};
use crate::metrics::Metrics;

pub fn run(args: GcArgs) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let exit = runtime.block_on(async {
        // The one signal listener of the process, before anything else.
        let shutdown = Shutdown::install();
        let Some(client) =
            crate::commands::command_client(args.kubeconfig.as_deref(), args.context.as_deref())
                .await
        else {
            return Ok(Exit::Usage);
        };
        if args.watch {
            return watch(args, client, shutdown).await;
        }
        let gate = move || shutdown.requested().then_some("stopped by a signal");
        let options = match options(&args) {
            Ok(options) => options,
            Err(err) => {
                eprintln!("error: {err}");
                return Ok(Exit::Usage);
            }
        };
        match run_once_gated(&options, args.output, client, now_seconds(), &gate).await {
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
    // Watches and the admin server end with the runtime; nothing of theirs is awaited.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    exit
}

/// The collector's options per the flags of `gc`.
pub fn options(args: &GcArgs) -> Result<crate::gc::Options, GcError> {
    Ok(crate::gc::Options {
        namespace: if args.all_namespaces {
            None
        } else {
            args.namespace.clone()
        },
        selector: args.selector.clone(),
        min_age_seconds: match args.min_age.as_deref() {
            Some(text) => parse_duration_flag("--min-age", text)?,
            None => 0,
        },
        delete: args.delete,
        include_unverified: args.include_unverified,
    })
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

/// The settings of `gc --watch`, checked before anything starts.
struct Settings {
    grace: i64,
    min_age: i64,
    lease: Option<LeaseSettings>,
}

fn settings(args: &GcArgs, scope: &Scope) -> Result<Settings, GcError> {
    let grace = grace_seconds(&args.grace)?;
    let min_age = match args.min_age.as_deref() {
        Some(text) => parse_duration_flag("--min-age", text)?,
        None => 0,
    };
    let lease = if args.leader_elect {
        let seconds = parse_duration_flag("--lease-duration", &args.lease_duration)?;
        if seconds < 3 {
            return Err(GcError::Duration {
                flag: "--lease-duration (at least 3s)",
                value: args.lease_duration.clone(),
            });
        }
        let namespace = crate::leader::lease_namespace(
            args.lease_namespace.as_deref(),
            scope.namespace.as_deref(),
        );
        Some(LeaseSettings::new(
            &args.lease_name,
            &namespace,
            &default_identity(),
            Duration::from_secs(seconds as u64),
        ))
    } else {
        None
    };
    Ok(Settings {
        grace,
        min_age,
        lease,
    })
}

async fn watch(args: GcArgs, client: Client, shutdown: Shutdown) -> anyhow::Result<Exit> {
    let scope = Scope {
        namespace: if args.all_namespaces {
            None
        } else {
            args.namespace.clone()
        },
        selector: args.selector.clone(),
    };
    let Settings {
        grace,
        min_age,
        lease,
    } = match settings(&args, &scope) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(Exit::Usage);
        }
    };
    let mut metrics = Metrics::new();
    let gc_metrics = GcMetrics::register(metrics.registry_mut());
    let stores = Arc::new(Stores::start(
        &client,
        &scope,
        metrics.registry_mut(),
        MAX_BACKOFF,
    ));
    let synced = stores.clone();
    let admin = admin_router(
        Arc::new(metrics),
        vec![ReadyCheck {
            name: "stores listed",
            ready: Box::new(move || synced.first_synced()),
        }],
    );
    if super::spawn_admin(args.admin_listen, admin).await.is_none() {
        return Ok(Exit::Usage);
    }
    let (leadership, elector) = super::lead(&client, lease, gc_metrics.leader.clone());
    if scope.namespace.is_some() {
        tracing::info!(
            "--namespace: only StatefulSet annotations opt in (namespace annotations are not read, which would need cluster-wide permission)"
        );
    }
    tracing::info!(
        namespace = scope.namespace.as_deref().unwrap_or("(all)"),
        selector = scope.selector.as_deref().unwrap_or(""),
        grace_seconds = grace,
        min_age_seconds = min_age,
        leader_elect = elector.is_some(),
        identity = leadership.identity(),
        "waiting for the StatefulSet, claim, pod and namespace stores"
    );
    let stop = |elector: Option<Elector>| async move {
        if let Some(elector) = elector {
            elector.release(Duration::from_millis(800)).await;
        }
        tracing::info!("stopped");
        Ok(Exit::Ok)
    };
    loop {
        if stores.first_synced() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.wait() => return stop(elector).await,
        }
    }
    let context = PassContext::new(&client, gc_metrics.clone());
    let mut ticker = tokio::time::interval(Duration::from_secs(args.interval.max(1)));
    tracing::info!("gc reconcile loop started");
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => break,
        }
        if !leadership.is_leader() {
            continue;
        }
        let gate = || {
            if shutdown.requested() {
                Some("stopped by a signal")
            } else if !leadership.is_leader() {
                Some("this replica is not the leader any more")
            } else {
                None
            }
        };
        let options = PassOptions {
            now: now_seconds(),
            grace_seconds: grace,
            min_age_seconds: min_age,
        };
        match pass(&context, &stores, &options, &gate).await {
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
                gc_metrics.errors.inc();
                tracing::error!(error = %err, "reconcile failed; retrying at the next interval");
            }
        }
        if shutdown.requested() {
            break;
        }
    }
    stop(elector).await
}

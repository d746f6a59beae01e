//! `stateward audit`: the one-shot pass (a table or JSON, exit 0/1 as `check`), `--watch`
//! (passes every `--interval`, OpenReports reports, metrics, leader election) and
//! `--print-crds`. Wiring only: the pass is [`crate::audit`], the loop's passes are
//! [`crate::audit::watch`].
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;

use crate::admin::admin_router;
use crate::audit::watch::{AuditMetrics, LoadPolicy, Options, Pass};
use crate::cli::{AuditArgs, OutputFormat};
use crate::commands::Exit;
use crate::gc::shutdown::Shutdown;
use crate::leader::{LeaseSettings, default_identity};
use crate::metrics::Metrics;
use crate::policy::Policy;

pub fn run(args: AuditArgs) -> anyhow::Result<Exit> {
    if args.print_crds {
        std::io::stdout().write_all(crate::audit::openreports::crds_yaml()?.as_bytes())?;
        return Ok(Exit::Ok);
    }
    let policy = match crate::commands::check::load_policy(args.policy.policy.as_deref()) {
        Ok(policy) => policy,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(Exit::Usage);
        }
    };
    if args.watch {
        return run_watch(args, policy);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let Some(client) =
            crate::commands::command_client(args.kubeconfig.as_deref(), args.context.as_deref())
                .await
        else {
            return Ok(Exit::Usage);
        };
        let namespace = if args.all_namespaces {
            None
        } else {
            args.namespace.as_deref()
        };
        let now = crate::cluster::views::now_seconds();
        let listed =
            match crate::audit::pass(&client, namespace, args.selector.as_deref(), &policy, now)
                .await
            {
                Ok(listed) => listed,
                Err(err) => {
                    eprintln!("error: {err}");
                    return Ok(Exit::Usage);
                }
            };
        let report = listed.report;
        // Written as it is serialized: the text of the fleet's report is never held whole.
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        match args.output {
            OutputFormat::Json => {
                serde_json::to_writer_pretty(&mut out, &report)?;
                out.write_all(b"\n")?;
            }
            OutputFormat::Text => out.write_all(crate::audit::render_text(&report).as_bytes())?,
        }
        out.flush()?;
        Ok(if report.has_enforce() {
            Exit::Failure
        } else {
            Exit::Ok
        })
    })
}

/// `audit --watch` on a runtime of its own (two workers: a pass evaluates on one while the
/// other serves /metrics and renews the lease).
fn run_watch(args: AuditArgs, policy: Policy) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let exit = runtime.block_on(async {
        // The one signal listener of the process, before anything else.
        let shutdown = crate::gc::shutdown::Shutdown::install();
        let Some(client) =
            crate::commands::command_client(args.kubeconfig.as_deref(), args.context.as_deref())
                .await
        else {
            return Ok(Exit::Usage);
        };
        let load = crate::commands::check::read_policy;
        watch(args, policy, load, client, shutdown).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    exit
}

async fn watch(
    args: AuditArgs,
    policy: Policy,
    load: LoadPolicy,
    client: Client,
    shutdown: Shutdown,
) -> anyhow::Result<Exit> {
    let settings = match options(&args) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(Exit::Usage);
        }
    };
    let mut metrics = Metrics::new();
    let audit_metrics = AuditMetrics::register(metrics.registry_mut());
    let admin = admin_router(Arc::new(metrics), Vec::new());
    if super::spawn_admin(args.admin_listen, admin).await.is_none() {
        return Ok(Exit::Usage);
    }
    let (leadership, elector) = super::lead(
        &client,
        settings.lease.clone(),
        audit_metrics.leader.clone(),
    );
    tracing::info!(
        namespace = settings.namespace.as_deref().unwrap_or("(all)"),
        selector = settings.selector.as_deref().unwrap_or(""),
        interval_seconds = settings.interval.as_secs(),
        leader_elect = elector.is_some(),
        identity = leadership.identity(),
        "audit --watch started"
    );
    let mut pass = Pass::new(client, settings.clone(), audit_metrics, policy, load);
    // A pass at once when this replica leads (also when it becomes the leader), then
    // every interval; leadership is looked at every second at least.
    let mut leading = false;
    let mut next = Instant::now();
    loop {
        let wait = if leading {
            next.saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1))
        } else {
            Duration::from_millis(200)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => break,
        }
        if !leadership.is_leader() {
            if leading {
                pass.step_down();
                leading = false;
            }
            continue;
        }
        if leading && Instant::now() < next {
            continue;
        }
        leading = true;
        let gate = || {
            if shutdown.requested() {
                Some("stopped by a signal")
            } else if !leadership.is_leader() {
                Some("this replica is not the leader any more")
            } else {
                None
            }
        };
        if let Err(err) = pass.run(&gate).await {
            pass.metrics.errors.inc();
            tracing::error!(error = %err, "audit pass failed; retrying at the next interval");
        }
        next = Instant::now() + settings.interval;
        if shutdown.requested() {
            break;
        }
    }
    if let Some(elector) = elector {
        elector.release(Duration::from_millis(800)).await;
    }
    tracing::info!("stopped");
    Ok(Exit::Ok)
}

/// A duration flag of at least `min` seconds.
fn duration(flag: &'static str, text: &str, min: i64) -> Result<Duration, String> {
    match crate::duration::seconds(text) {
        Some(seconds) if seconds >= min => Ok(Duration::from_secs(seconds as u64)),
        _ => Err(format!(
            "invalid {flag}: {text:?} (a duration such as 90s, 5m, 1h)"
        )),
    }
}

/// The options of `audit --watch` per its flags, checked before anything starts.
fn options(args: &AuditArgs) -> Result<Options, String> {
    let namespace = if args.all_namespaces {
        None
    } else {
        args.namespace.clone()
    };
    let interval = duration("--interval", &args.interval, 1)?;
    let lease = if args.leader_elect {
        let lease_duration = duration("--lease-duration (at least 3s)", &args.lease_duration, 3)?;
        let lease_namespace =
            crate::leader::lease_namespace(args.lease_namespace.as_deref(), namespace.as_deref());
        Some(LeaseSettings::new(
            &args.lease_name,
            &lease_namespace,
            &default_identity(),
            lease_duration,
        ))
    } else {
        None
    };
    Ok(Options {
        interval,
        lease,
        namespace,
        selector: args.selector.clone(),
        policy: args.policy.policy.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_checked() {
        assert_eq!(
            duration("--interval", "5m", 1).ok(),
            Some(Duration::from_secs(300))
        );
        assert!(duration("--interval", "0s", 1).is_err());
        assert!(duration("--interval", "5", 1).is_err());
        assert!(duration("--lease-duration", "2s", 3).is_err());
    }
}

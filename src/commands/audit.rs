//! `stateward audit`: the one-shot pass (a table or JSON, exit 0/1 as `check`), `--watch`
//! (passes every `--interval` on the daemon scaffold: OpenReports reports, metrics, leader
//! election) and `--print-crds`. Wiring only: the pass is [`crate::audit`], the loop's passes are
//! [`crate::audit::watch`].
use std::io::Write;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;

use super::daemon::{self, Loop, Start};
use crate::audit::watch::{AuditMetrics, LoadPolicy, Options, Pass};
use crate::cli::{AuditArgs, OutputFormat};
use crate::commands::Exit;
use crate::gc::collect::Gate;
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
        let Some(client) = crate::commands::command_client(
            args.cluster.kubeconfig.as_deref(),
            args.cluster.context.as_deref(),
        )
        .await
        else {
            return Ok(Exit::Usage);
        };
        let namespace = args.scope.namespace();
        let now = crate::cluster::views::now_seconds();
        let listed = match crate::audit::pass(
            &client,
            namespace,
            args.scope.selector.as_deref(),
            &policy,
            now,
        )
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
            OutputFormat::Text => out.write_all(render_text(&report).as_bytes())?,
        }
        out.flush()?;
        Ok(if report.has_enforce() {
            Exit::Failure
        } else {
            Exit::Ok
        })
    })
}

/// `audit --watch` on the daemon scaffold ([`super::daemon`]): a pass every `--interval`
/// while this replica leads.
fn run_watch(args: AuditArgs, policy: Policy) -> anyhow::Result<Exit> {
    let namespace = args.scope.namespace().map(str::to_owned);
    let lease = match daemon::lease(&args.lease, namespace.as_deref()) {
        Ok(lease) => lease,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(Exit::Usage);
        }
    };
    if args.interval < Duration::from_secs(1) {
        eprintln!(
            "error: invalid --interval: {}s (at least 1s)",
            args.interval.as_secs()
        );
        return Ok(Exit::Usage);
    }
    let settings = daemon::Settings {
        admin_listen: args.admin.admin_listen,
        lease,
        interval: args.interval,
    };
    let options = Options {
        namespace,
        selector: args.scope.selector.clone(),
        policy: args.policy.policy.clone(),
    };
    let interval = args.interval;
    daemon::run(&args.cluster, settings, |client, process| {
        let metrics = AuditMetrics::register(process.registry_mut());
        let load: LoadPolicy = crate::commands::check::read_policy;
        Start {
            checks: Vec::new(),
            pass: Audit {
                pass: Pass::new(client.clone(), options, metrics, policy, load),
                interval,
            },
        }
    })
}

/// The loop of `audit --watch`.
struct Audit {
    pass: Pass,
    interval: Duration,
}

impl Loop for Audit {
    fn leader_gauge(&self) -> Gauge {
        self.pass.metrics.leader.clone()
    }

    fn started(&self, leader_elect: bool, identity: &str) {
        tracing::info!(
            namespace = self.pass.options.namespace.as_deref().unwrap_or("(all)"),
            selector = self.pass.options.selector.as_deref().unwrap_or(""),
            interval_seconds = self.interval.as_secs(),
            leader_elect,
            identity,
            "audit --watch started"
        );
    }

    async fn pass(&mut self, gate: Gate<'_>) {
        if let Err(err) = self.pass.run(gate).await {
            self.pass.metrics.errors.inc();
            tracing::error!(error = %err, "audit pass failed; retrying at the next interval");
        }
    }

    fn step_down(&mut self) {
        self.pass.step_down();
    }
}

/// The report as a person reads it: findings grouped by StatefulSet (Services on their own),
/// the most severe first.
pub fn render_text(report: &crate::audit::AuditReport) -> String {
    let mut out = String::new();
    let mut current: Option<(String, String)> = None;
    for f in &report.findings {
        let heading = match &f.statefulset {
            Some(set) => format!("StatefulSet {}/{set}", f.namespace),
            None => format!("{} {}/{}", f.kind, f.namespace, f.name),
        };
        let key = (f.namespace.clone(), heading.clone());
        if current.as_ref() != Some(&key) {
            if current.is_some() {
                out.push('\n');
            }
            out.push_str(&heading);
            out.push('\n');
            current = Some(key);
        }
        out.push_str(&format!(
            "  {:7}  {}  {}\n           {}\n",
            f.mode.as_str().to_uppercase(),
            f.rule,
            f.field,
            f.message
        ));
    }
    if current.is_some() {
        out.push('\n');
    }
    let s = &report.summary;
    out.push_str(&format!(
        "policy {}: {} statefulsets, {} services, {} pods, {} claims, {} nodes: {} enforce, \
         {} warn, {} audit; {} orphaned claim(s), {} requested\n",
        report.policy,
        s.statefulsets,
        s.services,
        s.pods,
        s.claims,
        s.nodes,
        s.enforce,
        s.warn,
        s.audit,
        s.orphaned_claims,
        crate::quantity::human_bytes(s.orphaned_bytes)
    ));
    out
}

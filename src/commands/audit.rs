//! `stateward audit`: the one-shot pass (a table or JSON, exit 0/1 as `check`), `--watch`
//! (passes every `--interval` on the daemon scaffold: OpenReports reports, metrics, leader
//! election) and `--print-crds`. Wiring only: the pass is [`crate::audit`], the loop's passes are
//! [`crate::audit::watch`].
use std::io::Write;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;

use super::daemon::{self, Loop, Start};
use crate::audit::watch::{AuditMetrics, LoadPolicy, Options, Pass};
use crate::audit::{AuditFinding, AuditReport, Chunk, OrphanRow, Sink, Summary};
use crate::cli::{AuditArgs, OutputFormat};
use crate::commands::Exit;
use crate::gc::collect::Gate;
use crate::policy::Policy;
use serde::Serialize;

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
        let selector = args.scope.selector.as_deref();
        // Each namespace is written as soon as the pass completes it: the fleet's findings
        // are never held whole. A list that fails after the first namespace leaves the
        // output cut short (exit 2).
        let out = std::io::BufWriter::new(std::io::stdout());
        let passed = match args.output {
            OutputFormat::Json => {
                let mut json = JsonOut::start(out, &policy.name)?;
                let passed =
                    crate::audit::pass_into(&client, namespace, selector, &policy, now, &mut json)
                        .await;
                passed.and_then(|p| {
                    json.finish(&p.summary)
                        .map(|_| p)
                        .map_err(crate::audit::AuditError::Output)
                })
            }
            OutputFormat::Text => {
                let mut text = TextOut::new(out);
                let passed =
                    crate::audit::pass_into(&client, namespace, selector, &policy, now, &mut text)
                        .await;
                passed.and_then(|p| {
                    text.finish(&policy.name, &p.summary)
                        .map(|_| p)
                        .map_err(crate::audit::AuditError::Output)
                })
            }
        };
        match passed {
            Ok(passed) => Ok(if passed.summary.enforce > 0 {
                Exit::Failure
            } else {
                Exit::Ok
            }),
            Err(err) => {
                eprintln!("error: {err}");
                Ok(Exit::Usage)
            }
        }
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
pub fn render_text(report: &AuditReport) -> String {
    let mut text = TextOut::new(Vec::new());
    text.write(&report.findings)
        .and_then(|()| text.finish(&report.policy, &report.summary))
        .map(|out| String::from_utf8_lossy(&out).into_owned())
        .unwrap_or_default()
}

/// The text report written namespace by namespace ([`render_text`] of the whole).
pub struct TextOut<W: Write> {
    out: W,
    current: Option<(String, String)>,
}

impl<W: Write> TextOut<W> {
    pub fn new(out: W) -> TextOut<W> {
        TextOut { out, current: None }
    }

    fn write(&mut self, findings: &[AuditFinding]) -> std::io::Result<()> {
        for f in findings {
            let heading = match &f.statefulset {
                Some(set) => format!("StatefulSet {}/{set}", f.namespace),
                None => format!("{} {}/{}", f.kind, f.namespace, f.name),
            };
            if self
                .current
                .as_ref()
                .is_none_or(|(ns, h)| *ns != f.namespace || *h != heading)
            {
                if self.current.is_some() {
                    self.out.write_all(b"\n")?;
                }
                writeln!(self.out, "{heading}")?;
                self.current = Some((f.namespace.clone(), heading));
            }
            writeln!(
                self.out,
                "  {:7}  {}  {}\n           {}",
                f.mode.as_str().to_uppercase(),
                f.rule,
                f.field,
                f.message
            )?;
        }
        Ok(())
    }

    /// The summary line; returns the writer, flushed.
    pub fn finish(mut self, policy: &str, s: &Summary) -> std::io::Result<W> {
        if self.current.is_some() {
            self.out.write_all(b"\n")?;
        }
        writeln!(
            self.out,
            "policy {policy}: {} statefulsets, {} services, {} pods, {} claims, {} nodes: {} \
             enforce, {} warn, {} audit; {} orphaned claim(s), {} requested",
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
        )?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Sink for TextOut<W> {
    async fn namespace(&mut self, chunk: Chunk) -> std::io::Result<()> {
        self.write(&chunk.findings)
    }
}

/// The JSON report written namespace by namespace: the text `serde_json::to_writer_pretty`
/// makes of the whole [`AuditReport`], with a newline. The orphaned claims (written after
/// the findings) wait until the end.
pub struct JsonOut<W: Write> {
    out: W,
    findings: usize,
    orphans: Vec<OrphanRow>,
}

/// `value` as pretty JSON nested `indent` deep.
fn nested(out: &mut impl Write, value: &impl Serialize, indent: &str) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    out.write_all(text.replace('\n', &format!("\n{indent}")).as_bytes())
}

impl<W: Write> JsonOut<W> {
    pub fn start(mut out: W, policy: &str) -> std::io::Result<JsonOut<W>> {
        write!(
            out,
            "{{\n  \"policy\": {},\n  \"findings\": [",
            serde_json::to_string(policy)?
        )?;
        Ok(JsonOut {
            out,
            findings: 0,
            orphans: Vec::new(),
        })
    }

    fn items<T: Serialize>(out: &mut W, items: &[T], written: &mut usize) -> std::io::Result<()> {
        for item in items {
            out.write_all(if *written == 0 { b"\n    " } else { b",\n    " })?;
            nested(out, item, "    ")?;
            *written += 1;
        }
        Ok(())
    }

    /// The orphaned claims and the summary; returns the writer, flushed.
    pub fn finish(mut self, summary: &Summary) -> std::io::Result<W> {
        let close = |n: usize| if n == 0 { "]" } else { "\n  ]" };
        write!(
            self.out,
            "{},\n  \"orphanedClaims\": [",
            close(self.findings)
        )?;
        let mut orphans = 0;
        Self::items(&mut self.out, &self.orphans, &mut orphans)?;
        write!(self.out, "{},\n  \"summary\": ", close(orphans))?;
        nested(&mut self.out, summary, "  ")?;
        self.out.write_all(b"\n}\n")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Sink for JsonOut<W> {
    async fn namespace(&mut self, chunk: Chunk) -> std::io::Result<()> {
        Self::items(&mut self.out, &chunk.findings, &mut self.findings)?;
        self.orphans.extend(chunk.orphaned_claims);
        Ok(())
    }
}

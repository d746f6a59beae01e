//! Command-line definitions (clap derive). Shared argument groups are flattened into the
//! subcommands so every command spells common flags the same way.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "stateward",
    version,
    about = "Admission webhook and policy enforcer for Kubernetes StatefulSets",
    long_about = "stateward checks StatefulSets, their headless Services and their Pods \
                  against a policy, adds safe defaults, and finds storage left behind by \
                  scale-downs and deletions."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate manifests offline (files, directories or `-` for stdin).
    #[command(after_help = "Examples:\n  stateward check -f examples/web.yaml\n  \
        helm template my-release ./chart | stateward check -f - -o json\n  \
        stateward check -f manifests/ --policy policies/strict.yaml\n  \
        stateward check -f manifests/ -o sarif > stateward.sarif\n  \
        stateward check -f manifests/ -o junit > stateward-junit.xml\n  \
        stateward check -f manifests/ -o github   # annotations in a GitHub Actions step\n\n\
        Exit status: 0 no enforce violation, 1 at least one enforce violation, \
        2 usage error, unreadable input, invalid document or invalid policy.")]
    Check(CheckArgs),
    /// Print manifests with the policy's defaults applied.
    #[command(after_help = "Examples:\n  stateward mutate -f examples/web.yaml\n  \
        kubectl get sts web -o yaml | stateward mutate -f -\n\n\
        Exit status: 0 success, 2 unreadable input, invalid document or invalid policy.")]
    Mutate(MutateArgs),
    /// List the rules: id, kinds, operations, default mode and summary.
    #[command(after_help = "Examples:\n  stateward rules\n  \
        stateward rules --policy policies/strict.yaml -o json")]
    Rules(RulesArgs),
    /// Run the admission webhook (HTTPS) and its admin port.
    #[command(after_help = "Examples:\n  stateward serve --dev\n  \
        stateward serve --tls-cert /tls/tls.crt --tls-key /tls/tls.key --policy /policy/policy.yaml\n\n\
        Exit status: 0 after a graceful shutdown (SIGTERM/SIGINT), 2 on a start-up error \
        (bad certificate, bad policy, port in use).")]
    Serve(ServeArgs),
    /// Generate a CA and a serving certificate for the webhook Service.
    #[command(
        after_help = "Examples:\n  stateward certs --service stateward --namespace stateward-system\n  \
        stateward certs --service stateward --namespace ops --out /tmp/certs --days 365 --force"
    )]
    Certs(CertsArgs),
    /// Find, and on request delete, PersistentVolumeClaims orphaned by StatefulSets.
    #[command(after_help = "Examples:\n  stateward gc --all-namespaces\n  \
        stateward gc --namespace shop --min-age 7d -o json\n  \
        stateward gc --namespace shop --delete\n  \
        stateward gc --watch --all-namespaces --grace 1h\n\n\
        Without --delete nothing is changed. Exit status: 0 success (also nothing to do), \
        1 at least one deletion failed, 2 usage or connection error.")]
    Gc(GcArgs),
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level or filter directive (overrides RUST_LOG), e.g. `info` or `stateward=debug`.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Policy file; without it the built-in `baseline` policy is used.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// A file, a directory (read recursively: *.yaml, *.yml, *.json) or `-` for stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Output format: text, json, sarif (SARIF 2.1.0 for code scanning), junit (JUnit
    /// XML) or github (GitHub Actions annotations).
    #[arg(short, long, value_enum, default_value_t = CheckOutput::Text)]
    pub output: CheckOutput,
    /// Treat unknown fields in StatefulSets, Services and Pods as errors (exit 2), as
    /// `kubectl apply --validate=strict` would; without it they are notices.
    #[arg(long)]
    pub strict_fields: bool,
    /// Colour in text output: auto (only on a terminal), always or never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// `check`'s output formats: the common ones and the CI formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckOutput {
    /// Grouped by object, for people.
    Text,
    /// One JSON object (findings, errors, notices, summary).
    Json,
    /// SARIF 2.1.0: GitHub code scanning, GitLab and other SARIF viewers.
    Sarif,
    /// JUnit XML: a test case per evaluated object, a failure per enforce finding.
    Junit,
    /// GitHub Actions workflow commands (`::error file=…,line=…,col=…`).
    Github,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Args)]
pub struct MutateArgs {
    /// A file, a directory (read recursively: *.yaml, *.yml, *.json) or `-` for stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RulesArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// HTTPS address for /validate and /mutate.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: std::net::SocketAddr,
    /// Plain HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub admin_listen: std::net::SocketAddr,
    /// Serving certificate (PEM; re-read when it changes).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "dev",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// Private key of the serving certificate (PEM).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "dev",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Generate certs/dev/ for localhost and print how to call the webhook.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub dev: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Cluster context for rules that need other objects: auto, required or off.
    #[arg(long, value_enum, default_value_t = ClusterMode::Auto)]
    pub cluster: ClusterMode,
    /// Kubeconfig file (otherwise in-cluster config, KUBECONFIG or ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, default_value_t = 3 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most connections served at once on the HTTPS port.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// How often certificate and policy files are checked for changes, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub reload_interval: f64,
    /// After SIGTERM or SIGINT, keep answering on the HTTPS port for this many seconds
    /// while /readyz answers 503, so that the Service's endpoints drop this pod before it
    /// stops accepting; then drain and exit. A second signal skips the rest of the delay.
    /// [default: 10; 0 with --dev]
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(..=3600))]
    pub shutdown_delay: Option<u64>,
}

impl ServeArgs {
    /// `--shutdown-delay`, or its default: 10 s, none with `--dev` (a local run stops at
    /// once on Ctrl-C).
    pub fn shutdown_delay(&self) -> std::time::Duration {
        let default = if self.dev { 0 } else { 10 };
        std::time::Duration::from_secs(self.shutdown_delay.unwrap_or(default))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClusterMode {
    /// Use in-cluster config or a kubeconfig when one is found, else run without context.
    Auto,
    /// Not ready until the caches are synced.
    Required,
    /// Never contact a cluster.
    Off,
}

#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// The webhook's Service name.
    #[arg(long)]
    pub service: String,
    /// The webhook's namespace.
    #[arg(long)]
    pub namespace: String,
    /// Output directory.
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    pub days: i64,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct GcArgs {
    /// Only this namespace.
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Every namespace (the default when no --namespace is given).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only claims with these labels (e.g. `app=db,tier!=cache`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Only claims older than this (`90s`, `30m`, `12h`, `7d`).
    #[arg(long)]
    pub min_age: Option<String>,
    /// Delete the planned claims (verified ones; see --include-unverified).
    #[arg(long)]
    pub delete: bool,
    /// With --delete, also delete claims known only by name pattern and labels.
    #[arg(long, requires = "delete")]
    pub include_unverified: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Kubeconfig file (otherwise in-cluster, KUBECONFIG or ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Run the reconcile loop: provenance annotations, orphan metrics and events, and
    /// deletion of opted-in orphans after --grace.
    #[arg(long, conflicts_with_all = ["delete", "include_unverified"])]
    pub watch: bool,
    /// With --watch: how long a claim must stay an orphan before it is deleted.
    #[arg(long, default_value = "1h")]
    pub grace: String,
    /// With --watch: plain HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub admin_listen: std::net::SocketAddr,
    /// With --watch: seconds between reconciles.
    #[arg(long, default_value_t = 30)]
    pub interval: u64,
}

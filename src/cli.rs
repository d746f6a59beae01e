//! Command-line definitions (clap derive). Shared argument groups are flattened into the
//! subcommands so every command spells common flags the same way.
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// `stateward --version`: the version, the git commit it was built from and the Kubernetes
/// API version of the types it was built with (see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STATEWARD_GIT_COMMIT"),
    ", Kubernetes API ",
    env!("STATEWARD_K8S_API"),
    ")"
);

/// The Kubernetes API version (`1.NN`) of the k8s-openapi types stateward was built with.
pub const KUBERNETES_API: &str = env!("STATEWARD_K8S_API");

/// The git commit stateward was built from, or `unknown`.
pub const GIT_COMMIT: &str = env!("STATEWARD_GIT_COMMIT");

#[derive(Debug, Parser)]
#[command(
    name = "stateward",
    version = VERSION,
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
        stateward gc --watch --all-namespaces --grace 1h\n  \
        stateward gc --watch -n shop --lease-namespace shop --grace 30m\n\n\
        Without --delete (or --watch) nothing is changed. A claim of a live StatefulSet is \
        verified by the set; a claim of a deleted set by stateward's provenance annotations. \
        SIGTERM/SIGINT during deletions finishes the request in flight and skips the rest. \
        Exit status: 0 success (also nothing to do, or stopped by a signal), 1 at least one \
        deletion failed, 2 usage or connection error.")]
    Gc(GcArgs),
    /// Report what is wrong with the StatefulSets running in a cluster now (read-only).
    #[command(after_help = "Examples:\n  stateward audit\n  \
        stateward audit -n shop -o json\n  \
        stateward audit -A -l tier=db --policy policies/strict.yaml\n  \
        stateward audit --context prod --kubeconfig ~/.kube/prod\n  \
        stateward audit --watch --interval 5m   # OpenReports Reports and metrics\n  \
        stateward audit --print-crds | kubectl apply -f -\n\n\
        Lists StatefulSets, Services, PodDisruptionBudgets, pods, claims and nodes (500 per \
        page), evaluates every StatefulSet and Service as the webhook would admit it, and \
        adds the live-state rules (blocked rollouts, pods stuck Terminating, unbound \
        claims, PodDisruptionBudgets that block drains, orphaned claims). Without --watch \
        nothing is changed. Exit status: 0 no enforce finding, 1 at least one enforce finding, 2 usage \
        error, invalid policy or API error (a forbidden list names the resource); with \
        --watch: 0 after SIGTERM/SIGINT, 2 on a start-up error (a later failed pass is \
        logged and counted, and the next pass tries again).")]
    Audit(AuditArgs),
    /// Policy files: print their JSON Schema, or validate them.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print a shell completion script (bash, zsh, fish, powershell or elvish).
    #[command(after_help = "Examples:\n  \
        stateward completions bash > /etc/bash_completion.d/stateward\n  \
        stateward completions zsh > \"${fpath[1]}/_stateward\"\n  \
        stateward completions fish > ~/.config/fish/completions/stateward.fish\n  \
        stateward completions powershell >> $PROFILE")]
    Completions(CompletionsArgs),
    /// Print the man page, or write one page per command to a directory.
    #[command(after_help = "Examples:\n  stateward man | man -l -\n  \
        stateward man --dir /usr/local/share/man/man1")]
    Man(ManArgs),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the JSON Schema of policy files (draft-07; `policies/policy.schema.json`).
    #[command(
        after_help = "Examples:\n  stateward policy schema > policy.schema.json\n\n\
        Editors with the YAML language server validate a policy file whose first line is\n  \
        # yaml-language-server: $schema=./policy.schema.json"
    )]
    Schema,
    /// Validate policy files as `serve`, `check` and `mutate` read them.
    #[command(
        after_help = "Examples:\n  stateward policy check policies/strict.yaml\n  \
        stateward policy check my-policy.yaml other.yaml\n\n\
        Exit status: 0 every file is a valid policy, 2 at least one is not (the error names \
        the file, the line and the field)."
    )]
    Check(PolicyCheckArgs),
    /// Print the webhook entries for a policy: what the API server sends stateward, and
    /// which entries fail closed when stateward does not answer.
    #[command(
        after_help = "Each entry exists only if a rule or mutation it carries is on; its \
        matchConditions keep only the requests some rule can act on; a validating entry is \
        failClosed only when one of its rules is enforce (the chart then uses \
        webhook.validatingFailurePolicy, Fail by default; every other entry is Ignore).\n\n\
        Examples:\n  stateward policy webhooks\n  \
        stateward policy webhooks --policy policies/strict.yaml\n  \
        stateward policy webhooks --policy my-policy.yaml --values > stateward-policy.yaml\n  \
        helm upgrade --install stateward charts/stateward -f stateward-policy.yaml\n\n\
        Exit status: 0, or 2 when the policy file cannot be used."
    )]
    Webhooks(PolicyWebhooksArgs),
    /// Print the policy compiled to the API server's own ValidatingAdmissionPolicies and
    /// bindings (`| kubectl apply -f -`).
    #[command(
        after_help = "The checks of the rules CEL can express, gathered into one \
        ValidatingAdmissionPolicy and binding per resource and action \
        (stateward.<resource>.<deny|warn|audit>: enforce -> Deny, warn -> Warn, audit -> Audit; \
        a rule's advisory checks bound at most Warn; each message starts with its rule id), \
        and one MutatingAdmissionPolicy per mutation CEL can express; the header lists every \
        rule that is on, native or not, with the reason. Parameters, excludedNamespaces, \
        skips, the override annotation and exempt users are baked in.\n\n\
        Examples:\n  stateward policy native | kubectl apply -f -\n  \
        stateward policy native --policy policies/strict.yaml > stateward-native.yaml\n  \
        kubectl delete validatingadmissionpolicies,validatingadmissionpolicybindings \
        -l app.kubernetes.io/managed-by=stateward\n\n\
        Exit status: 0, or 2 when the policy file cannot be used."
    )]
    Native(PolicyWebhooksArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PolicyWebhooksArgs {
    /// Policy file; without it the built-in `baseline` policy is used.
    #[arg(short, long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// (`webhooks` only) Print a Helm values file instead: the policy as `policy.inline`
    /// with its entries as `webhook.scope` (the chart refuses entries made for another
    /// policy text).
    #[arg(long)]
    pub values: bool,
    /// (`webhooks` only) The entries of the chart's `hybrid` mode: only for the rules that
    /// do not run natively in the API server.
    #[arg(long)]
    pub hybrid: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PolicyCheckArgs {
    /// Policy files to validate.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// Write `stateward.1` and one page per subcommand (`stateward-check.1`, ...) here
    /// instead of printing `stateward.1`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The name to show in usage and examples for the program file `argv0`: a kubectl plugin
/// (`kubectl-stateward`) shows as kubectl runs it (`kubectl stateward`; in plugin file
/// names `-` separates words and `_` stands for `-`), any other file under its own name.
pub fn display_name(argv0: Option<&std::ffi::OsStr>) -> String {
    let file = argv0
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_name)
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = file.strip_suffix(".exe").unwrap_or(&file);
    match file.strip_prefix("kubectl-") {
        Some(plugin) if !plugin.is_empty() => {
            let words: Vec<String> = plugin.split('-').map(|w| w.replace('_', "-")).collect();
            format!("kubectl {}", words.join(" "))
        }
        _ if file.is_empty() => "stateward".to_owned(),
        _ => file.to_owned(),
    }
}

/// The command line as shown to a user who called the program `name` (see
/// [`display_name`]): usage lines and examples use that name.
pub fn command(name: &str) -> clap::Command {
    let mut cmd = Cli::command();
    if name == "stateward" {
        return cmd;
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for sub in names {
        cmd = cmd.mut_subcommand(&sub, |s| match s.get_after_help() {
            Some(help) => {
                let help = help.to_string().replace("stateward ", &format!("{name} "));
                s.after_help(help)
            }
            None => s,
        });
    }
    cmd.bin_name(name.to_owned())
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
#[command(group(clap::ArgGroup::new("input").required(true).multiple(true).args(["paths", "files"])))]
pub struct CheckArgs {
    /// A file, a directory (read recursively: *.yaml, *.yml, *.json) or `-` for stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// More paths, as -f takes them (for tools that append file names, such as pre-commit).
    #[arg(value_name = "PATH")]
    pub files: Vec<PathBuf>,
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
    /// The generated rule table of README.md or docs/rules.md, as Markdown (for the
    /// project's docs, checked by a test).
    #[arg(long, value_enum, value_name = "DOC", hide = true)]
    pub markdown: Option<RulesDoc>,
}

/// A document whose rule table is generated from the rule declarations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RulesDoc {
    /// README.md's rule table.
    Readme,
    /// docs/rules.md's index.
    Docs,
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
    /// The kubeconfig context to use (as kubectl's --context; the current context
    /// otherwise). Implies reading a kubeconfig rather than in-cluster config.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Rules the API server enforces itself (the native policies of `stateward policy
    /// native`, installed by the chart in `hybrid` mode): never evaluated here, so each rule
    /// is judged in exactly one place. Comma-separated rule ids.
    #[arg(long, value_name = "RULE,...", value_delimiter = ',')]
    pub native_rules: Vec<String>,
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

/// A duration flag: a duration (`90s`, `30m`, `1h30m`, `7d`) in whole seconds, or a bare
/// number of seconds (`30`).
pub fn duration(text: &str) -> Result<std::time::Duration, String> {
    let seconds = match text.parse::<u64>() {
        Ok(seconds) => Some(seconds),
        Err(_) => crate::duration::seconds(text).and_then(|s| u64::try_from(s).ok()),
    };
    seconds.map(std::time::Duration::from_secs).ok_or_else(|| {
        "use a number of seconds, or a number with s, m, h or d (e.g. 90s, 30m, 7d)".to_owned()
    })
}

/// The cluster of `gc` and `audit`.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Kubeconfig file (otherwise in-cluster, KUBECONFIG or ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (as kubectl's --context; the current context
    /// otherwise). Implies reading a kubeconfig rather than in-cluster config.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

/// Which objects `gc` and `audit` look at (each command says more in its help).
#[derive(Debug, Clone, Args)]
pub struct ScopeArgs {
    /// Only this namespace.
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Every namespace (the default when no --namespace is given).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only objects with these labels (e.g. `app=db,tier!=cache`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

impl ScopeArgs {
    /// The namespace looked at: `None` for every namespace.
    pub fn namespace(&self) -> Option<&str> {
        if self.all_namespaces {
            None
        } else {
            self.namespace.as_deref()
        }
    }
}

/// The admin port of `gc --watch` and `audit --watch`.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// With --watch: plain HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080", requires = "watch")]
    pub admin_listen: std::net::SocketAddr,
}

/// Leader election of `gc --watch` and `audit --watch` (each command names its Lease).
#[derive(Debug, Clone, Args)]
pub struct LeaseArgs {
    /// With --watch: elect a leader over a coordination.k8s.io/v1 Lease so that of several
    /// replicas only one writes (`--leader-elect=false` for a single replica without a
    /// Lease).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
        num_args = 0..=1, default_missing_value = "true", requires = "watch")]
    pub leader_elect: bool,
    /// With --watch: the Lease's name.
    #[arg(long, default_value = "stateward-gc", requires = "watch")]
    pub lease_name: String,
    /// With --watch: the Lease's namespace (default: POD_NAMESPACE, else --namespace, else
    /// `default`).
    #[arg(long, requires = "watch")]
    pub lease_namespace: Option<String>,
    /// With --watch: how long a Lease stays valid without renewal (`15s`); the leader
    /// renews every third of it and stops writing when it could not renew within two
    /// thirds of it.
    #[arg(long, default_value = "15s", value_parser = duration, requires = "watch")]
    pub lease_duration: std::time::Duration,
}

#[derive(Debug, Clone, Args)]
#[command(
    mut_arg("namespace", |a| a.help("Only this namespace (a Role there is enough, plus read access to nodes)")),
    mut_arg("selector", |a| a.help("Only StatefulSets with these labels (e.g. `app=db,tier!=cache`), the Services they name and their orphaned claims")),
    mut_arg("leader_elect", |a| a.help("With --watch: elect a leader over a coordination.k8s.io/v1 Lease so that of several replicas only one runs passes and writes (`--leader-elect=false` for a single replica without a Lease)")),
    mut_arg("lease_name", |a| a.default_value("stateward-audit")),
)]
pub struct AuditArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Output format: a table grouped by StatefulSet, or one JSON object.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Print the OpenReports CRDs (Report, ClusterReport) that `--watch` writes to, as
    /// generated from stateward's types, and exit (`| kubectl apply -f -`).
    #[arg(long, exclusive = true)]
    pub print_crds: bool,
    /// Keep running: a pass every --interval, one OpenReports Report per StatefulSet and
    /// one per namespace with orphaned claims (written only when they change), and
    /// metrics. Without the OpenReports CRDs: logs and metrics only.
    #[arg(long, conflicts_with = "output")]
    pub watch: bool,
    /// With --watch: time between passes (`90s`, `5m`, `1h`).
    #[arg(long, default_value = "5m", value_parser = duration, requires = "watch")]
    pub interval: std::time::Duration,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub lease: LeaseArgs,
}

#[derive(Debug, Clone, Args)]
#[command(
    mut_arg("namespace", |a| a.help("Only this namespace (with --watch: only this namespace is watched, so a Role in it is enough; namespace annotations are then not read)")),
    mut_arg("selector", |a| a.help("Only claims with these labels (e.g. `app=db,tier!=cache`)")),
)]
pub struct GcArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Only claims older than this (`90s`, `30m`, `12h`, `7d`).
    #[arg(long, value_parser = duration)]
    pub min_age: Option<std::time::Duration>,
    /// Delete the planned claims (verified ones; see --include-unverified).
    #[arg(long)]
    pub delete: bool,
    /// With --delete, also delete claims of deleted sets known only by name pattern and
    /// labels (no provenance annotations).
    #[arg(long, requires = "delete")]
    pub include_unverified: bool,
    /// Output format of the plan (not with --watch, which only logs).
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text, conflicts_with = "watch")]
    pub output: OutputFormat,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Run the reconcile loop: provenance annotations, orphan metrics and events, and
    /// deletion of opted-in orphans after --grace.
    #[arg(long, conflicts_with_all = ["delete", "include_unverified"])]
    pub watch: bool,
    /// With --watch: how long a claim must stay an orphan before it is deleted.
    #[arg(long, default_value = "1h", value_parser = duration, requires = "watch")]
    pub grace: std::time::Duration,
    #[command(flatten)]
    pub admin: AdminArgs,
    /// With --watch: seconds between reconciles.
    #[arg(long, default_value = "30", value_parser = duration, requires = "watch")]
    pub interval: std::time::Duration,
    #[command(flatten)]
    pub lease: LeaseArgs,
}

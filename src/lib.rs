//! stateward: admission webhook and policy enforcer for StatefulSets, their headless
//! Services and their Pods, and the collector of the claims they leave behind.
//!
//! The crate is layered; each layer may use the ones below it, never the ones above:
//!
//! - [`commands`] (with [`cli`], the clap definitions): one module per subcommand
//!   (`check`, `mutate`, `rules`, `policy`, `serve`, `certs`, `gc`, `audit`, completions
//!   and man pages). The only code that reads the command line, prints (the renderings of
//!   `gc` and `audit` included), chooses exit statuses ([`commands::Exit`]) and reports
//!   errors with `anyhow`. It turns flags into the option structs of the layers below
//!   ([`gc::Options`], [`audit::watch::Options`], [`cluster::Mode`],
//!   [`telemetry::Options`]) and turns their plain answers (a failed deletion, an enforce
//!   finding) into exit statuses.
//! - [`webhook`]: the HTTPS transport of `serve`: admission decoding and answers, routes,
//!   TLS and live reload. [`admin`]: the plain admin port (health, readiness, metrics).
//! - [`gc`]: the collector of orphaned claims; [`audit`]: passes over the live fleet and
//!   their OpenReports reports. The audit borrows only the classifier ([`gc::classify`])
//!   from the collector; what both read of the cluster is in [`cluster::views`].
//! - [`cluster`]: the Kubernetes client, the watch-fed caches (webhook context and the
//!   collector's stores) and the collector's projections of claims, sets and pods
//!   ([`cluster::views`]); [`leader`]: Lease election.
//! - [`policy`]: the pure engine (rules, policy files, patches). No I/O.
//!
//! Beside the layers, used by any of them: [`duration`] and [`quantity`] (pure parsers and
//! formatters), [`metrics`], [`telemetry`] (logging set-up) and [`shutdown`] (the one
//! signal listener of a process).

pub mod admin;
pub mod audit;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod duration;
pub mod gc;
pub mod leader;
pub mod metrics;
pub mod policy;
pub mod quantity;
pub mod shutdown;
pub mod telemetry;
pub mod webhook;

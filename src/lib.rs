//! stateward: admission webhook and policy enforcer for StatefulSets, their headless
//! Services and their Pods, and the collector of the claims they leave behind.
//!
//! The crate is layered; each layer may use the ones below it, never the ones above:
//!
//! - [`commands`]: one module per subcommand (`check`, `mutate`, `rules`, `policy`,
//!   `serve`, `certs`, `gc`, `audit`, completions and man pages). The only code that
//!   prints, chooses exit statuses and reports errors with `anyhow`.
//! - [`webhook`]: the HTTPS transport of `serve`: admission decoding and answers, routes,
//!   TLS and live reload. [`admin`]: the plain admin port (health, readiness, metrics).
//! - [`gc`]: the collector of orphaned claims; [`audit`]: passes over the live fleet and
//!   their OpenReports reports.
//! - [`cluster`]: the Kubernetes client and the watch-fed caches (webhook context and the
//!   collector's stores); [`leader`]: Lease election.
//! - [`policy`]: the pure engine (rules, policy files, patches). No I/O.

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
pub mod telemetry;
pub mod webhook;

/// Process exit statuses shared by every subcommand (see `interface.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success, or nothing at enforce level.
    Ok = 0,
    /// At least one `enforce` violation (check) or one failed deletion (gc).
    Failure = 1,
    /// Usage error, unreadable input, invalid policy or connection error.
    Usage = 2,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}

//! stateward: admission webhook and policy enforcer for StatefulSets, their headless
//! Services and their Pods. The decision engine lives in [`policy`] and does no I/O; the
//! offline commands ([`check`]) and the webhook call the same [`policy::evaluate`].
#![forbid(unsafe_code)]

pub mod admission;
pub mod audit;
pub mod certs;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod formats;
pub mod gc;
pub mod generate;
pub mod leader;
pub mod manifest;
pub mod metrics;
pub mod policy;
pub mod policy_cmd;
pub mod reload;
pub mod rules_cmd;
pub mod serve;
pub mod server;
pub mod telemetry;
pub mod tls;

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

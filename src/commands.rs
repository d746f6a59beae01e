//! The subcommands, one module each, every one entered through `run`-style functions that
//! `main` calls. Only this layer prints to the terminal, picks exit statuses ([`Exit`])
//! and reports errors with `anyhow`; the layers below return typed errors and plain facts
//! (a failed deletion, an enforce finding) from which the commands choose the status. The
//! long-running `gc --watch` and `audit --watch` share one scaffold ([`daemon`]).
pub mod audit;
pub mod certs;
pub mod check;
pub mod daemon;
pub mod gc;
pub mod generate;
pub mod policy;
pub mod rules;
pub mod serve;

use std::net::SocketAddr;
use std::path::Path;

use kube::Client;

/// The client of a command that needs a cluster (`gc`, `audit`): `None` after printing
/// why there is none (the command then exits 2).
pub async fn command_client(kubeconfig: Option<&Path>, context: Option<&str>) -> Option<Client> {
    match crate::cluster::client(crate::cluster::Mode::Required, kubeconfig, context).await {
        Ok(Some(client)) => Some(client),
        Ok(None) => {
            eprintln!("error: no cluster configuration");
            None
        }
        Err(err) => {
            eprintln!("error: {err}");
            None
        }
    }
}

/// Serves the admin port of a long-running command in the background: `None` after
/// printing why it cannot listen (the command then exits 2).
pub async fn spawn_admin(addr: SocketAddr, router: axum::Router) -> Option<()> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            });
            Some(())
        }
        Err(err) => {
            eprintln!("error: cannot listen on {addr}: {err}");
            None
        }
    }
}

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

impl From<crate::cli::ClusterMode> for crate::cluster::Mode {
    fn from(mode: crate::cli::ClusterMode) -> Self {
        match mode {
            crate::cli::ClusterMode::Auto => crate::cluster::Mode::Auto,
            crate::cli::ClusterMode::Required => crate::cluster::Mode::Required,
            crate::cli::ClusterMode::Off => crate::cluster::Mode::Off,
        }
    }
}

impl From<&crate::cli::GlobalArgs> for crate::telemetry::Options {
    fn from(args: &crate::cli::GlobalArgs) -> Self {
        crate::telemetry::Options {
            format: match args.log_format {
                crate::cli::LogFormat::Text => crate::telemetry::Format::Text,
                crate::cli::LogFormat::Json => crate::telemetry::Format::Json,
            },
            level: args.log_level.clone(),
        }
    }
}

//! The subcommands, one module each, every one entered through `run`-style functions that
//! `main` calls. Only this layer prints to the terminal, picks exit statuses ([`crate::Exit`])
//! and reports errors with `anyhow`; the layers below return typed errors.
pub mod audit;
pub mod certs;
pub mod check;
pub mod gc;
pub mod generate;
pub mod policy;
pub mod rules;
pub mod serve;

use std::net::SocketAddr;
use std::path::Path;

use kube::Client;
use prometheus_client::metrics::gauge::Gauge;

use crate::leader::{Elector, Leadership, LeaseSettings};

/// The client of a command that needs a cluster (`gc`, `audit`): `None` after printing
/// why there is none (the command then exits 2).
pub async fn command_client(kubeconfig: Option<&Path>, context: Option<&str>) -> Option<Client> {
    match crate::cluster::client(crate::cli::ClusterMode::Required, kubeconfig, context).await {
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

/// Starts leader election over `lease`, or leads alone without one (`leader` is set to 1).
pub fn lead(
    client: &Client,
    lease: Option<LeaseSettings>,
    leader: Gauge,
) -> (Leadership, Option<Elector>) {
    match lease {
        Some(settings) => {
            let (leadership, elector) = Elector::spawn(client.clone(), settings, leader);
            (leadership, Some(elector))
        }
        None => {
            leader.set(1);
            (Leadership::always(), None)
        }
    }
}

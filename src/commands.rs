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

use std::path::Path;

use kube::Client;

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

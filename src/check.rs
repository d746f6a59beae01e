//! Offline evaluation: `stateward check` and `stateward mutate`.
use std::path::Path;

use crate::Exit;
use crate::cli::{CheckArgs, MutateArgs};
use crate::policy::{Policy, PolicyError};

/// The policy from `--policy`, or the built-in baseline.
pub fn load_policy(path: Option<&Path>) -> Result<Policy, PolicyError> {
    match path {
        Some(path) => Policy::load(path),
        None => Ok(Policy::baseline()),
    }
}

pub fn run_check(_args: CheckArgs) -> anyhow::Result<Exit> {
    anyhow::bail!("check is being written")
}

pub fn run_mutate(_args: MutateArgs) -> anyhow::Result<Exit> {
    anyhow::bail!("mutate is being written")
}

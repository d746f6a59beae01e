//! `stateward policy schema` (the JSON Schema of policy files) and `stateward policy check`
//! (validate policy files). Reads files and prints; what a valid policy is belongs to the
//! engine ([`crate::policy::config`]).
use std::io::Write;

use crate::Exit;
use crate::cli::{PolicyCheckArgs, PolicyCommand};

/// The schema as `stateward policy schema` prints it (and `policies/policy.schema.json`
/// holds it).
pub fn schema_text() -> serde_json::Result<String> {
    Ok(format!(
        "{}\n",
        serde_json::to_string_pretty(&crate::policy::config::schema())?
    ))
}

pub fn run(command: PolicyCommand) -> anyhow::Result<Exit> {
    match command {
        PolicyCommand::Schema => {
            std::io::stdout().write_all(schema_text()?.as_bytes())?;
            Ok(Exit::Ok)
        }
        PolicyCommand::Check(args) => Ok(check(&args)),
    }
}

fn check(args: &PolicyCheckArgs) -> Exit {
    let mut exit = Exit::Ok;
    for file in &args.files {
        match super::check::read_policy(file) {
            Ok(policy) => println!("{}: valid policy `{}`", file.display(), policy.name),
            Err(err) => {
                eprintln!("error: {err}");
                exit = Exit::Usage;
            }
        }
    }
    exit
}

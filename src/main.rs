//! `stateward`: wiring only. Every subcommand lives in its own module as `run(args)`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use stateward::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    stateward::telemetry::init(&cli.global);
    let result = match cli.command {
        Command::Check(args) => stateward::check::run_check(args),
        Command::Mutate(args) => stateward::check::run_mutate(args),
        Command::Rules(args) => stateward::rules_cmd::run(args),
        Command::Serve(args) => stateward::serve::run(args),
        Command::Certs(args) => stateward::certs::run(args),
        Command::Gc(args) => stateward::gc::run(args),
    };
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            stateward::Exit::Usage.into()
        }
    }
}

//! `stateward`: wiring only. Every subcommand lives in its own module of
//! [`stateward::commands`]; this file parses the command line and maps the result to an exit
//! status.

use std::process::ExitCode;

use clap::FromArgMatches;
use stateward::cli::{Cli, Command};

fn main() -> ExitCode {
    // Before any thread: list pages are returned to the kernel once decoded.
    stateward::commands::daemon::fix_mmap_threshold();
    // Installed as `kubectl-stateward`, usage and examples say `kubectl stateward`.
    let argv0 = std::env::args_os().next();
    let name = stateward::cli::display_name(argv0.as_deref());
    let matches = stateward::cli::command(&name).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    stateward::telemetry::init(&(&cli.global).into());
    let result = match cli.command {
        Command::Check(args) => stateward::commands::check::run_check(args),
        Command::Mutate(args) => stateward::commands::check::run_mutate(args),
        Command::Rules(args) => stateward::commands::rules::run(args),
        Command::Serve(args) => stateward::commands::serve::run(args),
        Command::Certs(args) => stateward::commands::certs::run(args),
        Command::Gc(args) => stateward::commands::gc::run(args),
        Command::Audit(args) => stateward::commands::audit::run(args),
        Command::Policy(command) => stateward::commands::policy::run(command),
        Command::Completions(args) => {
            stateward::commands::generate::run_completions(args, argv0.as_deref())
        }
        Command::Man(args) => stateward::commands::generate::run_man(args),
    };
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            stateward::commands::Exit::Usage.into()
        }
    }
}

//! Files generated from the command-line definition: shell completions
//! (`stateward completions SHELL`) and man pages (`stateward man`).
use std::io::Write;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::commands::Exit;
use clap::CommandFactory;

/// The completion script for `shell`, completing the program file `bin_name`.
pub fn completions(shell: clap_complete::Shell, bin_name: &str) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, bin_name, &mut out);
    out
}

/// The command line as the man pages show it: the plain version (a page does not change
/// with every commit), and no `help` subcommand (it has no page of its own).
fn man_command() -> clap::Command {
    Cli::command()
        .version(env!("CARGO_PKG_VERSION"))
        .disable_help_subcommand(true)
}

/// The top-level man page, `stateward.1`, in roff.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(man_command()).render(&mut out)?;
    Ok(out)
}

/// Writes `stateward.1` and a page per subcommand (`stateward-check.1`, ...) to `dir`.
pub fn write_man_pages(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(man_command(), dir)
}

/// Completion scripts complete the program file as it is installed (`argv0`'s file name,
/// `kubectl-stateward` as a plugin).
pub fn run_completions(
    args: CompletionsArgs,
    argv0: Option<&std::ffi::OsStr>,
) -> anyhow::Result<Exit> {
    let file = argv0
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_name)
        .map(|f| f.to_string_lossy().trim_end_matches(".exe").to_owned())
        .unwrap_or_else(|| "stateward".to_owned());
    std::io::stdout().write_all(&completions(args.shell, &file))?;
    Ok(Exit::Ok)
}

pub fn run_man(args: ManArgs) -> anyhow::Result<Exit> {
    match args.dir {
        Some(dir) => {
            write_man_pages(&dir)?;
            eprintln!("wrote the man pages to {}", dir.display());
        }
        None => std::io::stdout().write_all(&man_page()?)?,
    }
    Ok(Exit::Ok)
}

//! Logging set-up shared by every subcommand: text or JSON, level from `--log-level` or
//! `RUST_LOG`, always to standard error so standard output stays machine-readable.
//!
//! Text logs are coloured only when standard error is a terminal and `NO_COLOR` is unset
//! or empty (<https://no-color.org>): `kubectl logs`, files and pipes get plain text.
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// How to log (built from `--log-format` and `--log-level`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub format: Format,
    /// A level or filter directive; without it `RUST_LOG`, else `info`.
    pub level: Option<String>,
}

pub fn init(options: &Options) {
    let filter = match &options.level {
        Some(level) => EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let result = match options.format {
        Format::Json => builder.json().flatten_event(true).try_init(),
        Format::Text => builder.try_init(),
    };
    // A second initialisation (tests) keeps the first subscriber.
    let _ = result;
}

/// Colour escapes only for a terminal, and never when `NO_COLOR` holds a value.
pub fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
        assert!(!colour(false, Some(OsStr::new("1"))));
    }
}

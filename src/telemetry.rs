//! Logging set-up shared by every subcommand: text or JSON, level from `--log-level` or
//! `RUST_LOG`, always to standard error so standard output stays machine-readable.
use tracing_subscriber::EnvFilter;

use crate::cli::{GlobalArgs, LogFormat};

pub fn init(args: &GlobalArgs) {
    let filter = match &args.log_level {
        Some(level) => EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match args.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second initialisation (tests) keeps the first subscriber.
    let _ = result;
}

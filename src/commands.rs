//! The subcommands, one module each, every one entered through `run`-style functions that
//! `main` calls. Only this layer prints to the terminal, picks exit statuses ([`crate::Exit`])
//! and reports errors with `anyhow`; the layers below return typed errors.
pub mod certs;
pub mod check;
pub mod gc;
pub mod generate;
pub mod policy;
pub mod rules;
pub mod serve;

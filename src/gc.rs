//! The collector of orphaned PersistentVolumeClaims: [`classify`] decides which claims are
//! orphans (pure), [`collect`] lists and deletes with preconditions (the one-shot plan),
//! [`watch`] keeps watch-fed stores and runs reconcile passes, [`shutdown`] is the signal
//! flag. The command line (`stateward gc`) is in [`crate::commands::gc`]; nothing here
//! prints.
pub mod classify;
pub mod collect;
pub mod shutdown;
pub mod watch;

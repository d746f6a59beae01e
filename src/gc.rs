//! Orphaned PersistentVolumeClaims: classification (pure, [`classify`]) and the collector
//! (`stateward gc`).
pub mod classify;
pub mod collect;
pub mod shutdown;
pub mod watch;

pub use collect::run;

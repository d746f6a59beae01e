//! The collector of orphaned PersistentVolumeClaims: [`classify`] decides which claims are
//! orphans (pure), [`collect`] lists and deletes with preconditions (the one-shot plan),
//! [`watch`] keeps watch-fed stores and runs reconcile passes. The command line
//! (`stateward gc`) is in [`crate::commands::gc`]; nothing here prints.
pub mod classify;
pub mod collect;
pub mod watch;

/// What the one-shot collector acts on and how (built by `stateward gc` from its flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Only this namespace; `None`: every namespace.
    pub namespace: Option<String>,
    /// Only claims with these labels.
    pub selector: Option<String>,
    /// Only claims at least this old.
    pub min_age_seconds: i64,
    /// Delete the planned claims (the verified ones, see `include_unverified`).
    pub delete: bool,
    /// With `delete`, also the claims of deleted sets known only by name and labels.
    pub include_unverified: bool,
}

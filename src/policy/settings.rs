//! Rule settings: what a policy file may say about one rule or mutation. Each rule
//! declares its settings type next to its code (a serde struct that rejects unknown fields
//! and derives its JSON Schema); this module holds what they share: the [`Settings`] trait
//! the policy reader uses, the two plain types most rules take, and the type-erased box a
//! [`Policy`](super::Policy) keeps them in. Pure data: no I/O.
use std::any::Any;
use std::fmt::Debug;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A rule's mode in a policy.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Off,
    Audit,
    Warn,
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Audit => "audit",
            Mode::Warn => "warn",
            Mode::Enforce => "enforce",
        }
    }
}

/// The switch every rule and mutation takes, as a policy file set it (`None`: the
/// declaration's default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Switch {
    /// A validation rule's `mode`.
    pub mode: Option<Mode>,
    /// A mutation's `enabled`.
    pub enabled: Option<bool>,
    pub skippable: Option<bool>,
}

impl Switch {
    pub const fn mode(mode: Option<Mode>, skippable: Option<bool>) -> Switch {
        Switch {
            mode,
            enabled: None,
            skippable,
        }
    }

    pub const fn enabled(enabled: Option<bool>, skippable: Option<bool>) -> Switch {
        Switch {
            mode: None,
            enabled,
            skippable,
        }
    }
}

/// A value the types accept but the rule cannot use: the parameter as the file spells it,
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub parameter: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(parameter: &'static str, message: impl Into<String>) -> Invalid {
        Invalid {
            parameter,
            message: message.into(),
        }
    }
}

/// A rule's settings type. `Default` holds the catalogue's parameters (what a rule a policy
/// does not list gets, and what `policies/baseline.yaml` shows); read with
/// `#[serde(default)]`, a parameter a file leaves out keeps it.
pub trait Settings:
    DeserializeOwned + JsonSchema + Default + Clone + Debug + PartialEq + Send + Sync + 'static
{
    /// Takes its `mode` (or `enabled`) and `skippable` out: the policy keeps them apart,
    /// and the settings it stores compare equal whenever they mean the same.
    fn take_switch(&mut self) -> Switch;

    /// Checks what the types cannot say (ranges, non-empty strings, durations).
    fn check(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

/// Settings of any type, as a [`Policy`](super::Policy) holds them (one per rule).
pub trait AnySettings: Debug + Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn clone_box(&self) -> Box<dyn AnySettings>;
    fn eq_dyn(&self, other: &dyn AnySettings) -> bool;
    fn take_switch(&mut self) -> Switch;
    fn check(&self) -> Result<(), Invalid>;
}

impl<T: Settings> AnySettings for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn clone_box(&self) -> Box<dyn AnySettings> {
        Box::new(self.clone())
    }

    fn eq_dyn(&self, other: &dyn AnySettings) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }

    fn take_switch(&mut self) -> Switch {
        Settings::take_switch(self)
    }

    fn check(&self) -> Result<(), Invalid> {
        Settings::check(self)
    }
}

impl Clone for Box<dyn AnySettings> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

impl PartialEq for Box<dyn AnySettings> {
    fn eq(&self, other: &Self) -> bool {
        self.eq_dyn(other.as_ref())
    }
}

/// Settings every validation rule takes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plain {
    /// enforce: deny; warn: allow with a warning; audit: allow, log and count; off: not
    /// evaluated.
    pub mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    pub skippable: Option<bool>,
}

impl Settings for Plain {
    fn take_switch(&mut self) -> Switch {
        Switch::mode(self.mode.take(), self.skippable.take())
    }
}

// Settings every mutation takes (no doc comment: the schema has none for it).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    /// Whether the mutation adds its default.
    pub enabled: Option<bool>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    pub skippable: Option<bool>,
}

impl Settings for Toggle {
    fn take_switch(&mut self) -> Switch {
        Switch::enabled(self.enabled.take(), self.skippable.take())
    }
}

/// A duration as policy files write it (`10m`, `1h30m`, `2d`): [`crate::duration`].
pub const DURATION_PATTERN: &str = crate::duration::PATTERN;

/// Parses a policy duration (`90s`, `10m`, `1h30m`, `1d`) into seconds.
pub fn duration_seconds(text: &str) -> Option<i64> {
    crate::duration::seconds(text)
}

/// Checks an optional duration parameter.
pub fn check_duration(parameter: &'static str, text: Option<&str>) -> Result<(), Invalid> {
    match text {
        Some(text) if duration_seconds(text).is_none() => Err(Invalid::new(
            parameter,
            format!("`{text}` is not a duration: use a number with s, m, h or d (e.g. 10m, 1h30m)"),
        )),
        _ => Ok(()),
    }
}

/// Checks that an optional string parameter is not empty.
pub fn check_not_empty(parameter: &'static str, text: Option<&str>) -> Result<(), Invalid> {
    match text {
        Some("") => Err(Invalid::new(parameter, "must not be empty")),
        _ => Ok(()),
    }
}

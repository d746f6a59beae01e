//! The rule table: every rule and mutation stateward knows, in one place. Read this first.
//!
//! Each rule is declared once, beside its code in `rules/*.rs`, as a [`Rule`]: its id,
//! kind, operations, default mode, whether objects may skip it, a one-line summary, its
//! settings type (what a policy file may say about it) and its function. The table at the
//! end of this file lists the declarations; the policy reader, the policy schema, the
//! `rules` command and the generated docs are all derived from it.
//!
//! A validation rule is a plain function over a typed object that reports violations into
//! a [`Sink`]; the engine turns them into findings at the mode the policy gives the rule.
//! A mutation is a function that changes a typed clone and says what it added. Nothing
//! here does I/O.
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Pod, core::v1::Service};
use serde::Serialize;

use super::context::Context;
use super::identity::Orphan;
use super::review::{Kind, Operation, Resource, Review, ScaleReview};
pub use super::settings::Mode;
use super::settings::{AnySettings, Settings};

pub mod defaults;
pub mod live;
pub mod pod;
pub mod service;
pub mod statefulset;

/// Collects the declarations into the table: the [`RuleId`] enum (one variant per
/// declaration, in table order), [`RULES`], and the functions that reach each rule's
/// settings type (read from a policy file, defaults, schema).
macro_rules! rules {
    ($($variant:ident => $rule:expr,)*) => {
        /// Stable rule and mutation ids, as used in policy files, metrics, reports and
        /// messages (the text is each declaration's `name`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum RuleId { $($variant,)* }

        impl RuleId {
            pub const ALL: &'static [RuleId] = &[$(RuleId::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();
        }

        /// Every rule, in [`RuleId`] order: the declarations of `rules/*.rs`.
        pub static RULES: &[&RuleInfo] = &[$(&$rule.info,)*];

        /// The settings of a rule a policy does not list.
        pub(crate) fn default_settings(id: RuleId) -> Box<dyn AnySettings> {
            match id { $(RuleId::$variant => $rule.default_settings(),)* }
        }

        /// Reads the value of a rule's entry in a policy file with its settings type.
        pub(crate) fn read_settings<'de, A: serde::de::MapAccess<'de>>(
            id: RuleId,
            map: &mut A,
        ) -> Result<Box<dyn AnySettings>, A::Error> {
            match id { $(RuleId::$variant => $rule.read(map),)* }
        }

        /// The CEL condition (over the API server's `object`, `oldObject` and `request`)
        /// that holds for every admission request the rule can act on, under `policy`;
        /// `None`: every request of the rule's kind and operations (see [`Rule::sent_when`]).
        pub(crate) fn sent_when(id: RuleId, policy: &Policy) -> Option<String> {
            match id { $(RuleId::$variant => $rule.condition(policy),)* }
        }

        /// How a rule runs natively in the API server under `policy` (see [`Rule::native`]).
        pub(crate) fn native(id: RuleId, policy: &Policy) -> NativeRule {
            match id { $(RuleId::$variant => $rule.native_rule(policy),)* }
        }

        /// The rule's check of a scale subresource change, if it declares one (see
        /// [`Rule::on_scale`]).
        pub(crate) fn scale_check(id: RuleId) -> Option<ScaleCheck> {
            match id { $(RuleId::$variant => $rule.scale,)* }
        }

        /// The JSON Schema of a rule's settings type (a reference to its definition).
        pub(crate) fn settings_schema(
            id: RuleId,
            generator: &mut schemars::SchemaGenerator,
        ) -> schemars::Schema {
            match id { $(RuleId::$variant => $rule.schema(generator),)* }
        }
    };
}

use defaults as d;
use statefulset as s;

// The table: one line per rule, naming its declaration (beside its code). The order is
// the order of evaluation (mutations apply in it) and of every listing (`rules`, the
// generated docs, the schema).
rules! {
    StatefulSetNameLength => s::NAME_LENGTH,
    StatefulSetServiceName => s::SERVICE_NAME,
    StatefulSetHeadlessService => s::HEADLESS_SERVICE,
    StatefulSetSelectorMatchesTemplate => s::SELECTOR_MATCHES_TEMPLATE,
    StatefulSetClaimTemplatesMounted => s::CLAIM_TEMPLATES_MOUNTED,
    StatefulSetClaimTemplateStorage => s::CLAIM_TEMPLATE_STORAGE,
    StatefulSetClaimTemplateAccessMode => s::CLAIM_TEMPLATE_ACCESS_MODE,
    StatefulSetTerminationGracePeriod => s::TERMINATION_GRACE_PERIOD,
    StatefulSetReadinessProbe => s::READINESS_PROBE,
    StatefulSetResources => s::RESOURCES,
    StatefulSetAntiAffinity => s::ANTI_AFFINITY,
    StatefulSetAntiAffinitySelectsSelf => s::ANTI_AFFINITY_SELECTS_SELF,
    StatefulSetUpdateStrategy => s::UPDATE_STRATEGY,
    StatefulSetSecurityContext => s::SECURITY_CONTEXT,
    StatefulSetRolloutStuck => s::ROLLOUT_STUCK,
    StatefulSetScaleDownRetainsClaims => s::SCALE_DOWN_RETAINS_CLAIMS,
    StatefulSetApiVersion => s::API_VERSION,
    StatefulSetPodDisruptionBudget => s::POD_DISRUPTION_BUDGET,
    StatefulSetRolloutBlocked => live::ROLLOUT_BLOCKED,
    StatefulSetPodStuckTerminating => live::POD_STUCK_TERMINATING,
    StatefulSetClaimUnbound => live::CLAIM_UNBOUND,
    StatefulSetDisruptionBlocked => live::DISRUPTION_BLOCKED,
    StatefulSetOrphanedClaim => live::ORPHANED_CLAIM,
    ServiceHeadlessInUse => service::HEADLESS_IN_USE,
    ServiceHeadlessShape => service::HEADLESS_SHAPE,
    ServicePodNameSelector => service::POD_NAME_SELECTOR,
    PodForceDelete => pod::FORCE_DELETE,
    StatefulSetDefaultPodManagementPolicy => d::POD_MANAGEMENT_POLICY,
    StatefulSetDefaultUpdateStrategy => d::UPDATE_STRATEGY,
    StatefulSetDefaultAntiAffinity => d::ANTI_AFFINITY,
    StatefulSetDefaultClaimRetention => d::CLAIM_RETENTION,
    PodIdentityLabels => d::IDENTITY_LABELS,
}

impl RuleId {
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        self.info().name
    }

    pub fn info(self) -> &'static RuleInfo {
        // RULES lists every id in declaration order (checked by a test).
        RULES[self.index()]
    }
}

impl FromStr for RuleId {
    type Err = UnknownRule;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RULES
            .iter()
            .find(|info| info.name == s)
            .map(|info| info.id)
            .ok_or_else(|| UnknownRule(s.to_owned()))
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RuleId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rule id `{0}`")]
pub struct UnknownRule(pub String);

/// A violation reported by a rule, before the policy gives it a mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub message: String,
    /// A case where the object may still be fine or information is missing: reported at
    /// most as a warning, never denied.
    pub advisory: bool,
}

/// Collects the violations of one rule.
#[derive(Debug, Default)]
pub struct Sink {
    pub violations: Vec<Violation>,
}

impl Sink {
    /// A violation at the rule's mode.
    pub fn violation(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.violations.push(Violation {
            field: field.into(),
            message: message.into(),
            advisory: false,
        });
    }

    /// A violation that is at most a warning (missing information, a possible smell).
    pub fn advisory(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.violations.push(Violation {
            field: field.into(),
            message: message.into(),
            advisory: true,
        });
    }
}

/// What a validation rule sees.
pub struct Input<'a, T> {
    pub policy: &'a Policy,
    pub review: &'a Review,
    pub context: &'a dyn Context,
    /// The object under review: the (mutated) new object, or the old one on DELETE.
    pub object: &'a T,
    /// The previous state on UPDATE.
    pub old: Option<&'a T>,
}

impl<T> Input<'_, T> {
    pub fn namespace(&self) -> &str {
        &self.review.namespace
    }
}

/// What a rule's scale check sees: the change of replicas, and the cluster context (a
/// Scale carries no claim templates; the set comes from the context).
pub struct ScaleInput<'a> {
    pub policy: &'a Policy,
    pub review: &'a ScaleReview,
    pub context: &'a dyn Context,
}

/// A rule's check of a scale subresource change.
pub type ScaleCheck = fn(&ScaleInput<'_>, &mut Sink);

/// A validation rule's function, by kind.
#[derive(Clone, Copy)]
pub enum Check {
    StatefulSet(fn(&Input<'_, StatefulSet>, &mut Sink)),
    Service(fn(&Input<'_, Service>, &mut Sink)),
    Pod(fn(&Input<'_, Pod>, &mut Sink)),
    /// A rule on what a document says of itself (apiVersion and kind), evaluated before
    /// decoding, on documents the engine may not be able to decode (see
    /// [`evaluate_header`](crate::policy::evaluate_header)).
    Header(fn(&Header<'_>, &mut Sink)),
    /// A live-state rule: evaluated only by `stateward audit`, on a set with its pods,
    /// claims, PodDisruptionBudgets and nodes.
    Live(fn(&live::LiveInput<'_>, &mut Sink)),
    /// A live-state rule on one claim the collector's classifier found orphaned:
    /// evaluated only by `stateward audit`.
    Orphan(fn(&Orphan, &mut Sink)),
}

impl Check {
    /// Only `stateward audit` evaluates the rule (it reads live state).
    pub fn is_live(self) -> bool {
        matches!(self, Check::Live(_) | Check::Orphan(_))
    }
}

/// What a mutation added: the field and a sentence for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub field: String,
    pub message: String,
}

/// A mutation's function, by kind. Returns what it added, or `None` when it changed nothing.
#[derive(Clone, Copy)]
pub enum Mutation {
    StatefulSet(fn(&Policy, &mut StatefulSet) -> Option<Added>),
    Pod(fn(&Policy, &mut Pod) -> Option<Added>),
}

/// The part of an object a mutation may change: where it sits (a JSON pointer) and how to
/// read it from a typed object. The patch is the diff of this part before and after, so
/// adding a default never costs serialising the whole object.
#[derive(Clone, Copy)]
pub struct Target {
    pub pointer: &'static str,
    pub extract: fn(&Resource) -> Option<serde_json::Value>,
}

/// What a rule does.
#[derive(Clone, Copy)]
pub enum Action {
    Validate {
        default: Mode,
        check: Check,
    },
    Mutate {
        default_on: bool,
        mutate: Mutation,
        target: Target,
    },
}

/// What a document says of itself, read before it is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
}

/// One row of the table: a rule's metadata and function.
pub struct RuleInfo {
    pub id: RuleId,
    /// The id as written (`statefulset.name-length`).
    pub name: &'static str,
    pub kind: Kind,
    pub operations: &'static [Operation],
    pub action: Action,
    /// Whether `stateward.io/skip` may switch the rule off for one object by default.
    pub skippable: bool,
    pub summary: &'static str,
}

impl RuleInfo {
    pub fn is_mutation(&self) -> bool {
        matches!(self.action, Action::Mutate { .. })
    }

    /// The default mode as `rules` prints it: a validation mode, or `on`/`off`.
    pub fn default_label(&self) -> &'static str {
        match self.action {
            Action::Validate { default, .. } => default.as_str(),
            Action::Mutate {
                default_on: true, ..
            } => "on",
            Action::Mutate {
                default_on: false, ..
            } => "off",
        }
    }
}

/// A rule's declaration: its row of the table, and (in the type) the settings a policy
/// file may give it.
pub struct Rule<S> {
    pub info: RuleInfo,
    settings: PhantomData<fn() -> S>,
    sent_when: Option<fn(&S) -> String>,
    native: Native<S>,
    scale: Option<ScaleCheck>,
}

/// One check a rule runs in the API server itself (a `ValidatingAdmissionPolicy`
/// validation), built from the rule's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelCheck {
    /// CEL over `object`, `oldObject` and `request` that holds when the request passes.
    pub expression: String,
    /// A CEL string expression: the message when it does not (the compiler puts the rule
    /// id in front, as the webhook's messages have it).
    pub message: String,
    /// The rule's "may still be fine" case: at most a warning, whatever the mode.
    pub advisory: bool,
}

impl CelCheck {
    pub fn new(expression: impl Into<String>, message: impl Into<String>) -> CelCheck {
        CelCheck {
            expression: expression.into(),
            message: message.into(),
            advisory: false,
        }
    }

    pub fn advisory(expression: impl Into<String>, message: impl Into<String>) -> CelCheck {
        CelCheck {
            advisory: true,
            ..CelCheck::new(expression, message)
        }
    }
}

/// A mutation as the API server runs it itself (a `MutatingAdmissionPolicy`), built from
/// the mutation's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelMutation {
    /// `(name, CEL)` conditions under which the mutation changes something (the Rust
    /// function's own early returns).
    pub conditions: Vec<(&'static str, String)>,
    /// `(name, CEL)` variables the patch reads.
    pub variables: Vec<(&'static str, String)>,
    /// The patch: CEL returning a list of `JSONPatch` (lists and structs Kubernetes
    /// treats as atomic cannot be merged by an apply configuration).
    pub json_patch: String,
}

/// How a rule runs natively in the API server, as its declaration says.
#[derive(Clone, Copy)]
pub enum Native<S> {
    /// Not declared: listed as not native.
    Undeclared,
    /// It cannot run there, and why (it reads other objects, live state, ...).
    No(&'static str),
    /// Its checks in CEL.
    Cel(fn(&S) -> Vec<CelCheck>),
    /// A mutation in CEL.
    Mutation(fn(&S) -> CelMutation),
}

/// A rule's native form under a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NativeRule {
    Cel(Vec<CelCheck>),
    Mutation(CelMutation),
    No(&'static str),
}

impl<S: Settings> Rule<S> {
    pub const fn new(info: RuleInfo) -> Rule<S> {
        Rule {
            info,
            settings: PhantomData,
            sent_when: None,
            native: Native::Undeclared,
            scale: None,
        }
    }

    /// Declares what the rule says of a change of replicas through the scale subresource
    /// (`kubectl scale`, autoscalers), where the object is a Scale, not the StatefulSet.
    /// Its violations are at most warnings: denying a scale could block an autoscaler or
    /// an incident response.
    pub const fn on_scale(mut self, check: ScaleCheck) -> Rule<S> {
        self.scale = Some(check);
        self
    }

    /// Declares the rule's checks in CEL, beside its Rust: `stateward policy native` compiles
    /// them into a `ValidatingAdmissionPolicy` that decides what the function decides (the
    /// differential suite on a real API server holds them to it).
    pub const fn native(mut self, checks: fn(&S) -> Vec<CelCheck>) -> Rule<S> {
        self.native = Native::Cel(checks);
        self
    }

    /// Declares a mutation's patch in CEL, beside its Rust: `stateward policy native`
    /// compiles it into a `MutatingAdmissionPolicy`.
    pub const fn native_mutation(mut self, mutation: fn(&S) -> CelMutation) -> Rule<S> {
        self.native = Native::Mutation(mutation);
        self
    }

    /// Declares that the rule cannot run in the API server, and why.
    pub const fn not_native(mut self, reason: &'static str) -> Rule<S> {
        self.native = Native::No(reason);
        self
    }

    fn native_rule(&self, policy: &Policy) -> NativeRule {
        match self.native {
            Native::Undeclared => NativeRule::No("no CEL declared for it yet"),
            Native::No(reason) => NativeRule::No(reason),
            Native::Cel(checks) => match policy.settings(self) {
                Some(settings) => NativeRule::Cel(checks(settings)),
                None => NativeRule::No("its settings are missing from the policy"),
            },
            Native::Mutation(mutation) => match policy.settings(self) {
                Some(settings) => NativeRule::Mutation(mutation(settings)),
                None => NativeRule::No("its settings are missing from the policy"),
            },
        }
    }

    /// Declares which admission requests of its kind the rule can act on: a CEL
    /// expression over the request as the API server's `matchConditions` see it
    /// (`object`, `oldObject`, `request`), built from the rule's settings. It must hold for
    /// every request on which the rule's function could report anything; the webhook
    /// configurations send stateward only requests for which some rule's condition holds
    /// (see [`super::scope`]). A rule without one is sent every request of its kind and
    /// operations.
    pub const fn sent_when(mut self, condition: fn(&S) -> String) -> Rule<S> {
        self.sent_when = Some(condition);
        self
    }

    fn condition(&self, policy: &Policy) -> Option<String> {
        let condition = self.sent_when?;
        let settings = policy.settings(self)?;
        Some(condition(settings))
    }

    fn default_settings(&self) -> Box<dyn AnySettings> {
        Box::new(S::default())
    }

    fn read<'de, A: serde::de::MapAccess<'de>>(
        &self,
        map: &mut A,
    ) -> Result<Box<dyn AnySettings>, A::Error> {
        Ok(Box::new(map.next_value::<S>()?))
    }

    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<S>()
    }
}

/// The operations most admission rules run on.
pub const CU: &[Operation] = &[Operation::Create, Operation::Update];

/// A validation rule's action.
pub const fn validate(default: Mode, check: Check) -> Action {
    Action::Validate { default, check }
}

/// A mutation's action.
pub const fn mutate(default_on: bool, mutate: Mutation, target: Target) -> Action {
    Action::Mutate {
        default_on,
        mutate,
        target,
    }
}

/// The table under one policy: each rule's mode or switch, whether objects may skip it,
/// and its settings, read from a policy file by [`config`](super::config).
/// A policy ready for evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub excluded_namespaces: Vec<String>,
    pub(super) modes: [Mode; RuleId::COUNT],
    pub(super) enabled: [bool; RuleId::COUNT],
    pub(super) skippable: [bool; RuleId::COUNT],
    /// Rules the API server evaluates itself (the chart's `hybrid` mode): the engine leaves
    /// them out of reviews it covers (see [`Policy::set_native`]).
    pub(super) native: [bool; RuleId::COUNT],
    /// Each rule's settings (its declared type), in [`RuleId`] order.
    pub(super) settings: Vec<Box<dyn AnySettings>>,
}

impl Default for Policy {
    /// The rule catalogue's defaults (the same as `policies/baseline.yaml`).
    fn default() -> Self {
        let mut policy = Policy {
            name: "baseline".into(),
            excluded_namespaces: default_excluded_namespaces(),
            modes: [Mode::Off; RuleId::COUNT],
            enabled: [false; RuleId::COUNT],
            skippable: [false; RuleId::COUNT],
            native: [false; RuleId::COUNT],
            settings: RuleId::ALL.iter().map(|id| default_settings(*id)).collect(),
        };
        for info in RULES {
            let i = info.id.index();
            policy.skippable[i] = info.skippable;
            match info.action {
                Action::Validate { default, .. } => policy.modes[i] = default,
                Action::Mutate { default_on, .. } => policy.enabled[i] = default_on,
            }
        }
        policy
    }
}

pub(super) fn default_excluded_namespaces() -> Vec<String> {
    vec!["kube-system".into(), "kube-node-lease".into()]
}

impl Policy {
    pub fn mode(&self, id: RuleId) -> Mode {
        self.modes[id.index()]
    }

    pub fn enabled(&self, id: RuleId) -> bool {
        self.enabled[id.index()]
    }

    pub fn skippable(&self, id: RuleId) -> bool {
        self.skippable[id.index()]
    }

    /// A rule's settings, as its declaration types them (`None` only if `rule` is not in
    /// the table, which a test rules out).
    pub fn settings<S: Settings>(&self, rule: &Rule<S>) -> Option<&S> {
        self.settings
            .get(rule.info.id.index())
            .and_then(|s| s.as_any().downcast_ref())
    }

    /// A rule's settings, to change (tests and tools that build policies in code).
    pub fn settings_mut<S: Settings>(&mut self, rule: &Rule<S>) -> Option<&mut S> {
        self.settings
            .get_mut(rule.info.id.index())
            .and_then(|s| s.as_any_mut().downcast_mut())
    }

    /// Marks a rule as evaluated by the API server's native policies (the chart's `hybrid`
    /// mode): `evaluate` leaves it out, so each request is judged by one of the two. The
    /// scale subresource, which the native policies cannot judge (a Scale carries no claim
    /// templates), still evaluates it.
    pub fn set_native(&mut self, id: RuleId) {
        self.native[id.index()] = true;
    }

    pub fn is_native(&self, id: RuleId) -> bool {
        self.native[id.index()]
    }

    pub fn is_excluded(&self, namespace: &str) -> bool {
        self.excluded_namespaces.iter().any(|n| n == namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_every_id_in_order() {
        assert_eq!(RULES.len(), RuleId::COUNT);
        for (index, info) in RULES.iter().enumerate() {
            assert_eq!(info.id.index(), index, "{} is out of order", info.id);
            assert_eq!(info.id.as_str().parse::<RuleId>(), Ok(info.id));
        }
    }

    #[test]
    fn ids_are_unique_and_lowercase() {
        let mut names: Vec<_> = RULES.iter().map(|info| info.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RuleId::COUNT);
        for name in names {
            assert!(
                name.split_once('.')
                    .is_some_and(|(kind, rest)| !kind.is_empty()
                        && !rest.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c == '.' || c == '-')),
                "{name}"
            );
        }
    }

    #[test]
    fn unknown_ids_are_rejected() {
        assert_eq!(
            "statefulset.nope".parse::<RuleId>(),
            Err(UnknownRule("statefulset.nope".into()))
        );
    }
}

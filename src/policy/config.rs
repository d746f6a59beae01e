//! Policy files: typed, with unknown fields rejected, resolved once into a [`Policy`] that
//! the engine reads without allocating.
use std::path::Path;

use schemars::JsonSchema;
use serde::Deserialize;

use super::rules::{Action, Mode, RULES, RuleId};

/// The built-in policy: the text of `policies/baseline.yaml`.
pub const BASELINE_YAML: &str = include_str!("../../policies/baseline.yaml");

pub const API_VERSION: &str = "stateward.io/v1alpha1";

/// A policy ready for evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub excluded_namespaces: Vec<String>,
    modes: [Mode; RuleId::COUNT],
    enabled: [bool; RuleId::COUNT],
    skippable: [bool; RuleId::COUNT],
    pub params: Params,
}

/// Typed rule and mutation parameters, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub allowed_storage_classes: Vec<String>,
    pub grace_min_seconds: Option<i64>,
    pub grace_max_seconds: Option<i64>,
    pub required_limits: Vec<String>,
    pub anti_affinity_topology_key: String,
    pub force_delete_exempt_users: Vec<String>,
    pub force_delete_override_annotation: String,
    pub pod_management_policy: String,
    pub default_anti_affinity_weight: i32,
    pub default_anti_affinity_topology_key: String,
    pub claim_retention_when_deleted: String,
    pub claim_retention_when_scaled: String,
    pub alias_labels: Vec<String>,
    /// `statefulset.rollout-blocked` `notReadyFor`, in seconds.
    pub rollout_blocked_after_seconds: i64,
    /// `statefulset.pod-stuck-terminating` `margin`, in seconds.
    pub stuck_terminating_margin_seconds: i64,
    /// `statefulset.claim-unbound` `pendingFor`, in seconds.
    pub claim_pending_after_seconds: i64,
}

pub const HOSTNAME_KEY: &str = "kubernetes.io/hostname";
pub const FORCE_DELETE_OVERRIDE: &str = "stateward.io/allow-force-delete";

impl Default for Params {
    fn default() -> Self {
        Params {
            allowed_storage_classes: Vec::new(),
            grace_min_seconds: None,
            grace_max_seconds: None,
            required_limits: Vec::new(),
            anti_affinity_topology_key: HOSTNAME_KEY.into(),
            force_delete_exempt_users: vec![
                "system:serviceaccount:kube-system:pod-garbage-collector".into(),
                "system:serviceaccount:kube-system:node-controller".into(),
            ],
            force_delete_override_annotation: FORCE_DELETE_OVERRIDE.into(),
            pod_management_policy: "OrderedReady".into(),
            default_anti_affinity_weight: 100,
            default_anti_affinity_topology_key: HOSTNAME_KEY.into(),
            claim_retention_when_deleted: "Retain".into(),
            claim_retention_when_scaled: "Delete".into(),
            alias_labels: Vec::new(),
            rollout_blocked_after_seconds: 600,
            stuck_terminating_margin_seconds: 300,
            claim_pending_after_seconds: 600,
        }
    }
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
            params: Params::default(),
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

fn default_excluded_namespaces() -> Vec<String> {
    vec!["kube-system".into(), "kube-node-lease".into()]
}

impl Policy {
    /// The built-in baseline policy.
    pub fn baseline() -> Policy {
        // The embedded file is checked by a unit test, so this never falls back in practice.
        Policy::from_yaml(BASELINE_YAML, "<built-in baseline>").unwrap_or_default()
    }

    pub fn mode(&self, id: RuleId) -> Mode {
        self.modes[id.index()]
    }

    pub fn enabled(&self, id: RuleId) -> bool {
        self.enabled[id.index()]
    }

    pub fn skippable(&self, id: RuleId) -> bool {
        self.skippable[id.index()]
    }

    pub fn is_excluded(&self, namespace: &str) -> bool {
        self.excluded_namespaces.iter().any(|n| n == namespace)
    }

    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|err| PolicyError {
            source_name: path.display().to_string(),
            line: None,
            field: None,
            message: format!("cannot read: {err}"),
        })?;
        Policy::from_yaml(&text, &path.display().to_string())
    }

    /// Parses a policy from YAML text; `source_name` names it in errors.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = match serde_saphyr::from_str(text) {
            Ok(file) => file,
            Err(err) => return Err(PolicyError::from_parse(text, source_name, &err)),
        };
        file.resolve().map_err(|(field, message)| PolicyError {
            source_name: source_name.to_owned(),
            line: line_of_field(text, &field),
            field: Some(field),
            message,
        })
    }
}

/// A policy file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct PolicyError {
    pub source_name: String,
    pub line: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

impl PolicyError {
    fn render(&self) -> String {
        let mut out = format!("invalid policy {}", self.source_name);
        if let Some(line) = self.line {
            out.push_str(&format!(" line {line}"));
        }
        if let Some(field) = &self.field {
            out.push_str(&format!(" field {field}"));
        }
        out.push_str(": ");
        out.push_str(&self.message);
        out
    }

    fn from_parse(text: &str, source_name: &str, err: &serde_saphyr::Error) -> PolicyError {
        let line = err.location().map(|l| l.line() as usize);
        // The typed parse knows the line; a second, untyped pass names the field path.
        let field = serde_saphyr::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|value| {
                serde_path_to_error::deserialize::<_, PolicyFile>(value)
                    .err()
                    .map(|e| e.path().to_string())
            })
            .filter(|p| p != ".");
        let message = err
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_owned();
        PolicyError {
            source_name: source_name.to_owned(),
            line,
            field,
            message,
        }
    }
}

/// Finds the line of the last segment of a dotted field path (best effort, for errors found
/// after parsing).
fn line_of_field(text: &str, field: &str) -> Option<usize> {
    let key = field.rsplit('.').next()?;
    let key = key.split('[').next()?;
    text.lines()
        .position(|line| {
            let t = line.trim_start().trim_start_matches("- ");
            t.starts_with(&format!("{key}:")) || t.contains(&format!(" {key}:"))
        })
        .map(|i| i + 1)
}

/// The JSON Schema (draft-07, as editors read it) of policy files, generated from the types
/// they are read into: unknown fields are `additionalProperties: false`, as the reader
/// rejects them, and each rule and mutation id is described by its summary.
pub fn schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let root = generator.into_root_schema_for::<PolicyFile>();
    let mut schema = serde_json::to_value(root).unwrap_or_default();
    if let Some(map) = schema.as_object_mut() {
        map.insert("title".into(), "stateward policy".into());
        map.insert(
            "description".into(),
            "A stateward policy file (`stateward policy schema` prints this schema; \
             `stateward policy check FILE` validates a file)."
                .into(),
        );
    }
    for section in ["RulesSection", "MutationsSection"] {
        let Some(properties) = schema
            .pointer_mut(&format!("/definitions/{section}/properties"))
            .and_then(serde_json::Value::as_object_mut)
        else {
            continue;
        };
        for (id, property) in properties.iter_mut() {
            let (Ok(id), Some(property)) = (id.parse::<RuleId>(), property.as_object_mut()) else {
                continue;
            };
            let info = id.info();
            // Draft-07 ignores the siblings of `$ref`: the reference goes into `allOf`.
            if let Some(reference) = property.remove("$ref") {
                property.insert("allOf".into(), serde_json::json!([{ "$ref": reference }]));
            }
            property.insert(
                "description".into(),
                format!("{} (default: {})", info.summary, info.default_label()).into(),
            );
        }
    }
    schema
}

// ---- file schema ---------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyFile {
    /// Always `stateward.io/v1alpha1`.
    #[schemars(extend("const" = API_VERSION))]
    api_version: String,
    /// Always `Policy`.
    #[schemars(extend("const" = "Policy"))]
    kind: String,
    metadata: FileMetadata,
    #[serde(default)]
    spec: PolicySpec,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FileMetadata {
    /// The policy's name (in logs and metrics).
    #[schemars(length(min = 1))]
    name: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicySpec {
    /// Objects in these namespaces are never evaluated (default: kube-system,
    /// kube-node-lease).
    excluded_namespaces: Option<Vec<String>>,
    /// Validation rules by id; a rule not listed keeps its default.
    #[serde(default)]
    rules: RulesSection,
    /// Mutations by id; a mutation not listed keeps its default.
    #[serde(default)]
    mutations: MutationsSection,
}

/// Settings every validation rule takes.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Plain {
    /// enforce: deny; warn: allow with a warning; audit: allow, log and count; off: not
    /// evaluated.
    mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    skippable: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StorageRule {
    /// enforce: deny; warn: allow with a warning; audit: allow, log and count; off: not
    /// evaluated.
    mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    skippable: Option<bool>,
    /// Storage classes a claim template may use (absent: any class).
    allowed_storage_classes: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GraceRule {
    /// enforce: deny; warn: allow with a warning; audit: allow, log and count; off: not
    /// evaluated.
    mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    skippable: Option<bool>,
    /// Smallest terminationGracePeriodSeconds allowed.
    #[schemars(range(min = 0))]
    min_seconds: Option<i64>,
    /// Largest terminationGracePeriodSeconds allowed.
    #[schemars(range(min = 0))]
    max_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResourcesRule {
    /// enforce: deny; warn: allow with a warning; audit: allow, log and count; off: not
    /// evaluated.
    mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    skippable: Option<bool>,
    /// Resources every container must also set a limit for (e.g. `memory`).
    required_limits: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AntiAffinityRule {
    /// enforce: deny; warn: allow with a warning; audit: allow, log and count; off: not
    /// evaluated.
    mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    skippable: Option<bool>,
    /// The topology key the pods must be spread over (default `kubernetes.io/hostname`).
    #[schemars(length(min = 1))]
    topology_key: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ForceDeleteRule {
    /// enforce: deny; warn: allow with a warning; audit: allow, log and count; off: not
    /// evaluated.
    mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    skippable: Option<bool>,
    /// Users who may force-delete StatefulSet pods (default: the pod garbage collector and
    /// the node controller).
    exempt_users: Option<Vec<String>>,
    /// Annotation that allows a force delete when set to "true" (default
    /// `stateward.io/allow-force-delete`).
    #[schemars(length(min = 1))]
    override_annotation: Option<String>,
}

/// A duration as policy files write it (`10m`, `1h30m`, `2d`): [`crate::duration`].
const DURATION_PATTERN: &str = crate::duration::PATTERN;

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RolloutBlockedRule {
    /// enforce: report and exit 1; warn and audit: report; off: not evaluated.
    mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    skippable: Option<bool>,
    /// How long a pod of the update revision may stay not Ready before the rollout counts
    /// as blocked (`90s`, `10m`, `2h`, `1d`; default `10m`).
    #[schemars(regex(pattern = DURATION_PATTERN))]
    not_ready_for: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StuckTerminatingRule {
    /// enforce: report and exit 1; warn and audit: report; off: not evaluated.
    mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    skippable: Option<bool>,
    /// How long past its grace period a terminating pod counts as stuck (default `5m`).
    #[schemars(regex(pattern = DURATION_PATTERN))]
    margin: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClaimUnboundRule {
    /// enforce: report and exit 1; warn and audit: report; off: not evaluated.
    mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    skippable: Option<bool>,
    /// How long a claim may stay Pending (default `10m`).
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pending_for: Option<String>,
}

/// Parses a policy duration (`90s`, `10m`, `2h`, `1d`) into seconds.
fn duration_seconds(text: &str, field: &str) -> Result<i64, ResolveError> {
    crate::duration::seconds(text).ok_or_else(|| {
        (
            field.to_owned(),
            format!("`{text}` is not a duration: use a number with s, m, h or d (e.g. 10m, 1h30m)"),
        )
    })
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RulesSection {
    #[serde(rename = "statefulset.name-length", default)]
    name_length: Plain,
    #[serde(rename = "statefulset.service-name", default)]
    service_name: Plain,
    #[serde(rename = "statefulset.headless-service", default)]
    headless_service: Plain,
    #[serde(rename = "statefulset.selector-matches-template", default)]
    selector_matches_template: Plain,
    #[serde(rename = "statefulset.claim-templates-mounted", default)]
    claim_templates_mounted: Plain,
    #[serde(rename = "statefulset.claim-template-storage", default)]
    claim_template_storage: StorageRule,
    #[serde(rename = "statefulset.claim-template-access-mode", default)]
    claim_template_access_mode: Plain,
    #[serde(rename = "statefulset.termination-grace-period", default)]
    termination_grace_period: GraceRule,
    #[serde(rename = "statefulset.readiness-probe", default)]
    readiness_probe: Plain,
    #[serde(rename = "statefulset.resources", default)]
    resources: ResourcesRule,
    #[serde(rename = "statefulset.anti-affinity", default)]
    anti_affinity: AntiAffinityRule,
    #[serde(rename = "statefulset.anti-affinity-selects-self", default)]
    anti_affinity_selects_self: Plain,
    #[serde(rename = "statefulset.update-strategy", default)]
    update_strategy: Plain,
    #[serde(rename = "statefulset.security-context", default)]
    security_context: Plain,
    #[serde(rename = "statefulset.rollout-stuck", default)]
    rollout_stuck: Plain,
    #[serde(rename = "statefulset.scale-down-retains-claims", default)]
    scale_down_retains_claims: Plain,
    #[serde(rename = "statefulset.api-version", default)]
    api_version: Plain,
    #[serde(rename = "statefulset.pod-disruption-budget", default)]
    pod_disruption_budget: Plain,
    #[serde(rename = "statefulset.rollout-blocked", default)]
    rollout_blocked: RolloutBlockedRule,
    #[serde(rename = "statefulset.pod-stuck-terminating", default)]
    pod_stuck_terminating: StuckTerminatingRule,
    #[serde(rename = "statefulset.claim-unbound", default)]
    claim_unbound: ClaimUnboundRule,
    #[serde(rename = "statefulset.disruption-blocked", default)]
    disruption_blocked: Plain,
    #[serde(rename = "statefulset.orphaned-claim", default)]
    orphaned_claim: Plain,
    #[serde(rename = "service.headless-in-use", default)]
    headless_in_use: Plain,
    #[serde(rename = "service.headless-shape", default)]
    headless_shape: Plain,
    #[serde(rename = "service.pod-name-selector", default)]
    pod_name_selector: Plain,
    #[serde(rename = "pod.force-delete", default)]
    force_delete: ForceDeleteRule,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Toggle {
    /// Whether the mutation adds its default.
    enabled: Option<bool>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    skippable: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PodManagementToggle {
    /// Whether the mutation adds its default.
    enabled: Option<bool>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    skippable: Option<bool>,
    /// The podManagementPolicy to add (default `OrderedReady`).
    value: Option<PodManagementPolicy>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
enum PodManagementPolicy {
    OrderedReady,
    Parallel,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AntiAffinityToggle {
    /// Whether the mutation adds its default.
    enabled: Option<bool>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    skippable: Option<bool>,
    /// Weight of the preferred term, 1 to 100 (default 100).
    #[schemars(range(min = 1, max = 100))]
    weight: Option<i32>,
    /// Topology key of the preferred term (default `kubernetes.io/hostname`).
    #[schemars(length(min = 1))]
    topology_key: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
enum RetentionValue {
    Retain,
    Delete,
}

impl RetentionValue {
    fn as_str(self) -> &'static str {
        match self {
            RetentionValue::Retain => "Retain",
            RetentionValue::Delete => "Delete",
        }
    }
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RetentionToggle {
    /// Whether the mutation adds its default.
    enabled: Option<bool>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    skippable: Option<bool>,
    /// whenDeleted to add (default `Retain`).
    when_deleted: Option<RetentionValue>,
    /// whenScaled to add (default `Delete`).
    when_scaled: Option<RetentionValue>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IdentityLabelsToggle {
    /// Whether the mutation adds its default.
    enabled: Option<bool>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    skippable: Option<bool>,
    /// Extra label keys set to the pod's name.
    alias_labels: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MutationsSection {
    #[serde(rename = "statefulset.default-pod-management-policy", default)]
    pod_management_policy: PodManagementToggle,
    #[serde(rename = "statefulset.default-update-strategy", default)]
    update_strategy: Toggle,
    #[serde(rename = "statefulset.default-anti-affinity", default)]
    anti_affinity: AntiAffinityToggle,
    #[serde(rename = "statefulset.default-claim-retention", default)]
    claim_retention: RetentionToggle,
    #[serde(rename = "pod.identity-labels", default)]
    identity_labels: IdentityLabelsToggle,
}

type ResolveError = (String, String);

impl PolicyFile {
    fn resolve(self) -> Result<Policy, ResolveError> {
        if self.api_version != API_VERSION {
            return Err((
                "apiVersion".into(),
                format!("is `{}`; expected `{API_VERSION}`", self.api_version),
            ));
        }
        if self.kind != "Policy" {
            return Err((
                "kind".into(),
                format!("is `{}`; expected `Policy`", self.kind),
            ));
        }
        if self.metadata.name.trim().is_empty() {
            return Err(("metadata.name".into(), "must not be empty".into()));
        }
        let mut policy = Policy {
            name: self.metadata.name,
            ..Policy::default()
        };
        if let Some(namespaces) = self.spec.excluded_namespaces {
            policy.excluded_namespaces = namespaces;
        }
        let r = self.spec.rules;
        let mut set = |id: RuleId, mode: Option<Mode>, skippable: Option<bool>| {
            if let Some(mode) = mode {
                policy.modes[id.index()] = mode;
            }
            if let Some(skippable) = skippable {
                policy.skippable[id.index()] = skippable;
            }
        };
        use RuleId as R;
        for (id, plain) in [
            (R::StatefulSetNameLength, &r.name_length),
            (R::StatefulSetServiceName, &r.service_name),
            (R::StatefulSetHeadlessService, &r.headless_service),
            (
                R::StatefulSetSelectorMatchesTemplate,
                &r.selector_matches_template,
            ),
            (
                R::StatefulSetClaimTemplatesMounted,
                &r.claim_templates_mounted,
            ),
            (
                R::StatefulSetClaimTemplateAccessMode,
                &r.claim_template_access_mode,
            ),
            (R::StatefulSetReadinessProbe, &r.readiness_probe),
            (
                R::StatefulSetAntiAffinitySelectsSelf,
                &r.anti_affinity_selects_self,
            ),
            (R::StatefulSetUpdateStrategy, &r.update_strategy),
            (R::StatefulSetSecurityContext, &r.security_context),
            (R::StatefulSetRolloutStuck, &r.rollout_stuck),
            (
                R::StatefulSetScaleDownRetainsClaims,
                &r.scale_down_retains_claims,
            ),
            (R::StatefulSetApiVersion, &r.api_version),
            (R::StatefulSetPodDisruptionBudget, &r.pod_disruption_budget),
            (R::StatefulSetDisruptionBlocked, &r.disruption_blocked),
            (R::StatefulSetOrphanedClaim, &r.orphaned_claim),
            (R::ServiceHeadlessInUse, &r.headless_in_use),
            (R::ServiceHeadlessShape, &r.headless_shape),
            (R::ServicePodNameSelector, &r.pod_name_selector),
        ] {
            set(id, plain.mode, plain.skippable);
        }
        set(
            R::StatefulSetClaimTemplateStorage,
            r.claim_template_storage.mode,
            r.claim_template_storage.skippable,
        );
        set(
            R::StatefulSetTerminationGracePeriod,
            r.termination_grace_period.mode,
            r.termination_grace_period.skippable,
        );
        set(
            R::StatefulSetResources,
            r.resources.mode,
            r.resources.skippable,
        );
        set(
            R::StatefulSetAntiAffinity,
            r.anti_affinity.mode,
            r.anti_affinity.skippable,
        );
        set(
            R::PodForceDelete,
            r.force_delete.mode,
            r.force_delete.skippable,
        );
        set(
            R::StatefulSetRolloutBlocked,
            r.rollout_blocked.mode,
            r.rollout_blocked.skippable,
        );
        set(
            R::StatefulSetPodStuckTerminating,
            r.pod_stuck_terminating.mode,
            r.pod_stuck_terminating.skippable,
        );
        set(
            R::StatefulSetClaimUnbound,
            r.claim_unbound.mode,
            r.claim_unbound.skippable,
        );

        let m = self.spec.mutations;
        let mut toggle = |id: RuleId, enabled: Option<bool>, skippable: Option<bool>| {
            if let Some(enabled) = enabled {
                policy.enabled[id.index()] = enabled;
            }
            if let Some(skippable) = skippable {
                policy.skippable[id.index()] = skippable;
            }
        };
        toggle(
            R::StatefulSetDefaultPodManagementPolicy,
            m.pod_management_policy.enabled,
            m.pod_management_policy.skippable,
        );
        toggle(
            R::StatefulSetDefaultUpdateStrategy,
            m.update_strategy.enabled,
            m.update_strategy.skippable,
        );
        toggle(
            R::StatefulSetDefaultAntiAffinity,
            m.anti_affinity.enabled,
            m.anti_affinity.skippable,
        );
        toggle(
            R::StatefulSetDefaultClaimRetention,
            m.claim_retention.enabled,
            m.claim_retention.skippable,
        );
        toggle(
            R::PodIdentityLabels,
            m.identity_labels.enabled,
            m.identity_labels.skippable,
        );

        let p = &mut policy.params;
        let storage = "spec.rules.statefulset.claim-template-storage";
        if let Some(classes) = r.claim_template_storage.allowed_storage_classes {
            if classes.iter().any(|c| c.is_empty()) {
                return Err((
                    format!("{storage}.allowedStorageClasses"),
                    "must not contain an empty class name".into(),
                ));
            }
            p.allowed_storage_classes = classes;
        }
        let grace = "spec.rules.statefulset.termination-grace-period";
        let (min, max) = (
            r.termination_grace_period.min_seconds,
            r.termination_grace_period.max_seconds,
        );
        for (name, value) in [("minSeconds", min), ("maxSeconds", max)] {
            if value.is_some_and(|v| v < 0) {
                return Err((format!("{grace}.{name}"), "must not be negative".into()));
            }
        }
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            return Err((
                format!("{grace}.minSeconds"),
                format!("is {min}, above maxSeconds {max}"),
            ));
        }
        p.grace_min_seconds = min;
        p.grace_max_seconds = max;
        if let Some(limits) = r.resources.required_limits {
            p.required_limits = limits;
        }
        if let Some(key) = r.anti_affinity.topology_key {
            if key.is_empty() {
                return Err((
                    "spec.rules.statefulset.anti-affinity.topologyKey".into(),
                    "must not be empty".into(),
                ));
            }
            p.anti_affinity_topology_key = key;
        }
        if let Some(users) = r.force_delete.exempt_users {
            p.force_delete_exempt_users = users;
        }
        if let Some(annotation) = r.force_delete.override_annotation {
            if annotation.is_empty() {
                return Err((
                    "spec.rules.pod.force-delete.overrideAnnotation".into(),
                    "must not be empty".into(),
                ));
            }
            p.force_delete_override_annotation = annotation;
        }
        if let Some(text) = &r.rollout_blocked.not_ready_for {
            p.rollout_blocked_after_seconds =
                duration_seconds(text, "spec.rules.statefulset.rollout-blocked.notReadyFor")?;
        }
        if let Some(text) = &r.pod_stuck_terminating.margin {
            p.stuck_terminating_margin_seconds =
                duration_seconds(text, "spec.rules.statefulset.pod-stuck-terminating.margin")?;
        }
        if let Some(text) = &r.claim_unbound.pending_for {
            p.claim_pending_after_seconds =
                duration_seconds(text, "spec.rules.statefulset.claim-unbound.pendingFor")?;
        }
        if let Some(value) = m.pod_management_policy.value {
            p.pod_management_policy = format!("{value:?}");
        }
        if let Some(weight) = m.anti_affinity.weight {
            if !(1..=100).contains(&weight) {
                return Err((
                    "spec.mutations.statefulset.default-anti-affinity.weight".into(),
                    format!("is {weight}; a preferred term's weight is 1 to 100"),
                ));
            }
            p.default_anti_affinity_weight = weight;
        }
        if let Some(key) = m.anti_affinity.topology_key {
            if key.is_empty() {
                return Err((
                    "spec.mutations.statefulset.default-anti-affinity.topologyKey".into(),
                    "must not be empty".into(),
                ));
            }
            p.default_anti_affinity_topology_key = key;
        }
        if let Some(v) = m.claim_retention.when_deleted {
            p.claim_retention_when_deleted = v.as_str().into();
        }
        if let Some(v) = m.claim_retention.when_scaled {
            p.claim_retention_when_scaled = v.as_str().into();
        }
        if let Some(aliases) = m.identity_labels.alias_labels {
            if let Some(bad) = aliases.iter().find(|a| !super::names::is_label_key(a)) {
                return Err((
                    "spec.mutations.pod.identity-labels.aliasLabels".into(),
                    format!("`{bad}` is not a valid label key"),
                ));
            }
            p.alias_labels = aliases;
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_file_equals_catalogue_defaults() {
        let parsed = Policy::from_yaml(BASELINE_YAML, "baseline.yaml");
        assert_eq!(parsed, Ok(Policy::default()));
    }

    #[test]
    fn strict_file_raises_warnings_to_enforce() {
        let text = include_str!("../../policies/strict.yaml");
        let strict = Policy::from_yaml(text, "strict.yaml").expect("strict policy parses");
        for id in [
            RuleId::StatefulSetReadinessProbe,
            RuleId::StatefulSetResources,
            RuleId::StatefulSetAntiAffinity,
            RuleId::StatefulSetHeadlessService,
            RuleId::StatefulSetSecurityContext,
            RuleId::StatefulSetUpdateStrategy,
            RuleId::StatefulSetClaimTemplateAccessMode,
            RuleId::StatefulSetAntiAffinitySelectsSelf,
        ] {
            assert_eq!(strict.mode(id), Mode::Enforce, "{id}");
        }
    }

    fn error_of(text: &str) -> PolicyError {
        match Policy::from_yaml(text, "p.yaml") {
            Ok(_) => panic!("expected an error for {text}"),
            Err(err) => err,
        }
    }

    const HEAD: &str =
        "apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata:\n  name: t\nspec:\n";

    #[test]
    fn unknown_rule_id_names_file_line_and_field() {
        let err = error_of(&format!(
            "{HEAD}  rules:\n    statefulset.readiness-prob: {{mode: warn}}\n"
        ));
        assert_eq!(err.line, Some(7));
        assert!(
            err.message
                .contains("unknown field `statefulset.readiness-prob`"),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("p.yaml line 7"), "{text}");
    }

    #[test]
    fn misspelt_parameter_is_rejected() {
        let err = error_of(&format!(
            "{HEAD}  rules:\n    statefulset.termination-grace-period:\n      mode: enforce\n      minSecond: 5\n"
        ));
        assert_eq!(err.line, Some(9));
        assert!(err.message.contains("unknown field `minSecond`"), "{err}");
        assert_eq!(
            err.field.as_deref(),
            Some("spec.rules.statefulset.termination-grace-period.minSecond")
        );
    }

    #[test]
    fn wrong_type_and_bad_mode_are_rejected() {
        let err = error_of(&format!(
            "{HEAD}  rules:\n    statefulset.termination-grace-period: {{minSeconds: three}}\n"
        ));
        assert_eq!(err.line, Some(7));
        let err = error_of(&format!(
            "{HEAD}  rules:\n    statefulset.resources: {{mode: deny}}\n"
        ));
        assert_eq!(err.line, Some(7));
        assert!(err.to_string().contains("deny"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let err = error_of(&format!(
            "{HEAD}  rules:\n    statefulset.termination-grace-period:\n      minSeconds: 60\n      maxSeconds: 10\n"
        ));
        assert_eq!(
            err.field.as_deref(),
            Some("spec.rules.statefulset.termination-grace-period.minSeconds")
        );
        assert_eq!(err.line, Some(8));
        let err = error_of(&format!(
            "{HEAD}  mutations:\n    statefulset.default-anti-affinity: {{weight: 0}}\n"
        ));
        assert!(err.message.contains("1 to 100"));
        let err = error_of("apiVersion: v1\nkind: Policy\nmetadata: {name: x}\n");
        assert_eq!(err.field.as_deref(), Some("apiVersion"));
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn live_state_thresholds_are_durations() {
        let policy = Policy::from_yaml(
            &format!(
                "{HEAD}  rules:\n    statefulset.rollout-blocked: {{notReadyFor: 90s}}\n    statefulset.pod-stuck-terminating: {{margin: 2m}}\n    statefulset.claim-unbound: {{mode: enforce, pendingFor: 1h}}\n"
            ),
            "p.yaml",
        )
        .expect("valid");
        assert_eq!(policy.params.rollout_blocked_after_seconds, 90);
        assert_eq!(policy.params.stuck_terminating_margin_seconds, 120);
        assert_eq!(policy.params.claim_pending_after_seconds, 3600);
        assert_eq!(policy.mode(RuleId::StatefulSetClaimUnbound), Mode::Enforce);
        let err = error_of(&format!(
            "{HEAD}  rules:\n    statefulset.claim-unbound:\n      pendingFor: soon\n"
        ));
        assert_eq!(
            err.field.as_deref(),
            Some("spec.rules.statefulset.claim-unbound.pendingFor")
        );
        assert_eq!(err.line, Some(8));
        assert!(err.message.contains("not a duration"), "{err}");
    }

    #[test]
    fn parameters_and_excluded_namespaces_are_read() {
        let policy = Policy::from_yaml(
            &format!(
                "{HEAD}  excludedNamespaces: [infra]\n  rules:\n    statefulset.claim-template-storage: {{allowedStorageClasses: [fast]}}\n  mutations:\n    pod.identity-labels: {{aliasLabels: [instance]}}\n    statefulset.default-pod-management-policy: {{value: Parallel}}\n"
            ),
            "p.yaml",
        )
        .expect("valid");
        assert_eq!(policy.excluded_namespaces, vec!["infra".to_string()]);
        assert_eq!(
            policy.params.allowed_storage_classes,
            vec!["fast".to_string()]
        );
        assert_eq!(policy.params.alias_labels, vec!["instance".to_string()]);
        assert_eq!(policy.params.pod_management_policy, "Parallel");
        assert!(policy.is_excluded("infra"));
        assert!(!policy.is_excluded("kube-system"));
    }
}

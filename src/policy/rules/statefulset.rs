//! StatefulSet validation rules (CREATE, UPDATE), each declared beside its function with
//! its settings type. See `rules.md` for each rule's source. Pure: no I/O.
//!
//! Why one file of about 1,250 lines: it holds the 18 StatefulSet rules in table order,
//! each a declaration, its settings type and its function (about 65 lines a rule), so a
//! reader finds a rule where the table names it. Their CEL forms are in `native.rs` and
//! their tests in `tests.rs` beside it.
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, PodAffinityTerm, PodSpec, Probe,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    CU, CelCheck, Check, Header, Input, Mode, Rule, RuleId, RuleInfo, ScaleInput, Sink, validate,
};
use crate::policy::cel::{cel_list, cel_string};
use crate::policy::context::ContextKind;
use crate::policy::labels::{Labels, selector_is_empty, selector_matches};
use crate::policy::names::is_dns1123_label;
use crate::policy::review::{Kind, Operation};
use crate::policy::settings::{Invalid, Plain, Settings, Switch, check_not_empty};

mod native;
use native::*;

/// The longest StatefulSet name: pods carry `controller-revision-hash=<name>-<10-char hash>`
/// and a label value is limited to 63 characters.
pub const MAX_NAME_LEN: usize = 52;

/// The default topology key of spreading rules and mutations.
pub const HOSTNAME_KEY: &str = "kubernetes.io/hostname";

pub(crate) fn spec(sts: &StatefulSet) -> Option<&StatefulSetSpec> {
    Some(&sts.spec)
}

pub(crate) fn pod_spec(sts: &StatefulSet) -> Option<&PodSpec> {
    spec(sts).and_then(|s| s.template.spec.as_ref())
}

pub(crate) use crate::policy::identity::{ordinals_start, replicas};

pub(crate) fn template_labels(sts: &StatefulSet) -> Option<&Labels> {
    spec(sts)
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
}

fn claim_templates(sts: &StatefulSet) -> &[PersistentVolumeClaim] {
    spec(sts)
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default()
}

fn claim_name(claim: &PersistentVolumeClaim) -> &str {
    claim.metadata.name.as_deref().unwrap_or_default()
}

/// App containers with their field path.
fn containers(pod: &PodSpec) -> impl Iterator<Item = (String, &Container)> {
    pod.containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.template.spec.containers[{i}]"), c))
}

/// Init and app containers with their field path.
fn all_containers(pod: &PodSpec) -> impl Iterator<Item = (String, &Container)> {
    pod.init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| (format!("spec.template.spec.initContainers[{i}]"), c))
        .chain(containers(pod))
}

fn display_name(c: &Container) -> &str {
    if c.name.is_empty() {
        "<unnamed>"
    } else {
        &c.name
    }
}

pub static NAME_LENGTH: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetNameLength,
    name: "statefulset.name-length",
    kind: Kind::StatefulSet,
    operations: CU,
    action: validate(Mode::Enforce, Check::StatefulSet(name_length)),
    skippable: false,
    summary: "name at most 52 characters and <name>-<highest ordinal> at most 63, or pods are never created",
})
.native(native_name_length);

pub fn name_length(input: &Input<'_, StatefulSet>, out: &mut Sink) {
    let Some(name) = input.object.metadata.name.as_deref() else {
        return;
    };
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        out.violation(
            "metadata.name",
            format!(
                "metadata.name \"{name}\" is {len} characters; StatefulSet names must be at most \
                 {MAX_NAME_LEN} characters because pods carry controller-revision-hash=<name>-<10-char hash> \
                 (a label value is limited to 63); shorten the name"
            ),
        );
        return;
    }
    let replicas = replicas(input.object);
    if replicas <= 0 {
        return;
    }
    let highest = i64::from(ordinals_start(input.object)) + i64::from(replicas) - 1;
    let pod = format!("{name}-{highest}");
    if pod.len() > 63 {
        out.violation(
            "metadata.name",
            format!(
                "the highest pod name \"{pod}\" is {} characters; pod names become the \
                 statefulset.kubernetes.io/pod-name label (at most 63): shorten the name or lower \
                 spec.ordinals.start/replicas",
                pod.len()
            ),
        );
    }
}

pub static SERVICE_NAME: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetServiceName,
    name: "statefulset.service-name",
    kind: Kind::StatefulSet,
    operations: CU,
    action: validate(Mode::Enforce, Check::StatefulSet(service_name)),
    skippable: false,
    summary: "spec.serviceName is a DNS-1123 label (warns when absent): it is every pod's DNS subdomain",
})
.native(native_service_name);

pub fn service_name(input: &Input<'_, StatefulSet>, out: &mut Sink) {
    let field = "spec.serviceName";
    match spec(input.object).and_then(|s| s.service_name.as_deref()) {
        None | Some("") => out.advisory(
            field,
            "spec.serviceName is not set: pods get no stable DNS name \
             (<pod>.<service>.<namespace>.svc); name a headless Service",
        ),
        Some(name) if !is_dns1123_label(name) => out.violation(
            field,
            format!(
                "spec.serviceName \"{name}\" is not a DNS-1123 label (lower-case letters, digits \
                 and '-', at most 63): it becomes each pod's spec.subdomain; rename it"
            ),
        ),
        Some(_) => {}
    }
}

pub static HEADLESS_SERVICE: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetHeadlessService,
    name: "statefulset.headless-service",
    kind: Kind::StatefulSet,
    operations: CU,
    action: validate(Mode::Warn, Check::StatefulSet(headless_service)),
    skippable: true,
    summary: "the Service named by serviceName exists, is headless and selects the set's pods",
})
.not_native("it reads the Service that spec.serviceName names (another object)");

pub fn headless_service(input: &Input<'_, StatefulSet>, out: &mut Sink) {
    let Some(name) = spec(input.object)
        .and_then(|s| s.service_name.as_deref())
        .filter(|n| is_dns1123_label(n))
    else {
        return;
    };
    let field = "spec.serviceName";
    let ns = input.namespace();
    if !input.context.available(ContextKind::Services) {
        out.advisory(
            field,
            format!("cannot check Service \"{name}\": cluster context is unavailable"),
        );
        return;
    }
    let Some(svc) = input.context.service(ns, name) else {
        out.advisory(
            field,
            format!(
                "Service \"{name}\" does not exist in namespace \"{ns}\" (yet): create a headless \
                 Service (clusterIP: None) with that name"
            ),
        );
        return;
    };
    if !svc.headless {
        out.violation(
            field,
            format!(
                "Service \"{name}\" is not headless: set clusterIP: None so each pod gets its own \
                 DNS record"
            ),
        );
    }
    let Some(labels) = template_labels(input.object) else {
        return;
    };
    match &svc.selector {
        None => out.advisory(
            field,
            format!(
                "Service \"{name}\" has no selector: pod DNS records exist only if its Endpoints \
                 are managed by hand"
            ),
        ),
        Some(selector) if !selector.selects(labels) => out.violation(
            field,
            format!(
                "Service \"{name}\" selects {} which does not match the pod template labels: \
                 make its selector select the set's pods",
                render_pairs(selector.iter())
            ),
        ),
        Some(_) => {}
    }
}

fn render_map(map: &Labels) -> String {
    render_pairs(map.iter())
}

fn render_pairs<K: std::fmt::Display, V: std::fmt::Display>(
    pairs: impl Iterator<Item = (K, V)>,
) -> String {
    let parts: Vec<String> = pairs.map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", parts.join(","))
}

pub static SELECTOR_MATCHES_TEMPLATE: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetSelectorMatchesTemplate,
    name: "statefulset.selector-matches-template",
    kind: Kind::StatefulSet,
    operations: CU,
    action: validate(Mode::Enforce, Check::StatefulSet(selector_matches_template)),
    skippable: false,
    summary: "spec.selector selects the pod template's labels",
})
.native(native_selector_matches_template);

pub fn selector_matches_template(input: &Input<'_, StatefulSet>, out: &mut Sink) {
    let Some(spec) = spec(input.object) else {
        return;
    };
    let field = "spec.selector";
    if selector_is_empty(&spec.selector) {
        out.violation(
            field,
            "spec.selector is empty: the API rejects it; select the pod template's labels \
             (matchLabels)",
        );
        return;
    }
    let empty = Labels::new();
    let labels = template_labels(input.object).unwrap_or(&empty);
    if !selector_matches(&spec.selector, labels) {
        out.violation(
            field,
            format!(
                "spec.selector does not select the pod template labels {}: the set would never \
                 own its pods; make spec.template.metadata.labels match the selector",
                render_map(labels)
            ),
        );
    }
}

pub static CLAIM_TEMPLATES_MOUNTED: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetClaimTemplatesMounted,
    name: "statefulset.claim-templates-mounted",
    kind: Kind::StatefulSet,
    operations: CU,
    action: validate(Mode::Enforce, Check::StatefulSet(claim_templates_mounted)),
    skippable: false,
    summary: "every claim template is mounted (or a volumeDevice) and every mount and device resolves",
})
.native(native_claim_templates_mounted);

/// A claim template is used when a container mounts it (`volumeMounts`, filesystem mode) or
/// lists it as a raw device (`volumeDevices`, `volumeMode: Block`: Ceph OSDs, databases on
/// raw devices). Every mount and device name must resolve to a pod volume or a template.
pub fn claim_templates_mounted(input: &Input<'_, StatefulSet>, out: &mut Sink) {
    let Some(pod) = pod_spec(input.object) else {
        return;
    };
    let claims = claim_templates(input.object);
    let used = |name: &str| {
        all_containers(pod).any(|(_, c)| {
            c.volume_mounts.iter().flatten().any(|m| m.name == name)
                || c.volume_devices.iter().flatten().any(|d| d.name == name)
        })
    };
    for (i, claim) in claims.iter().enumerate() {
        let name = claim_name(claim);
        if !name.is_empty() && !used(name) {
            let block = claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block");
            let how = if block {
                format!("a volumeDevice named \"{name}\"")
            } else {
                format!("a volumeMount named \"{name}\"")
            };
            out.violation(
                format!("spec.volumeClaimTemplates[{i}].metadata.name"),
                format!(
                    "claim template \"{name}\" is used by no container: add {how} or remove the \
                     template"
                ),
            );
        }
    }
    let volumes = pod.volumes.as_deref().unwrap_or_default();
    let known = |name: &str| {
        volumes.iter().any(|v| v.name == name) || claims.iter().any(|c| claim_name(c) == name)
    };
    for (path, container) in all_containers(pod) {
        let mounts = container
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.name.as_str());
        let devices = container
            .volume_devices
            .iter()
            .flatten()
            .map(|d| d.name.as_str());
        let named = mounts
            .enumerate()
            .map(|(j, n)| ("volumeMounts", "mounts", j, n))
            .chain(
                devices
                    .enumerate()
                    .map(|(j, n)| ("volumeDevices", "uses device", j, n)),
            );
        for (list, verb, j, name) in named {
            if !known(name) {
                out.violation(
                    format!("{path}.{list}[{j}].name"),
                    format!(
                        "container \"{}\" {verb} \"{name}\", which is neither a pod volume nor a \
                         claim template: add the volume or fix the name",
                        display_name(container),
                    ),
                );
            }
        }
    }
}

const CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

fn storage_class(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .or_else(|| {
            claim
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(CLASS_ANNOTATION))
                .map(String::as_str)
        })
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct StorageRule {
    /// enforce: deny; warn: allow with a warning; audit: allow, log and count; off: not
    /// evaluated.
    pub mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    pub skippable: Option<bool>,
    /// Storage classes a claim template may use (absent: any class).
    pub allowed_storage_classes: Option<Vec<String>>,
}

/// The catalogue's defaults (what `policies/baseline.yaml` shows).
impl Default for StorageRule {
    fn default() -> Self {
        StorageRule {
            mode: None,
            skippable: None,
            allowed_storage_classes: Some(Vec::new()),
        }
    }
}

impl Settings for StorageRule {
    fn take_switch(&mut self) -> Switch {
        Switch::mode(self.mode.take(), self.skippable.take())
    }

    fn check(&self) -> Result<(), Invalid> {
        if let Some(classes) = &self.allowed_storage_classes
            && classes.iter().any(|c| c.is_empty())
        {
            return Err(Invalid::new(
                "allowedStorageClasses",
                "must not contain an empty class name",
            ));
        }
        Ok(())
    }
}

pub static CLAIM_TEMPLATE_STORAGE: Rule<StorageRule> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetClaimTemplateStorage,
    name: "statefulset.claim-template-storage",
    kind: Kind::StatefulSet,
    operations: CU,
    action: validate(Mode::Enforce, Check::StatefulSet(claim_template_storage)),
    skippable: false,
    summary: "claim templates request storage and accessModes; storageClassName set (and allowed)",
})
.native(native_claim_template_storage);

pub fn claim_template_storage(input: &Input<'_, StatefulSet>, out: &mut Sink) {
    let Some(settings) = input.policy.settings(&CLAIM_TEMPLATE_STORAGE) else {
        return;
    };
    let allowed: &[String] = settings
        .allowed_storage_classes
        .as_deref()
        .unwrap_or_default();
    for (i, claim) in claim_templates(input.object).iter().enumerate() {
        let name = claim_name(claim);
        let path = format!("spec.volumeClaimTemplates[{i}].spec");
        let spec = claim.spec.as_ref();
        let has_size = spec
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .is_some_and(|r| r.contains_key("storage"));
        if !has_size {
            out.violation(
                format!("{path}.resources.requests.storage"),
                format!("claim template \"{name}\" requests no storage size: set resources.requests.storage (e.g. 10Gi)"),
            );
        }
        if spec
            .and_then(|s| s.access_modes.as_ref())
            .is_none_or(Vec::is_empty)
        {
            out.violation(
                format!("{path}.accessModes"),
                format!("claim template \"{name}\" has no accessModes: set [ReadWriteOnce] or [ReadWriteOncePod]"),
            );
        }
        match storage_class(claim) {
            None => out.advisory(
                format!("{path}.storageClassName"),
                format!(
                    "claim template \"{name}\" sets no storageClassName: the cluster default class \
                     (or a pre-provisioned PV) is used; name the class"
                ),
            ),
            Some(class) if !allowed.is_empty() && !allowed.iter().any(|a| a == class) => out
                .violation(
                    format!("{path}.storageClassName"),
                    format!(
                        "claim template \"{name}\" uses storage class \"{class}\", which the policy \
                         does not allow; use one of: {}",
                        allowed.join(", ")
                    ),
                ),
            Some(_) => {}
        }
    }
}

pub static CLAIM_TEMPLATE_ACCESS_MODE: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetClaimTemplateAccessMode,
    name: "statefulset.claim-template-access-mode",
    kind: Kind::StatefulSet,
    operations: CU,
    action: validate(Mode::Warn, Check::StatefulSet(claim_template_access_mode)),
    skippable: true,
    summary: "per-pod storage uses ReadWriteOnce or ReadWriteOncePod, not ReadWriteMany/ReadOnlyMany",
})
.native(native_claim_template_access_mode);

pub fn claim_template_access_mode(input: &Input<'_, StatefulSet>, out: &mut Sink) {
    for (i, claim) in claim_templates(input.object).iter().enumerate() {
        let modes = claim
            .spec
            .as_ref()
            .and_then(|s| s.access_modes.as_deref())
            .unwrap_or_default();
        for (j, mode) in modes.iter().enumerate() {
            if mode == "ReadWriteMany" || mode == "ReadOnlyMany" {
                out.violation(
                    format!("spec.volumeClaimTemplates[{i}].spec.accessModes[{j}]"),
                    format!(
                        "claim template \"{}\" asks for {mode}, but each pod gets its own claim: \
                         use ReadWriteOnce or ReadWriteOncePod",
                        claim_name(claim)
                    ),
                );
            }
        }
    }
}

/// Kubernetes' default when the field is unset.
const DEFAULT_GRACE_SECONDS: i64 = 30;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GraceRule {
    /// enforce: deny; warn: allow with a warning; audit: allow, log and count; off: not
    /// evaluated.
    pub mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    pub skippable: Option<bool>,
    /// Smallest terminationGracePeriodSeconds allowed.
    #[schemars(range(min = 0))]
    pub min_seconds: Option<i64>,
    /// Largest terminationGracePeriodSeconds allowed.
    #[schemars(range(min = 0))]
    pub max_seconds: Option<i64>,
}

impl Settings for GraceRule {
    fn take_switch(&mut self) -> Switch {
        Switch::mode(self.mode.take(), self.skippable.take())
    }

    fn check(&self) -> Result<(), Invalid> {
        for (name, value) in [
            ("minSeconds", self.min_seconds),
            ("maxSeconds", self.max_seconds),
        ] {
            if value.is_some_and(|v| v < 0) {
                return Err(Invalid::new(name, "must not be negative"));
            }
        }
        if let (Some(min), Some(max)) = (self.min_seconds, self.max_seconds)
            && min > max
        {
            return Err(Invalid::new(
                "minSeconds",
                format!("is {min}, above maxSeconds {max}"),
            ));
        }
        Ok(())
    }
}

pub static TERMINATION_GRACE_PERIOD: Rule<GraceRule> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetTerminationGracePeriod,
    name: "statefulset.termination-grace-period",
    kind: Kind::StatefulSet,
    operations: CU,
    action: validate(Mode::Enforce, Check::StatefulSet(termination_grace_period)),
    skippable: false,
    summary: "terminationGracePeriodSeconds is not 0 (and within minSeconds/maxSeconds)",
})
.native(native_termination_grace_period);

pub fn termination_grace_period(input: &Input<'_, StatefulSet>, out: &mut Sink) {
    let Some(pod) = pod_spec(input.object) else {
        return;
    };
    let field = "spec.template.spec.terminationGracePeriodSeconds";
    let set = pod.termination_grace_period_seconds;
    let value = set.unwrap_or(DEFAULT_GRACE_SECONDS);
    let shown = match set {
        Some(v) => v.to_string(),
        None => format!("unset (defaults to {DEFAULT_GRACE_SECONDS})"),
    };
    if value == 0 {
        out.violation(
            field,
            "terminationGracePeriodSeconds is 0: pods are killed without a graceful shutdown, \
             which is unsafe for stateful workloads; set it to the time the app needs to stop",
        );
        return;
    }
    let Some(params) = input.policy.settings(&TERMINATION_GRACE_PERIOD) else {
        return;
    };
    if let Some(min) = params.min_seconds
        && value < min
    {
        out.violation(
            field,
            format!("terminationGracePeriodSeconds is {shown}; the policy requires at least {min}"),
        );
    }
    if let Some(max) = params.max_seconds
        && value > max
    {
        out.violation(
            field,
            format!("terminationGracePeriodSeconds is {shown}; the policy allows at most {max}"),
        );
    }
}

fn same_probe(a: &Probe, b: &Probe) -> bool {
    a == b
}

pub static READINESS_PROBE: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetReadinessProbe,
    name: "statefulset.readiness-probe",
    kind: Kind::StatefulSet,
    operations: CU,
    action: validate(Mode::Warn, Check::StatefulSet(readiness_probe)),
    skippable: true,
    summary: "every container has a readinessProbe, different from its livenessProbe",
})
.native(native_readiness_probe);

pub fn readiness_probe(input: &Input<'_, StatefulSet>, out: &mut Sink) {
    let Some(pod) = pod_spec(input.object) else {
        return;
    };
    for (path, c) in containers(pod) {
        match (&c.readiness_probe, &c.liveness_probe) {
            (None, _) => out.violation(
                format!("{path}.readinessProbe"),
                format!(
                    "container \"{}\" has no readinessProbe: ordered start and rolling updates \
                     wait for Ready, so add one",
                    display_name(c)
                ),
            ),
            (Some(ready), Some(live)) if same_probe(ready, live) => out.violation(
                format!("{path}.livenessProbe"),
                format!(
                    "container \"{}\" uses the same probe for readiness and liveness: a slow \
                     replica gets restarted instead of taken out of service; make them differ",
                    display_name(c)
                ),
            ),
            _ => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ResourcesRule {
    /// enforce: deny; warn: allow with a warning; audit: allow, log and count; off: not
    /// evaluated.
    pub mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    pub skippable: Option<bool>,
    /// Resources every container must also set a limit for (e.g. `memory`).
    pub required_limits: Option<Vec<String>>,
}

/// The catalogue's defaults (what `policies/baseline.yaml` shows).
impl Default for ResourcesRule {
    fn default() -> Self {
        ResourcesRule {
            mode: None,
            skippable: None,
            required_limits: Some(Vec::new()),
        }
    }
}

impl Settings for ResourcesRule {
    fn take_switch(&mut self) -> Switch {
        Switch::mode(self.mode.take(), self.skippable.take())
    }
}

pub static RESOURCES: Rule<ResourcesRule> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetResources,
    name: "statefulset.resources",
    kind: Kind::StatefulSet,
    operations: CU,
    action: validate(Mode::Warn, Check::StatefulSet(resources)),
    skippable: true,
    summary: "every container requests cpu and memory (limits when the policy requires them)",
})
.native(native_resources);

pub fn resources(input: &Input<'_, StatefulSet>, out: &mut Sink) {
    let Some(pod) = pod_spec(input.object) else {
        return;
    };
    let Some(settings) = input.policy.settings(&RESOURCES) else {
        return;
    };
    let required_limits: &[String] = settings.required_limits.as_deref().unwrap_or_default();
    for (path, c) in all_containers(pod) {
        let res = c.resources.as_ref();
        let requests = res.and_then(|r| r.requests.as_ref());
        let missing: Vec<&str> = ["cpu", "memory"]
            .into_iter()
            .filter(|k| !requests.is_some_and(|r| r.contains_key(*k)))
            .collect();
        if !missing.is_empty() {
            out.violation(
                format!("{path}.resources.requests"),
                format!(
                    "container \"{}\" requests no {}: set resources.requests so the scheduler \
                     reserves capacity",
                    display_name(c),
                    missing.join(" or ")
                ),
            );
        }
        let limits = res.and_then(|r| r.limits.as_ref());
        let missing: Vec<&str> = required_limits
            .iter()
            .map(String::as_str)
            .filter(|k| !limits.is_some_and(|l| l.contains_key(*k)))
            .collect();
        if !missing.is_empty() {
            out.violation(
                format!("{path}.resources.limits"),
                format!(
                    "container \"{}\" sets no {} limit: the policy requires resources.limits for {}",
                    display_name(c),
                    missing.join(" or "),
                    required_limits.join(", ")
                ),
            );
        }
    }
}

/// Every pod anti-affinity term, required and preferred, with its field path.
fn anti_affinity_terms(pod: &PodSpec) -> Vec<(String, &PodAffinityTerm)> {
    let Some(anti) = pod
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
    else {
        return Vec::new();
    };
    let base = "spec.template.spec.affinity.podAntiAffinity";
    let required = anti
        .required_during_scheduling_ignored_during_execution
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, t)| {
            (
                format!("{base}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"),
                t,
            )
        });
    let preferred = anti
        .preferred_during_scheduling_ignored_during_execution
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, w)| {
            (
                format!(
                    "{base}.preferredDuringSchedulingIgnoredDuringExecution[{i}].podAffinityTerm"
                ),
                &w.pod_affinity_term,
            )
        });
    required.chain(preferred).collect()
}

/// Whether pods are spread on `key` by anti-affinity or topology spread.
pub(crate) fn spreads_on(pod: &PodSpec, key: &str) -> bool {
    anti_affinity_terms(pod)
        .iter()
        .any(|(_, t)| t.topology_key == key)
        || pod
            .topology_spread_constraints
            .iter()
            .flatten()
            .any(|t| t.topology_key == key)
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AntiAffinityRule {
    /// enforce: deny; warn: allow with a warning; audit: allow, log and count; off: not
    /// evaluated.
    pub mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    pub skippable: Option<bool>,
    /// The topology key the pods must be spread over (default `kubernetes.io/hostname`).
    #[schemars(length(min = 1))]
    pub topology_key: Option<String>,
}

impl AntiAffinityRule {
    pub fn topology_key(&self) -> &str {
        self.topology_key.as_deref().unwrap_or(HOSTNAME_KEY)
    }
}

/// The catalogue's defaults (what `policies/baseline.yaml` shows).
impl Default for AntiAffinityRule {
    fn default() -> Self {
        AntiAffinityRule {
            mode: None,
            skippable: None,
            topology_key: Some(HOSTNAME_KEY.into()),
        }
    }
}

impl Settings for AntiAffinityRule {
    fn take_switch(&mut self) -> Switch {
        Switch::mode(self.mode.take(), self.skippable.take())
    }

    fn check(&self) -> Result<(), Invalid> {
        check_not_empty("topologyKey", self.topology_key.as_deref())
    }
}

pub static ANTI_AFFINITY: Rule<AntiAffinityRule> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetAntiAffinity,
    name: "statefulset.anti-affinity",
    kind: Kind::StatefulSet,
    operations: CU,
    action: validate(Mode::Warn, Check::StatefulSet(anti_affinity)),
    skippable: true,
    summary: "with 2+ replicas, pod anti-affinity or topology spread on the hostname key",
})
.native(native_anti_affinity);

pub fn anti_affinity(input: &Input<'_, StatefulSet>, out: &mut Sink) {
    let replicas = replicas(input.object);
    if replicas < 2 {
        return;
    }
    let Some(pod) = pod_spec(input.object) else {
        return;
    };
    let Some(settings) = input.policy.settings(&ANTI_AFFINITY) else {
        return;
    };
    let key = settings.topology_key();
    if !spreads_on(pod, key) {
        out.violation(
            "spec.template.spec.affinity.podAntiAffinity",
            format!(
                "{replicas} replicas may land on one node: add pod anti-affinity or a topology \
                 spread constraint on {key}"
            ),
        );
    }
}

fn term_selects(term: &PodAffinityTerm, namespace: &str, labels: &Labels) -> Option<bool> {
    // A term about other namespaces says nothing about this set's own pods.
    if term.namespace_selector.is_some()
        || term
            .namespaces
            .as_ref()
            .is_some_and(|ns| !ns.is_empty() && !ns.iter().any(|n| n == namespace))
    {
        return None;
    }
    Some(
        term.label_selector
            .as_ref()
            .is_some_and(|s: &LabelSelector| selector_matches(s, labels)),
    )
}

pub static ANTI_AFFINITY_SELECTS_SELF: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetAntiAffinitySelectsSelf,
    name: "statefulset.anti-affinity-selects-self",
    kind: Kind::StatefulSet,
    operations: CU,
    action: validate(Mode::Warn, Check::StatefulSet(anti_affinity_selects_self)),
    skippable: true,
    summary: "every pod anti-affinity term selects the set's own pods",
})
.native(native_anti_affinity_selects_self);

/// Flags anti-affinity terms that miss the set's own pods, when no term selects them: a
/// term that keeps the pods away from *other* workloads is fine beside one that keeps
/// replicas apart.
pub fn anti_affinity_selects_self(input: &Input<'_, StatefulSet>, out: &mut Sink) {
    let Some(pod) = pod_spec(input.object) else {
        return;
    };
    let empty = Labels::new();
    let labels = template_labels(input.object).unwrap_or(&empty);
    let terms = anti_affinity_terms(pod);
    let verdicts: Vec<Option<bool>> = terms
        .iter()
        .map(|(_, term)| term_selects(term, input.namespace(), labels))
        .collect();
    if verdicts.contains(&Some(true)) {
        return;
    }
    for ((path, _), verdict) in terms.iter().zip(verdicts) {
        if verdict == Some(false) {
            out.violation(
                format!("{path}.labelSelector"),
                format!(
                    "this anti-affinity term does not select the set's own pods (labels {}), so \
                     replicas are never kept apart: select the pod template's labels",
                    render_map(labels)
                ),
            );
        }
    }
}

pub static UPDATE_STRATEGY: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetUpdateStrategy,
    name: "statefulset.update-strategy",
    kind: Kind::StatefulSet,
    operations: CU,
    action: validate(Mode::Warn, Check::StatefulSet(update_strategy)),
    skippable: true,
    summary: "no partition above replicas, no OnDelete, no maxUnavailable with OrderedReady",
})
.native(native_update_strategy);

pub fn update_strategy(input: &Input<'_, StatefulSet>, out: &mut Sink) {
    let Some(spec) = spec(input.object) else {
        return;
    };
    let Some(strategy) = spec.update_strategy.as_ref() else {
        return;
    };
    if strategy.type_.as_deref() == Some("OnDelete") {
        out.violation(
            "spec.updateStrategy.type",
            "updateStrategy OnDelete: template changes reach a pod only when it is deleted by \
             hand; use RollingUpdate (with a partition for canaries)",
        );
        return;
    }
    let Some(rolling) = strategy.rolling_update.as_ref() else {
        return;
    };
    let replicas = replicas(input.object);
    if let Some(partition) = rolling.partition
        && partition > replicas
    {
        out.violation(
            "spec.updateStrategy.rollingUpdate.partition",
            format!(
                "partition {partition} is above replicas {replicas}: template changes never roll \
                 out; lower the partition to release the update"
            ),
        );
    }
    let policy = spec
        .pod_management_policy
        .as_deref()
        .unwrap_or("OrderedReady");
    if rolling.max_unavailable.is_some() && policy == "OrderedReady" {
        out.violation(
            "spec.updateStrategy.rollingUpdate.maxUnavailable",
            "maxUnavailable is set but podManagementPolicy is OrderedReady, which still updates \
             one pod at a time: use Parallel or drop maxUnavailable",
        );
    }
}

pub static SECURITY_CONTEXT: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetSecurityContext,
    name: "statefulset.security-context",
    kind: Kind::StatefulSet,
    operations: CU,
    action: validate(Mode::Warn, Check::StatefulSet(security_context)),
    skippable: true,
    summary: "runAsNonRoot: true and allowPrivilegeEscalation: false",
})
.native(native_security_context);

pub fn security_context(input: &Input<'_, StatefulSet>, out: &mut Sink) {
    let Some(pod) = pod_spec(input.object) else {
        return;
    };
    let pod_non_root = pod
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_non_root)
        == Some(true);
    for (path, c) in all_containers(pod) {
        let sc = c.security_context.as_ref();
        let non_root = match sc.and_then(|s| s.run_as_non_root) {
            Some(v) => v,
            None => pod_non_root,
        };
        if !non_root {
            out.violation(
                format!("{path}.securityContext.runAsNonRoot"),
                format!(
                    "container \"{}\" may run as root: set runAsNonRoot: true (pod or container)",
                    display_name(c)
                ),
            );
        }
        if sc.and_then(|s| s.allow_privilege_escalation) != Some(false) {
            out.violation(
                format!("{path}.securityContext.allowPrivilegeEscalation"),
                format!(
                    "container \"{}\" allows privilege escalation: set allowPrivilegeEscalation: false",
                    display_name(c)
                ),
            );
        }
    }
}

pub static ROLLOUT_STUCK: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetRolloutStuck,
    name: "statefulset.rollout-stuck",
    kind: Kind::StatefulSet,
    operations: &[Operation::Update],
    action: validate(Mode::Warn, Check::StatefulSet(rollout_stuck)),
    skippable: true,
    summary: "template changed while pods are not ready under OrderedReady: stuck pods need deleting",
})
.native(native_rollout_stuck);

pub fn rollout_stuck(input: &Input<'_, StatefulSet>, out: &mut Sink) {
    let (Some(old), Some(new_spec)) = (input.old, spec(input.object)) else {
        return;
    };
    let Some(old_spec) = spec(old) else {
        return;
    };
    if old_spec.template == new_spec.template {
        return;
    }
    let ordered = new_spec
        .pod_management_policy
        .as_deref()
        .unwrap_or("OrderedReady")
        == "OrderedReady";
    let rolling = new_spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let Some(status) = old.status.as_ref() else {
        return;
    };
    let wanted = replicas(old);
    let ready = status.ready_replicas.unwrap_or(0);
    if ordered && rolling && ready < wanted {
        let name = input.object.metadata.name.as_deref().unwrap_or("<name>");
        out.violation(
            "spec.template",
            format!(
                "template changed while only {ready} of {wanted} pods are ready: a rollout stuck on \
                 a broken pod never proceeds; after fixing the template, delete the stuck pods \
                 (kubectl delete pod -l <selector> of \"{name}\") to force the rollback"
            ),
        );
    }
}

pub(crate) use crate::policy::identity::{
    claim_template_names, deletes_claims_on_scale_down, retained_claims,
};

/// "scaling 5->3 keeps PVCs a, b; ...", listing at most four names.
fn retained_claims_message(before: i32, after: i32, claims: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut list = claims
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if claims.len() > SHOWN {
        list.push_str(&format!(" and {} more", claims.len() - SHOWN));
    }
    format!(
        "scaling {before}->{after} keeps PVCs {list}; delete them when unneeded \
         (stateward gc) or set persistentVolumeClaimRetentionPolicy.whenScaled: Delete"
    )
}

pub static SCALE_DOWN_RETAINS_CLAIMS: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetScaleDownRetainsClaims,
    name: "statefulset.scale-down-retains-claims",
    kind: Kind::StatefulSet,
    operations: &[Operation::Update],
    action: validate(Mode::Warn, Check::StatefulSet(scale_down_retains_claims)),
    skippable: true,
    summary: "scale-down keeps the removed pods' PVCs: names them and how to collect them",
})
.native(native_scale_down_retains_claims)
.on_scale(scale_down_retains_claims_on_scale);

pub fn scale_down_retains_claims(input: &Input<'_, StatefulSet>, out: &mut Sink) {
    let Some(old) = input.old else {
        return;
    };
    let (before, after) = (replicas(old), replicas(input.object));
    if after >= before || deletes_claims_on_scale_down(input.object) {
        return;
    }
    let name = input.object.metadata.name.as_deref().unwrap_or_default();
    let claims = retained_claims(
        name,
        &claim_template_names(input.object),
        ordinals_start(input.object),
        before,
        after,
    );
    if claims.is_empty() {
        return;
    }
    out.violation(
        "spec.replicas",
        retained_claims_message(before, after, &claims),
    );
}

/// `statefulset.scale-down-retains-claims` on the scale subresource: the set's claims come
/// from the context; without it, a shorter warning that names no claim.
pub fn scale_down_retains_claims_on_scale(input: &ScaleInput<'_>, out: &mut Sink) {
    let review = input.review;
    let (name, before, after) = (review.name.as_str(), review.before, review.after);
    if after >= before {
        return;
    }
    let context = input.context;
    let set = context
        .available(ContextKind::StatefulSets)
        .then(|| {
            context
                .statefulsets(&review.namespace)
                .into_iter()
                .find(|s| s.name == name)
        })
        .flatten();
    let message = match set {
        Some(set) if set.deletes_claims_on_scale_down || set.claim_templates.is_empty() => {
            return;
        }
        Some(set) => {
            let claims = retained_claims(
                name,
                &set.claim_templates,
                set.ordinals_start,
                before,
                after,
            );
            retained_claims_message(before, after, &claims)
        }
        None => format!(
            "scaling StatefulSet \"{name}\" {before}->{after} keeps the claims of the removed \
             pods unless its persistentVolumeClaimRetentionPolicy.whenScaled is Delete; \
             `stateward gc -n {}` lists them",
            review.namespace
        ),
    };
    out.violation("spec.replicas", message);
}

/// StatefulSet versions the API server no longer serves (since Kubernetes 1.16).
const REMOVED_VERSIONS: [&str; 2] = ["apps/v1beta1", "apps/v1beta2"];

pub static API_VERSION: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetApiVersion,
    name: "statefulset.api-version",
    kind: Kind::StatefulSet,
    operations: &[Operation::Create],
    action: validate(Mode::Enforce, Check::Header(api_version)),
    skippable: false,
    summary: "offline only: apps/v1beta1 and apps/v1beta2 StatefulSets are not served since 1.16",
});

/// A document that is a StatefulSet of a removed `apps` version: it cannot be decoded as
/// `apps/v1`, so the rule reads its header.
pub fn api_version(header: &Header<'_>, out: &mut Sink) {
    if header.kind == "StatefulSet" && REMOVED_VERSIONS.contains(&header.api_version) {
        out.violation(
            "apiVersion",
            format!(
                "{} StatefulSets are not served since Kubernetes 1.16: change apiVersion \
                 to apps/v1 (which also requires spec.selector to match the template labels)",
                header.api_version
            ),
        );
    }
}

pub static POD_DISRUPTION_BUDGET: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetPodDisruptionBudget,
    name: "statefulset.pod-disruption-budget",
    kind: Kind::StatefulSet,
    operations: CU,
    action: validate(Mode::Audit, Check::StatefulSet(pod_disruption_budget)),
    skippable: true,
    summary: "with 2+ replicas, a PodDisruptionBudget selects the pods",
})
.not_native("it reads the namespace's PodDisruptionBudgets (other objects)");

pub fn pod_disruption_budget(input: &Input<'_, StatefulSet>, out: &mut Sink) {
    let replicas = replicas(input.object);
    if replicas < 2 {
        return;
    }
    let field = "spec.template.metadata.labels";
    if !input.context.available(ContextKind::PodDisruptionBudgets) {
        out.advisory(
            field,
            "cannot check for a PodDisruptionBudget: cluster context is unavailable",
        );
        return;
    }
    let empty = Labels::new();
    let labels = template_labels(input.object).unwrap_or(&empty);
    let covered = input
        .context
        .pod_disruption_budgets(input.namespace())
        .iter()
        .any(|pdb| {
            pdb.selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, labels))
        });
    if !covered {
        out.violation(
            field,
            format!(
                "no PodDisruptionBudget selects these {replicas} replicas: a node drain may evict \
                 several at once; add a PDB (e.g. maxUnavailable: 1)"
            ),
        );
    }
}

#[cfg(test)]
mod tests;

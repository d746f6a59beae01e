//! The rules' native forms: CEL over the API server's `object` (the StatefulSet after
//! defaulting and mutation, schema-typed: an unset field is tested with `has()` before it
//! is read, as reading it is an error) and `oldObject`, deciding what each function above
//! decides. Each [`CelCheck`] holds when the object passes; `tests/native_cel.rs` holds
//! them to the functions on the fixtures, the corpus and hand-made cases.
//!
//! The API server type-checks each expression against the StatefulSet's schema (its
//! warnings land in the policy's `status.typeChecking`): it knows no field `requests` or
//! `limits` of a resources object (maps of quantities), and no `!=` between two probes, so
//! those are read through `dyn(..)`, which evaluates the same. Messages never carry a line
//! break (the API server would drop the message, rule id and all).
use super::*;

/// The pod template's spec.
const POD: &str = "object.spec.template.spec";
/// `spec.replicas`, 1 when unset (as [`replicas`]).
const REPLICAS: &str = "(has(object.spec.replicas) ? object.spec.replicas : 1)";
/// The claim templates.
const CLAIMS: &str = "object.spec.volumeClaimTemplates";
/// Whether the pod template has labels.
const HAS_LABELS: &str =
    "(has(object.spec.template.metadata) && has(object.spec.template.metadata.labels))";
/// The pod template's labels (guarded by [`HAS_LABELS`]).
const LABELS: &str = "object.spec.template.metadata.labels";

/// CEL: `selector` (a LabelSelector expression that is set) selects the labels `labels`
/// (a map read only where `has_labels` holds), with kube's semantics as
/// [`selector_matches`] applies them: matchLabels equal, `In`/`NotIn` (which need
/// `values`), `Exists`, `DoesNotExist`; any other operator selects nothing.
fn cel_selects(selector: &str, labels: &str, has_labels: &str) -> String {
    let key_in = format!("({has_labels} && e.key in {labels})");
    format!(
        "((!has({selector}.matchLabels) || {selector}.matchLabels.all(k, {has_labels} && k in {labels} && \
         {labels}[k] == {selector}.matchLabels[k])) && \
         (!has({selector}.matchExpressions) || {selector}.matchExpressions.all(e, \
         e.operator == 'In' ? (has(e.values) && {key_in} && {labels}[e.key] in e.values) : \
         (e.operator == 'NotIn' ? (has(e.values) && !({key_in} && {labels}[e.key] in e.values)) : \
         (e.operator == 'Exists' ? {key_in} : (e.operator == 'DoesNotExist' ? !{key_in} : false))))))"
    )
}

/// CEL: `selector` (set) has no terms (selects everything).
fn cel_selector_empty(selector: &str) -> String {
    format!(
        "((!has({selector}.matchLabels) || size({selector}.matchLabels) == 0) && \
         (!has({selector}.matchExpressions) || size({selector}.matchExpressions) == 0))"
    )
}

/// CEL: `check` (over `c`) holds for every init and app container of the pod template
/// (nothing to check without one).
fn every_container(check: &str) -> String {
    format!(
        "!has({POD}) || ((!has({POD}.initContainers) || {POD}.initContainers.all(c, {check})) && \
         (!has({POD}.containers) || {POD}.containers.all(c, {check})))"
    )
}

/// CEL string: the name of the first init or app container for which `check` (over `c`)
/// fails (used in messages, where it does).
fn first_failing_container(check: &str) -> String {
    format!(
        "(has({POD}.initContainers) && {POD}.initContainers.exists(c, !({check})) ? \
         {POD}.initContainers.filter(c, !({check}))[0].name : \
         {POD}.containers.filter(c, !({check}))[0].name)"
    )
}

/// CEL: `check` (over `t`) holds for every claim template.
fn every_claim(check: &str) -> String {
    format!("!has({CLAIMS}) || {CLAIMS}.all(t, {check})")
}

/// CEL string: the name of the first claim template for which `check` (over `t`) fails.
fn first_failing_claim(check: &str) -> String {
    format!(
        "{CLAIMS}.filter(t, !({check})).map(t, has(t.metadata) && has(t.metadata.name) ? t.metadata.name : '')[0]"
    )
}

pub(super) fn native_name_length(_: &Plain) -> Vec<CelCheck> {
    let name = "object.metadata.name";
    let start = "(has(object.spec.ordinals) && has(object.spec.ordinals.start) ? object.spec.ordinals.start : 0)";
    let highest = format!("{name} + '-' + string({start} + {REPLICAS} - 1)");
    vec![
        CelCheck::new(
            format!("!has({name}) || size({name}) <= {MAX_NAME_LEN}"),
            format!(
                "'metadata.name \"' + {name} + '\" is ' + string(size({name})) + ' characters; \
                 StatefulSet names must be at most {MAX_NAME_LEN} (pods carry \
                 controller-revision-hash=<name>-<10-char hash>, at most 63): shorten the name'"
            ),
        ),
        // The pod name is counted in bytes, as the Rust does (the API server admits only
        // ASCII names anyway).
        CelCheck::new(
            format!(
                "!has({name}) || size({name}) > {MAX_NAME_LEN} || {REPLICAS} <= 0 || \
                 size(bytes({highest})) <= 63"
            ),
            format!(
                "'the highest pod name \"' + {highest} + '\" is ' + string(size(bytes({highest}))) + \
                 ' characters; pod names become the statefulset.kubernetes.io/pod-name label (at \
                 most 63): shorten the name or lower spec.ordinals.start/replicas'"
            ),
        ),
    ]
}

pub(super) fn native_service_name(_: &Plain) -> Vec<CelCheck> {
    let name = "object.spec.serviceName";
    let set = format!("(has({name}) && {name} != '')");
    vec![
        CelCheck::advisory(
            set.clone(),
            "'spec.serviceName is not set: pods get no stable DNS name \
             (<pod>.<service>.<namespace>.svc); name a headless Service'",
        ),
        CelCheck::new(
            format!(
                "!{set} || (size({name}) <= 63 && {name}.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))"
            ),
            format!(
                "'spec.serviceName \"' + {name}.replace('\\n', ' ').replace('\\r', ' ') + '\" is \
                 not a DNS-1123 label (lower-case letters, digits and -, at most 63): it becomes \
                 each pod\\'s spec.subdomain; rename it'"
            ),
        ),
    ]
}

pub(super) fn native_selector_matches_template(_: &Plain) -> Vec<CelCheck> {
    let selector = "object.spec.selector";
    let empty = cel_selector_empty(selector);
    vec![
        CelCheck::new(
            format!("has({selector}) && !{empty}"),
            "'spec.selector is empty: the API rejects it; select the pod template\\'s labels \
             (matchLabels)'",
        ),
        CelCheck::new(
            format!(
                "!has({selector}) || {empty} || {}",
                cel_selects(selector, LABELS, HAS_LABELS)
            ),
            "'spec.selector does not select the pod template labels: the set would never own its \
             pods; make spec.template.metadata.labels match the selector'",
        ),
    ]
}

pub(super) fn native_claim_templates_mounted(_: &Plain) -> Vec<CelCheck> {
    let claim = "(has(t.metadata) && has(t.metadata.name) ? t.metadata.name : '')";
    let uses = |list: &str| {
        format!(
            "(has({POD}.{list}) && {POD}.{list}.exists(c, \
             (has(c.volumeMounts) && c.volumeMounts.exists(m, m.name == {claim})) || \
             (has(c.volumeDevices) && c.volumeDevices.exists(d, d.name == {claim}))))"
        )
    };
    let used = format!(
        "{claim} == '' || {} || {}",
        uses("initContainers"),
        uses("containers")
    );
    let known = |name: &str| {
        format!(
            "((has({POD}.volumes) && {POD}.volumes.exists(v, v.name == {name})) || \
             (has({CLAIMS}) && {CLAIMS}.exists(t, {claim} == {name})))"
        )
    };
    let mounts = format!(
        "!has(c.volumeMounts) || c.volumeMounts.all(m, {})",
        known("m.name")
    );
    let devices = format!(
        "!has(c.volumeDevices) || c.volumeDevices.all(d, {})",
        known("d.name")
    );
    vec![
        CelCheck::new(
            format!("!has({POD}) || {}", every_claim(&used)),
            format!(
                "'claim template \"' + {} + '\" is used by no container: add a volumeMount (or, \
                 for volumeMode Block, a volumeDevice) with its name or remove the template'",
                first_failing_claim(&used)
            ),
        ),
        CelCheck::new(
            every_container(&mounts),
            format!(
                "'container \"' + {} + '\" mounts a volume that is neither a pod volume nor a \
                 claim template: add the volume or fix the name'",
                first_failing_container(&mounts)
            ),
        ),
        CelCheck::new(
            every_container(&devices),
            format!(
                "'container \"' + {} + '\" uses a device that is neither a pod volume nor a \
                 claim template: add the volume or fix the name'",
                first_failing_container(&devices)
            ),
        ),
    ]
}

pub(super) fn native_claim_template_storage(settings: &StorageRule) -> Vec<CelCheck> {
    let allowed: &[String] = settings
        .allowed_storage_classes
        .as_deref()
        .unwrap_or_default();
    let sized = "has(t.spec) && has(t.spec.resources) && has(dyn(t.spec.resources).requests) && \
                 'storage' in dyn(t.spec.resources).requests";
    let modes = "has(t.spec) && has(t.spec.accessModes) && size(t.spec.accessModes) > 0";
    let in_spec = "(has(t.spec) && has(t.spec.storageClassName))";
    let annotation = cel_string(CLASS_ANNOTATION);
    let in_annotation = format!(
        "(has(t.metadata) && has(t.metadata.annotations) && {annotation} in t.metadata.annotations)"
    );
    let named = format!("({in_spec} || {in_annotation})");
    let class =
        format!("({in_spec} ? t.spec.storageClassName : t.metadata.annotations[{annotation}])");
    let mut checks = vec![
        CelCheck::new(
            every_claim(sized),
            format!(
                "'claim template \"' + {} + '\" requests no storage size: set \
                 resources.requests.storage (e.g. 10Gi)'",
                first_failing_claim(sized)
            ),
        ),
        CelCheck::new(
            every_claim(modes),
            format!(
                "'claim template \"' + {} + '\" has no accessModes: set [ReadWriteOnce] or \
                 [ReadWriteOncePod]'",
                first_failing_claim(modes)
            ),
        ),
        CelCheck::advisory(
            every_claim(&named),
            format!(
                "'claim template \"' + {} + '\" sets no storageClassName: the cluster default \
                 class (or a pre-provisioned PV) is used; name the class'",
                first_failing_claim(&named)
            ),
        ),
    ];
    if !allowed.is_empty() {
        let ok = format!("!{named} || {class} in {}", cel_list(allowed));
        checks.push(CelCheck::new(
            every_claim(&ok),
            format!(
                "'claim template \"' + {} + '\" uses a storage class the policy does not allow; \
                 use one of: ' + {}",
                first_failing_claim(&ok),
                cel_string(&allowed.join(", "))
            ),
        ));
    }
    checks
}

pub(super) fn native_claim_template_access_mode(_: &Plain) -> Vec<CelCheck> {
    let ok = "!has(t.spec) || !has(t.spec.accessModes) || \
              !t.spec.accessModes.exists(m, m == 'ReadWriteMany' || m == 'ReadOnlyMany')";
    vec![CelCheck::new(
        every_claim(ok),
        format!(
            "'claim template \"' + {} + '\" asks for ReadWriteMany or ReadOnlyMany, but each pod \
             gets its own claim: use ReadWriteOnce or ReadWriteOncePod'",
            first_failing_claim(ok)
        ),
    )]
}

pub(super) fn native_termination_grace_period(settings: &GraceRule) -> Vec<CelCheck> {
    let field = format!("{POD}.terminationGracePeriodSeconds");
    let value = format!("(has({field}) ? {field} : {DEFAULT_GRACE_SECONDS})");
    let shown =
        format!("(has({field}) ? string({field}) : 'unset (defaults to {DEFAULT_GRACE_SECONDS})')");
    let mut checks = vec![CelCheck::new(
        format!("!has({POD}) || {value} != 0"),
        "'terminationGracePeriodSeconds is 0: pods are killed without a graceful shutdown, which \
         is unsafe for stateful workloads; set it to the time the app needs to stop'",
    )];
    if let Some(min) = settings.min_seconds {
        checks.push(CelCheck::new(
            format!("!has({POD}) || {value} == 0 || {value} >= {min}"),
            format!(
                "'terminationGracePeriodSeconds is ' + {shown} + '; the policy requires at least {min}'"
            ),
        ));
    }
    if let Some(max) = settings.max_seconds {
        checks.push(CelCheck::new(
            format!("!has({POD}) || {value} == 0 || {value} <= {max}"),
            format!(
                "'terminationGracePeriodSeconds is ' + {shown} + '; the policy allows at most {max}'"
            ),
        ));
    }
    checks
}

pub(super) fn native_readiness_probe(_: &Plain) -> Vec<CelCheck> {
    let app = |check: &str| {
        format!("!has({POD}) || !has({POD}.containers) || {POD}.containers.all(c, {check})")
    };
    let first = |check: &str| format!("{POD}.containers.filter(c, !({check}))[0].name");
    let present = "has(c.readinessProbe)";
    let differs = "!has(c.readinessProbe) || !has(c.livenessProbe) || dyn(c.readinessProbe) != dyn(c.livenessProbe)";
    vec![
        CelCheck::new(
            app(present),
            format!(
                "'container \"' + {} + '\" has no readinessProbe: ordered start and rolling \
                 updates wait for Ready, so add one'",
                first(present)
            ),
        ),
        CelCheck::new(
            app(differs),
            format!(
                "'container \"' + {} + '\" uses the same probe for readiness and liveness: a slow \
                 replica gets restarted instead of taken out of service; make them differ'",
                first(differs)
            ),
        ),
    ]
}

pub(super) fn native_resources(settings: &ResourcesRule) -> Vec<CelCheck> {
    let required: &[String] = settings.required_limits.as_deref().unwrap_or_default();
    let requests = "has(c.resources) && has(dyn(c.resources).requests) && \
                    'cpu' in dyn(c.resources).requests && 'memory' in dyn(c.resources).requests";
    let mut checks = vec![CelCheck::new(
        every_container(requests),
        format!(
            "'container \"' + {} + '\" requests no cpu or no memory: set resources.requests so \
             the scheduler reserves capacity'",
            first_failing_container(requests)
        ),
    )];
    if !required.is_empty() {
        let limits = format!(
            "has(c.resources) && has(dyn(c.resources).limits) && {}.all(r, r in dyn(c.resources).limits)",
            cel_list(required)
        );
        checks.push(CelCheck::new(
            every_container(&limits),
            format!(
                "'container \"' + {} + '\" misses a limit: the policy requires resources.limits \
                 for ' + {}",
                first_failing_container(&limits),
                cel_string(&required.join(", "))
            ),
        ));
    }
    checks
}

/// The pod anti-affinity (guarded by [`HAS_ANTI`]).
const ANTI: &str = "object.spec.template.spec.affinity.podAntiAffinity";
const HAS_ANTI: &str = "(has(object.spec.template.spec.affinity) && \
                        has(object.spec.template.spec.affinity.podAntiAffinity))";

/// CEL: some anti-affinity term (required, or a preferred one's podAffinityTerm) satisfies
/// `check` (over `t`, a PodAffinityTerm).
fn some_anti_affinity_term(check: &str) -> String {
    format!(
        "({HAS_ANTI} && ((has({ANTI}.requiredDuringSchedulingIgnoredDuringExecution) && \
         {ANTI}.requiredDuringSchedulingIgnoredDuringExecution.exists(t, {check})) || \
         (has({ANTI}.preferredDuringSchedulingIgnoredDuringExecution) && \
         {ANTI}.preferredDuringSchedulingIgnoredDuringExecution.exists(w, \
         has(w.podAffinityTerm) && [w.podAffinityTerm].exists(t, {check})))))"
    )
}

pub(super) fn native_anti_affinity(settings: &AntiAffinityRule) -> Vec<CelCheck> {
    let key = cel_string(settings.topology_key());
    let on_key = format!("has(t.topologyKey) && t.topologyKey == {key}");
    vec![CelCheck::new(
        format!(
            "{REPLICAS} < 2 || !has({POD}) || {} || \
             (has({POD}.topologySpreadConstraints) && {POD}.topologySpreadConstraints.exists(t, {on_key}))",
            some_anti_affinity_term(&on_key)
        ),
        format!(
            "string({REPLICAS}) + ' replicas may land on one node: add pod anti-affinity or a \
             topology spread constraint on ' + {key}"
        ),
    )]
}

pub(super) fn native_anti_affinity_selects_self(_: &Plain) -> Vec<CelCheck> {
    // A term about other namespaces says nothing about the set's own pods.
    let own = "!has(t.namespaceSelector) && (!has(t.namespaces) || size(t.namespaces) == 0 || \
               request.namespace in t.namespaces)";
    let selects = format!(
        "has(t.labelSelector) && {}",
        cel_selects("t.labelSelector", LABELS, HAS_LABELS)
    );
    vec![CelCheck::new(
        format!(
            "!has({POD}) || {} || !{}",
            some_anti_affinity_term(&format!("{own} && {selects}")),
            some_anti_affinity_term(&format!("{own} && !({selects})"))
        ),
        "'no pod anti-affinity term selects the set\\'s own pods, so replicas are never kept \
         apart: select the pod template\\'s labels'",
    )]
}

pub(super) fn native_update_strategy(_: &Plain) -> Vec<CelCheck> {
    let strategy = "object.spec.updateStrategy";
    let on_delete = format!("(has({strategy}.type) && {strategy}.type == 'OnDelete')");
    let rolling = format!("{strategy}.rollingUpdate");
    let policy =
        "(has(object.spec.podManagementPolicy) ? object.spec.podManagementPolicy : 'OrderedReady')";
    vec![
        CelCheck::new(
            format!("!has({strategy}) || !{on_delete}"),
            "'updateStrategy OnDelete: template changes reach a pod only when it is deleted by \
             hand; use RollingUpdate (with a partition for canaries)'",
        ),
        CelCheck::new(
            format!(
                "!has({strategy}) || {on_delete} || !has({rolling}) || !has({rolling}.partition) || \
                 {rolling}.partition <= {REPLICAS}"
            ),
            format!(
                "'partition ' + string({rolling}.partition) + ' is above replicas ' + \
                 string({REPLICAS}) + ': template changes never roll out; lower the partition to \
                 release the update'"
            ),
        ),
        CelCheck::new(
            format!(
                "!has({strategy}) || {on_delete} || !has({rolling}) || \
                 !has({rolling}.maxUnavailable) || {policy} != 'OrderedReady'"
            ),
            "'maxUnavailable is set but podManagementPolicy is OrderedReady, which still updates \
             one pod at a time: use Parallel or drop maxUnavailable'",
        ),
    ]
}

pub(super) fn native_security_context(_: &Plain) -> Vec<CelCheck> {
    let pod_non_root = format!(
        "(has({POD}.securityContext) && has({POD}.securityContext.runAsNonRoot) && \
         {POD}.securityContext.runAsNonRoot)"
    );
    let non_root = format!(
        "(has(c.securityContext) && has(c.securityContext.runAsNonRoot) ? \
         c.securityContext.runAsNonRoot : {pod_non_root})"
    );
    let no_escalation = "has(c.securityContext) && has(c.securityContext.allowPrivilegeEscalation) && \
                         !c.securityContext.allowPrivilegeEscalation";
    vec![
        CelCheck::new(
            every_container(&non_root),
            format!(
                "'container \"' + {} + '\" may run as root: set runAsNonRoot: true (pod or \
                 container)'",
                first_failing_container(&non_root)
            ),
        ),
        CelCheck::new(
            every_container(no_escalation),
            format!(
                "'container \"' + {} + '\" allows privilege escalation: set \
                 allowPrivilegeEscalation: false'",
                first_failing_container(no_escalation)
            ),
        ),
    ]
}

pub(super) fn native_rollout_stuck(_: &Plain) -> Vec<CelCheck> {
    let wanted = "(has(oldObject.spec.replicas) ? oldObject.spec.replicas : 1)";
    let ready = "(has(oldObject.status.readyReplicas) ? oldObject.status.readyReplicas : 0)";
    vec![CelCheck::new(
        format!(
            "oldObject == null || oldObject.spec.template == object.spec.template || \
             (has(object.spec.podManagementPolicy) ? object.spec.podManagementPolicy : 'OrderedReady') != 'OrderedReady' || \
             (has(object.spec.updateStrategy) && has(object.spec.updateStrategy.type) ? \
             object.spec.updateStrategy.type : 'RollingUpdate') != 'RollingUpdate' || \
             !has(oldObject.status) || {ready} >= {wanted}"
        ),
        format!(
            "'template changed while only ' + string({ready}) + ' of ' + string({wanted}) + ' pods \
             are ready: a rollout stuck on a broken pod never proceeds; after fixing the \
             template, delete the stuck pods to force the rollback'"
        ),
    )]
}

pub(super) fn native_scale_down_retains_claims(_: &Plain) -> Vec<CelCheck> {
    let before = "(has(oldObject.spec.replicas) ? oldObject.spec.replicas : 1)";
    let retention = "object.spec.persistentVolumeClaimRetentionPolicy";
    vec![CelCheck::new(
        format!(
            "oldObject == null || {REPLICAS} >= {before} || \
             (has({retention}) && has({retention}.whenScaled) && {retention}.whenScaled == 'Delete') || \
             {before} <= ({REPLICAS} > 0 ? {REPLICAS} : 0) || \
             !has({CLAIMS}) || !{CLAIMS}.exists(t, has(t.metadata) && has(t.metadata.name) && t.metadata.name != '')"
        ),
        format!(
            "'scaling ' + string({before}) + '->' + string({REPLICAS}) + ' keeps the removed pods\\' \
             PVCs (<template>-' + object.metadata.name + '-<ordinal>); delete them when unneeded \
             (stateward gc) or set persistentVolumeClaimRetentionPolicy.whenScaled: Delete'"
        ),
    )]
}

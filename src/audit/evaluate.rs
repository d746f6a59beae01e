//! The engine's side of a pass: a Service or a StatefulSet evaluated as the webhook
//! validates a CREATE of it, and a set's live-state rules on its pods, claims,
//! PodDisruptionBudgets and nodes, made back from the pass's entries.
use std::collections::{HashMap, HashSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use super::index::{ClaimEntry, PodEntry};
use super::{AuditFinding, Chunk, SetOutcome, Sets, exact, name_of, ns_of};
use crate::policy::rules::live::LiveInput;
use crate::policy::{
    Level, Live, Policy, Resource, Review, RuleId, Stage, StaticContext, evaluate_live,
    evaluate_stage,
};

/// The Service findings of a pass, and how many Services it evaluated.
#[derive(Default)]
pub(super) struct Evaluated {
    pub(super) findings: Vec<AuditFinding>,
    pub(super) count: usize,
}

/// Evaluates one Service (as the webhook validates a CREATE of it), unless excluded or,
/// with `-l`, named by no selected set.
pub(super) fn evaluate_service(
    policy: &Policy,
    context: &StaticContext,
    reported: &Option<HashSet<(String, String)>>,
    out: &mut Evaluated,
    svc: Service,
) {
    let ns = ns_of(&svc.metadata).to_owned();
    let name = name_of(&svc.metadata).to_owned();
    if policy.is_excluded(&ns)
        || reported
            .as_ref()
            .is_some_and(|r| !r.contains(&(ns.clone(), name.clone())))
    {
        return;
    }
    out.count += 1;
    let mut review = Review::create(Resource::Service(Box::new(svc)));
    review.namespace = ns.clone();
    let decision = evaluate_stage(policy, &review, context, Stage::Validate);
    for f in decision.findings {
        if f.mode == Level::Mutate {
            continue;
        }
        out.findings.push(AuditFinding {
            kind: "Service",
            namespace: ns.clone(),
            name: name.clone(),
            statefulset: None,
            rule: f.rule,
            mode: f.mode,
            field: exact(f.field),
            message: exact(f.message),
        });
    }
}

/// Everything a set's evaluation reads, once the other lists are in. It owns the pods' and
/// claims' entries, and drops those of each namespace once it is sent ([`Known::release`]).
pub(super) struct Known<'a> {
    pub(super) policy: &'a Policy,
    pub(super) now: i64,
    pub(super) selected: &'a Option<HashSet<(String, String)>>,
    pub(super) context: &'a StaticContext,
    pub(super) sets: &'a Sets,
    pub(super) pods: HashMap<String, Vec<PodEntry>>,
    pub(super) claims: HashMap<usize, Vec<ClaimEntry>>,
    pub(super) pdbs: &'a HashMap<String, Vec<PodDisruptionBudget>>,
    pub(super) nodes: &'a HashMap<&'a str, &'a Node>,
}

impl Known<'_> {
    /// Where the first list put a set, if it is the same set (by uid).
    fn listed(&self, ns: &str, name: &str, uid: &str) -> Option<usize> {
        self.sets
            .by_name
            .get(&(ns.to_owned(), name.to_owned()))
            .copied()
            .filter(|&k| self.sets.views[k].uid == *uid)
    }

    /// Evaluates one StatefulSet: the webhook's rules (a CREATE of it as it is) and the
    /// live-state rules on its pods, claims, PodDisruptionBudgets and nodes. `None` when
    /// the pass does not report it (excluded, or not selected).
    pub(super) fn evaluate_set(&self, sts: StatefulSet) -> Option<(Vec<AuditFinding>, SetOutcome)> {
        let policy = self.policy;
        let ns = ns_of(&sts.metadata).to_owned();
        let name = name_of(&sts.metadata).to_owned();
        if self
            .selected
            .as_ref()
            .is_some_and(|s| !s.contains(&(ns.clone(), name.clone())))
            || policy.is_excluded(&ns)
        {
            return None;
        }
        let uid = sts.metadata.uid.clone().unwrap_or_default();
        let service = sts.spec.service_name.clone();
        let mut review = Review::create(Resource::StatefulSet(Box::new(sts)));
        review.namespace = ns.clone();
        let decision = evaluate_stage(policy, &review, self.context, Stage::Validate);
        let Some(Resource::StatefulSet(sts)) = review.object.as_ref() else {
            return None;
        };
        let mut findings = Vec::new();
        let mut push = |rule: RuleId, mode: Level, field: String, message: String| {
            findings.push(AuditFinding {
                kind: "StatefulSet",
                namespace: ns.clone(),
                name: name.clone(),
                statefulset: Some(name.clone()),
                rule,
                mode,
                field: exact(field),
                message: exact(message),
            });
        };
        for f in decision.findings {
            if f.mode != Level::Mutate {
                push(f.rule, f.mode, f.field, f.message);
            }
        }
        let pods: Vec<Pod> = self
            .pods
            .get(&uid)
            .into_iter()
            .flatten()
            .map(PodEntry::pod)
            .collect();
        let pods: Vec<&Pod> = pods.iter().collect();
        // The claims of the set as the first list knew it (a set listed only now, made
        // between the two lists, has none yet).
        let claims: Vec<PersistentVolumeClaim> = self
            .listed(&ns, &name, &uid)
            .and_then(|k| self.claims.get(&k))
            .into_iter()
            .flatten()
            .map(ClaimEntry::claim)
            .collect();
        let claims: Vec<&PersistentVolumeClaim> = claims.iter().collect();
        let pdbs: Vec<&PodDisruptionBudget> = self.pdbs.get(&ns).into_iter().flatten().collect();
        let input = LiveInput {
            policy,
            set: sts,
            pods: &pods,
            claims: &claims,
            pdbs: &pdbs,
            nodes: self.nodes,
            now: self.now,
        };
        for f in evaluate_live(policy, Live::Set(&input), &decision.skipped) {
            push(f.rule, f.mode, f.field, f.message);
        }
        let outcome = SetOutcome {
            namespace: ns,
            name,
            uid,
            service,
            skipped: decision.skipped,
        };
        Some((findings, outcome))
    }

    /// Drops the pod and claim entries of the sets of a namespace sent: each set is
    /// evaluated once (a list that starts again skips the namespaces sent).
    pub(super) fn release(&mut self, chunk: &Chunk) {
        for set in &chunk.sets {
            self.pods.remove(&set.uid);
            if let Some(k) = self.listed(&set.namespace, &set.name, &set.uid) {
                self.claims.remove(&k);
            }
        }
    }
}

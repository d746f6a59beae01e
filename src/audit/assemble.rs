//! A pass put together namespace by namespace ([`Assembler`]), and where each namespace
//! goes as soon as it is complete ([`Sink`]): the one-shot output, the reports of
//! `audit --watch`, or the whole report kept ([`AuditReport`]).
use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use super::{AuditFinding, AuditReport, OrphanRow, SetOutcome, Summary, exact};
use crate::gc::classify::Orphan;
use crate::policy::{Level, Live, Policy, evaluate_live};

/// One namespace of a pass, complete: its findings in the order a person reads them (by
/// set, the most severe first, a set's orphaned claims with it; then its Services), its
/// orphaned claims by name, and the sets evaluated.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Chunk {
    pub namespace: String,
    pub findings: Vec<AuditFinding>,
    pub orphaned_claims: Vec<OrphanRow>,
    pub sets: Vec<SetOutcome>,
}

/// Where a pass sends each namespace as soon as it is complete ([`pass_into`](super::pass_into)): the
/// one-shot output writes it, `audit --watch` writes its reports. A pass holds the
/// findings of one namespace at a time, not the fleet's.
pub trait Sink {
    fn namespace(&mut self, chunk: Chunk) -> impl Future<Output = std::io::Result<()>>;
}

/// A sink that keeps every namespace: the whole report (tests, benches, [`pass`](super::pass)).
impl Sink for AuditReport {
    async fn namespace(&mut self, chunk: Chunk) -> std::io::Result<()> {
        self.push(chunk);
        Ok(())
    }
}

impl AuditReport {
    /// Appends a namespace (namespaces come in order: the findings stay in reading order).
    pub fn push(&mut self, chunk: Chunk) {
        self.findings.extend(chunk.findings);
        self.orphaned_claims.extend(chunk.orphaned_claims);
        self.sets.extend(chunk.sets);
    }
}

/// The order a person reads findings in: by namespace, then by set (a set's orphaned
/// claims with it) before the Services, the most severe first.
fn reading_order(a: &AuditFinding, b: &AuditFinding) -> std::cmp::Ordering {
    fn group(f: &AuditFinding) -> (&str, bool, &str) {
        (
            &f.namespace,
            f.statefulset.is_none(),
            f.statefulset.as_deref().unwrap_or(&f.name),
        )
    }
    group(a)
        .cmp(&group(b))
        .then(b.mode.cmp(&a.mode))
        .then(a.rule.cmp(&b.rule))
        .then(a.field.cmp(&b.field))
}

/// Puts a pass together namespace by namespace. The Service findings and the orphans
/// (from lists read before the sets are evaluated) wait by namespace; the sets' findings
/// come in list order, which is namespace order (the API server lists by key:
/// namespace, then name). When the sets of a namespace are done, the namespace is
/// complete, and so is every namespace before it.
pub(super) struct Assembler<'a> {
    policy: &'a Policy,
    now: i64,
    services: BTreeMap<String, Vec<AuditFinding>>,
    orphans: BTreeMap<String, Vec<Orphan>>,
    /// The namespace whose sets are being evaluated.
    current: Option<Chunk>,
    /// Namespaces sent.
    sent: HashSet<String>,
    summary: Summary,
}

impl<'a> Assembler<'a> {
    pub(super) fn new(
        policy: &'a Policy,
        now: i64,
        services: Vec<AuditFinding>,
        orphans: Vec<Orphan>,
    ) -> Assembler<'a> {
        let mut by_ns: BTreeMap<String, Vec<AuditFinding>> = BTreeMap::new();
        for f in services {
            by_ns.entry(f.namespace.clone()).or_default().push(f);
        }
        let mut orphans_by_ns: BTreeMap<String, Vec<Orphan>> = BTreeMap::new();
        for o in orphans {
            orphans_by_ns
                .entry(o.namespace.clone())
                .or_default()
                .push(o);
        }
        Assembler {
            policy,
            now,
            services: by_ns,
            orphans: orphans_by_ns,
            current: None,
            sent: HashSet::new(),
            summary: Summary::default(),
        }
    }

    pub(super) fn was_sent(&self, ns: &str) -> bool {
        self.sent.contains(ns)
    }

    /// A set's findings; returns the namespaces now complete. A set out of namespace
    /// order (which the API server does not list) gets a namespace of its own again.
    pub(super) fn set(&mut self, findings: Vec<AuditFinding>, outcome: SetOutcome) -> Vec<Chunk> {
        let mut ready = Vec::new();
        if self
            .current
            .as_ref()
            .is_none_or(|c| c.namespace != outcome.namespace)
        {
            if let Some(done) = self.current.take() {
                ready.push(self.complete(done));
            }
            ready.extend(self.waiting(Bound::Excluded(&outcome.namespace)));
            self.current = Some(Chunk {
                namespace: outcome.namespace.clone(),
                ..Chunk::default()
            });
        }
        if let Some(current) = self.current.as_mut() {
            current.findings.extend(findings);
            current.sets.push(outcome);
        }
        ready
    }

    /// The list of sets starts again: the namespace in progress is read again.
    pub(super) fn restart(&mut self) {
        self.current = None;
    }

    /// The namespaces waiting with only Services or orphans, up to `end`, complete.
    fn waiting(&mut self, end: Bound<&str>) -> Vec<Chunk> {
        let range = (Bound::Unbounded, end);
        let mut waiting: Vec<String> = self
            .services
            .range::<str, _>(range)
            .map(|(k, _)| k.clone())
            .chain(self.orphans.range::<str, _>(range).map(|(k, _)| k.clone()))
            .collect();
        waiting.sort();
        waiting.dedup();
        waiting
            .into_iter()
            .map(|namespace| {
                self.complete(Chunk {
                    namespace,
                    ..Chunk::default()
                })
            })
            .collect()
    }

    /// Every namespace not sent yet, and the pass's summary (its counts of what was
    /// listed are the caller's to set).
    pub(super) fn finish(mut self) -> (Vec<Chunk>, Summary) {
        let mut rest: Vec<Chunk> = match self.current.take() {
            Some(current) => vec![self.complete(current)],
            None => Vec::new(),
        };
        rest.extend(self.waiting(Bound::Unbounded));
        rest.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        (rest, self.summary)
    }

    /// A namespace with its Service findings and orphans, sorted as a person reads it.
    fn complete(&mut self, mut chunk: Chunk) -> Chunk {
        let ns = chunk.namespace.clone();
        chunk
            .findings
            .extend(self.services.remove(&ns).unwrap_or_default());
        let mut orphans = self.orphans.remove(&ns).unwrap_or_default();
        orphans.sort_by(|a, b| a.claim.cmp(&b.claim));
        for o in orphans {
            let found = evaluate_live(self.policy, Live::Orphan(&o), &[]);
            if found.is_empty() {
                continue;
            }
            self.summary.orphaned_claims += 1;
            self.summary.orphaned_bytes += o.requested_bytes.unwrap_or(0);
            for f in found {
                chunk.findings.push(AuditFinding {
                    kind: "PersistentVolumeClaim",
                    namespace: o.namespace.clone(),
                    name: o.claim.clone(),
                    statefulset: Some(o.statefulset.clone()),
                    rule: f.rule,
                    mode: f.mode,
                    field: exact(f.field),
                    message: exact(f.message),
                });
            }
            chunk.orphaned_claims.push(OrphanRow {
                age_seconds: o.created.map(|c| self.now - c),
                orphan: o,
            });
        }
        for f in &chunk.findings {
            match f.mode {
                Level::Enforce => self.summary.enforce += 1,
                Level::Warn => self.summary.warn += 1,
                Level::Audit => self.summary.audit += 1,
                Level::Mutate => {}
            }
        }
        self.summary.statefulsets += chunk.sets.len();
        chunk.findings.sort_by(reading_order);
        self.sent.insert(ns);
        chunk
    }
}

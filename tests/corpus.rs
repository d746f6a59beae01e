//! The checker over the shared corpus of real third-party manifests (the corpus tier,
//! `STATEWARD_CORPUS`, usually `../shared/corpus`, never copied into this repository): no
//! panic, no error, every document accounted for.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
#[path = "support/tiers.rs"]
mod tiers;

use stateward::commands::check::manifest::read_paths;
use stateward::commands::check::{Outcome, build_report, check_sources};
use stateward::policy::Policy;

/// The corpus's manifests, in name order.
fn yaml_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_is_checked_without_errors() {
    let Some(dir) = tiers::corpus() else { return };
    let files = yaml_files(&dir);
    assert!(files.len() >= 100, "corpus has {} files", files.len());
    let policy = Policy::baseline();
    let mut statefulsets = 0;
    for file in files {
        let (sources, read_errors) = read_paths(std::slice::from_ref(&file));
        assert!(read_errors.is_empty(), "{read_errors:?}");
        let checked = check_sources(&policy, &sources);
        let report = build_report(&checked, &read_errors, false);
        assert!(
            report.errors.is_empty(),
            "{}: {:?}",
            file.display(),
            report.errors
        );
        assert!(matches!(report.exit() as i32, 0 | 1));
        for c in &checked {
            if c.kind == "StatefulSet" {
                statefulsets += 1;
                // Every StatefulSet is evaluated, except look-alike groups and excluded
                // namespaces.
                let evaluated = matches!(c.outcome, Outcome::Evaluated(_) | Outcome::RemovedApi(_));
                assert_eq!(
                    evaluated,
                    c.api_version.starts_with("apps/") && !policy.is_excluded(&c.namespace),
                    "{} #{} ({})",
                    file.display(),
                    c.document,
                    c.api_version
                );
            }
        }
    }
    assert_eq!(statefulsets, 100);
}

/// A context in which a set's headless Service exists and a PodDisruptionBudget selects
/// its pods, so that the rules that look them up read the set's template too.
fn related(object: &stateward::policy::Resource) -> stateward::policy::StaticContext {
    use stateward::policy::Resource;
    use stateward::policy::context::{PdbInfo, ServiceInfo};
    let mut context = stateward::policy::StaticContext::default();
    let Resource::StatefulSet(set) = object else {
        return context;
    };
    let namespace = set
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let labels = set
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    context.add_service(ServiceInfo {
        namespace: namespace.clone(),
        name: set.spec.service_name.clone().unwrap_or_default(),
        headless: true,
        selector: Some(labels.clone().into()),
    });
    context.add_pdb(PdbInfo {
        namespace,
        name: "pdb".into(),
        selector: Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: Some(labels),
                ..Default::default()
            },
        ),
    });
    context
}

/// The webhook reads a CREATE with `webhook::admission::lean` (only the fields its rules read); on
/// every StatefulSet and Pod of the corpus that gives the decision of the full decode:
/// the same findings, messages and patch, under the baseline and the strict policy, with
/// and without the set's Service and PDB in context, at every stage.
#[test]
fn the_webhooks_lean_decode_decides_as_the_full_decode_on_every_corpus_object() {
    use stateward::commands::check::manifest::documents;
    use stateward::policy::{Kind, Resource, Review, Stage, StaticContext, evaluate_stage};
    use stateward::webhook::admission::lean;

    let Some(dir) = tiers::corpus() else { return };
    let policies = [
        Policy::baseline(),
        Policy::from_yaml(
            &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/strict.yaml"))
                .expect("strict policy"),
            "strict.yaml",
        )
        .expect("strict policy loads"),
    ];
    let mut compared = 0;
    let files = yaml_files(&dir);
    for file in files {
        let (sources, _) = read_paths(std::slice::from_ref(&file));
        for doc in sources.iter().flat_map(documents) {
            let Ok(value) = doc.value else { continue };
            let (Some(api_version), Some(kind)) = (
                value.get("apiVersion").and_then(|v| v.as_str()),
                value.get("kind").and_then(|v| v.as_str()),
            ) else {
                continue;
            };
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let Some(kind) = Kind::from_gvk(group, version, kind) else {
                continue;
            };
            let Ok(full) = Resource::decode(kind, &value) else {
                continue;
            };
            let lean = lean::from_value(kind, &value).expect("the lean decode reads it");
            let contexts = [StaticContext::default(), related(&full)];
            for (policy, context) in policies
                .iter()
                .flat_map(|p| contexts.iter().map(move |c| (p, c)))
            {
                for stage in [Stage::Admit, Stage::Mutate, Stage::Validate] {
                    let judge = |object: Resource| {
                        evaluate_stage(policy, &Review::create(object), context, stage)
                    };
                    assert_eq!(
                        judge(full.clone()),
                        judge(lean.clone()),
                        "{} #{} ({stage:?})",
                        file.display(),
                        doc.index
                    );
                }
            }
            compared += 1;
        }
    }
    assert!(compared >= 100, "compared {compared} objects");
}

//! The checker over the shared corpus of real third-party manifests (the corpus tier,
//! `STATEWARD_CORPUS`, usually `../shared/corpus`, never copied into this repository): no
//! panic, no error, every document accounted for.
#[path = "support/tiers.rs"]
mod tiers;

use stateward::commands::check::manifest::read_paths;
use stateward::commands::check::{Outcome, build_report, check_sources};
use stateward::policy::Policy;

#[test]
fn every_corpus_file_is_checked_without_errors() {
    let Some(dir) = tiers::corpus() else { return };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
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

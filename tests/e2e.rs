//! End to end against a real control plane: etcd, kube-apiserver and
//! kube-controller-manager (from `STATEWARD_K8S_ASSETS`, see tests/support/tiers.rs), the
//! real `stateward serve` binary, and the webhook configurations the Helm chart renders
//! (pointed at 127.0.0.1 and limited to namespaces labelled `stateward-e2e: on`).
//!
//! ```text
//! STATEWARD_K8S_ASSETS=/work/shared/k8s/bin STATEWARD_HELM=$PWD/.tools/bin/helm \
//!   [STATEWARD_KUBECTL=$PWD/.tools/bin/kubectl] [STATEWARD_E2E_CASES=name,name] \
//!   [STATEWARD_E2E_KEEP=1] [STATEWARD_E2E_BIN=other/stateward STATEWARD_E2E_CHART=other/chart] \
//!   cargo test --test e2e -- --nocapture
//! ```
//!
//! One `#[test]` starts everything once and runs the cases one after another, each in its
//! own namespace and its own task (a failing case does not stop the others). Every process
//! runs under a wrapper that kills it when the test process goes away; on failure the
//! temporary directory with all logs is kept and its path printed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
#[path = "e2e/audit.rs"]
mod audit;
#[path = "e2e/cases.rs"]
mod cases;
#[path = "e2e/gc.rs"]
mod gc;
#[path = "e2e/harness.rs"]
mod harness;
#[path = "e2e/k8s.rs"]
mod k8s;
#[path = "e2e/monitoring.rs"]
mod monitoring;
#[path = "e2e/native.rs"]
mod native;
#[path = "e2e/outage.rs"]
mod outage;
#[path = "e2e/pki.rs"]
mod pki;
#[path = "e2e/process.rs"]
mod process;
#[path = "support/promql.rs"]
mod promql;
#[path = "support/tiers.rs"]
mod tiers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::Env;

/// Longest a single case may take before it counts as failed.
const CASE_LIMIT: Duration = Duration::from_secs(180);

/// The temporary directory: removed after a clean run, kept (and printed) after a failure
/// or a panic.
struct WorkDir {
    dir: tempfile::TempDir,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let asked = std::env::var("STATEWARD_E2E_KEEP").is_ok_and(|v| v == "1");
        if self.keep || asked || std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!("e2e: logs kept in {}", self.dir.path().display());
        }
    }
}

#[test]
fn e2e() {
    let Some(assets) = tiers::k8s_assets() else {
        return;
    };
    let Some(helm) = tiers::helm() else {
        return;
    };
    let kubectl = std::env::var_os("STATEWARD_KUBECTL").and_then(|_| tiers::kubectl());
    let only: Option<Vec<String>> = std::env::var("STATEWARD_E2E_CASES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    let mut work = WorkDir {
        dir: tempfile::Builder::new()
            .prefix("stateward-e2e-")
            .tempdir()
            .expect("temporary directory"),
        keep: false,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let (failed, logs) = runtime.block_on(async {
        let env = Arc::new(Env::start(work.dir.path(), &assets, &helm, kubectl).await);
        let mut failed = Vec::new();
        for (name, case) in cases::all() {
            if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == name)) {
                continue;
            }
            println!("case {name} ...");
            let t = Instant::now();
            let outcome = tokio::spawn(tokio::time::timeout(CASE_LIMIT, case(env.clone()))).await;
            let secs = t.elapsed().as_secs_f64();
            match outcome {
                Ok(Ok(())) => println!("case {name} ... ok ({secs:.1} s)"),
                Ok(Err(_)) => {
                    println!(
                        "case {name} ... FAILED ({secs:.1} s): no result within {CASE_LIMIT:?}"
                    );
                    failed.push(name);
                }
                Err(e) => {
                    println!("case {name} ... FAILED ({secs:.1} s): {e}");
                    failed.push(name);
                }
            }
        }
        let logs = env.logs();
        // The cases are finished, so this is the last reference: stops every process.
        drop(env);
        (failed, logs)
    });
    drop(runtime);
    println!("e2e: total {:.1} s", started.elapsed().as_secs_f64());
    if !failed.is_empty() {
        work.keep = true;
        for log in &logs {
            eprintln!("e2e: log {log}");
        }
        drop(work);
        panic!("{} case(s) failed: {}", failed.len(), failed.join(", "));
    }
}

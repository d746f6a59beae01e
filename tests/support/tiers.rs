//! Test tiers beyond a bare Rust toolchain, each switched on by an environment variable.
//! A test whose tier is off prints one line naming what is missing and how to switch it on,
//! and passes; with `STATEWARD_REQUIRE_TIERS=1` (CI) a missing tier fails the test instead.
//! No tier downloads anything.
#![allow(dead_code)]
use std::path::PathBuf;

/// `STATEWARD_HELM`: the path of a helm v4 binary (`scripts/install-tools.sh` puts one in
/// `.tools/bin/helm`).
pub fn helm() -> Option<PathBuf> {
    file_tier(
        "STATEWARD_HELM",
        "helm",
        "STATEWARD_HELM=$PWD/.tools/bin/helm (after bash scripts/install-tools.sh)",
        |p| p.is_file(),
    )
}

/// `STATEWARD_KUBECTL`: the path of a kubectl binary (also from `scripts/install-tools.sh`).
pub fn kubectl() -> Option<PathBuf> {
    file_tier(
        "STATEWARD_KUBECTL",
        "kubectl",
        "STATEWARD_KUBECTL=$PWD/.tools/bin/kubectl (after bash scripts/install-tools.sh)",
        |p| p.is_file(),
    )
}

/// `STATEWARD_CORPUS`: a directory of third-party manifests (`../shared/corpus`).
pub fn corpus() -> Option<PathBuf> {
    file_tier(
        "STATEWARD_CORPUS",
        "the manifest corpus",
        "STATEWARD_CORPUS=../shared/corpus",
        |p| p.is_dir(),
    )
}

/// `STATEWARD_PROMETHEUS`: a directory holding `prometheus` and `promtool` (the Debian
/// package `prometheus` puts both in `/usr/bin`).
pub fn prometheus() -> Option<PathBuf> {
    file_tier(
        "STATEWARD_PROMETHEUS",
        "Prometheus (prometheus and promtool)",
        "STATEWARD_PROMETHEUS=/usr/bin (after apt-get install prometheus)",
        |p| {
            ["prometheus", "promtool"]
                .iter()
                .all(|b| p.join(b).is_file())
        },
    )
}

/// `STATEWARD_K8S_ASSETS` (or envtest's `KUBEBUILDER_ASSETS`): a directory holding `etcd`,
/// `kube-apiserver` and `kube-controller-manager`.
pub fn k8s_assets() -> Option<PathBuf> {
    let var = if std::env::var_os("STATEWARD_K8S_ASSETS").is_some() {
        "STATEWARD_K8S_ASSETS"
    } else {
        "KUBEBUILDER_ASSETS"
    };
    file_tier(
        var,
        "a Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager)",
        "STATEWARD_K8S_ASSETS=../shared/k8s/bin",
        |p| {
            ["etcd", "kube-apiserver", "kube-controller-manager"]
                .iter()
                .all(|b| p.join(b).is_file())
        },
    )
}

fn file_tier(
    var: &str,
    what: &str,
    how: &str,
    valid: impl Fn(&std::path::Path) -> bool,
) -> Option<PathBuf> {
    let value = std::env::var_os(var).map(PathBuf::from);
    let reason = match &value {
        Some(path) if valid(path) => return Some(path.clone()),
        Some(path) => format!("{var}={} does not hold {what}", path.display()),
        None => format!("{var} is not set"),
    };
    let line = format!("skipped: needs {what}: {reason}; enable with {how}");
    if std::env::var("STATEWARD_REQUIRE_TIERS").is_ok_and(|v| v == "1") {
        panic!("{line} (STATEWARD_REQUIRE_TIERS=1 makes a skipped tier a failure)");
    }
    // Straight to the process's stderr: libtest captures `eprintln!` of passing tests.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
    None
}

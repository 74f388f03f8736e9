#!/usr/bin/env bash
# Lint the Helm chart and validate what it renders, once per value set:
#   helm lint --strict, helm template, kubernetes-validate --strict (unknown fields are errors).
# Usage: deploy/lint-helm.sh <chart-dir> <values-dir> <out-dir>
# Env: HELM, KUBERNETES_VALIDATE, KUBE_VERSION (default 1.35.0), PYTHON (with PyYAML and jsonschema).
# The chart's own values.yaml is always one of the sets ("default"); every values-dir/*.yaml is another.
set -euo pipefail
chart=${1:?chart dir}
values_dir=${2:?values dir}
out=${3:?output dir}
helm=${HELM:-helm}
kv=${KUBERNETES_VALIDATE:-kubernetes-validate}
kube_version=${KUBE_VERSION:-1.35.0}
mkdir -p "$out"

sets=(default)
for f in "$values_dir"/*.yaml; do
  [[ -e "$f" ]] && sets+=("$(basename "$f" .yaml)")
done

failed=0
for set in "${sets[@]}"; do
  args=()
  [[ "$set" != default ]] && args=(-f "$values_dir/$set.yaml")
  rendered="$out/$set.yaml"
  if ! "$helm" lint --strict --quiet "$chart" "${args[@]}" --kube-version "$kube_version" >"$out/$set.lint.log" 2>&1; then
    echo "lint-helm: helm lint --strict FAILED for value set '$set':" >&2
    cat "$out/$set.lint.log" >&2
    failed=1
    continue
  fi
  if ! "$helm" template imagemesh "$chart" "${args[@]}" --namespace imagemesh --kube-version "$kube_version" \
       >"$rendered" 2>"$out/$set.template.log"; then
    echo "lint-helm: helm template FAILED for value set '$set':" >&2
    cat "$out/$set.template.log" >&2
    failed=1
    continue
  fi
  # --strict: properties the schema does not know are errors. Custom resources (ServiceMonitor) have no
  # bundled schema and are reported as warnings, so they are listed here for the reader.
  if ! "$kv" --strict --quiet -k "$kube_version" "$rendered" >"$out/$set.validate.log" 2>&1; then
    echo "lint-helm: kubernetes-validate --strict (Kubernetes $kube_version) FAILED for value set '$set':" >&2
    grep -v '^WARN .*Couldn.t find schema' "$out/$set.validate.log" >&2 || true
    failed=1
    continue
  fi
  # Custom resources (ServiceMonitor) against the schemas vendored in deploy/validate_crds.py, strictly too.
  if ! "${PYTHON:-python3}" "$(dirname "$0")/validate_crds.py" "$rendered" >"$out/$set.crds.log" 2>&1; then
    echo "lint-helm: custom resource validation FAILED for value set '$set':" >&2
    cat "$out/$set.crds.log" >&2
    failed=1
    continue
  fi
  kinds=$(grep -c '^kind:' "$rendered" || true)
  crds=$(grep -c "Couldn't find schema" "$out/$set.validate.log" || true)
  echo "lint-helm: $set: lint ok, $kinds objects rendered, validated against Kubernetes $kube_version" \
       "(+ $crds custom resources against deploy/validate_crds.py)"
done
exit "$failed"

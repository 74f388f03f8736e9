"""Generate helm/imagemesh/values.schema.json from values.yaml, so a misspelt value fails `helm lint`.

Objects in values.yaml are closed (additionalProperties: false) unless they are free-form Kubernetes
fragments or user maps (FREE_FORM); leaf types come from the defaults, widened where Kubernetes accepts
more than one type (INT_OR_STRING). `python deploy/gen_values_schema.py --check` fails when the committed
schema is stale (tests/deploy runs it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[1] / "helm" / "imagemesh"
SERVICES = ("gateway", "orchestrator", "generate", "backgroundRemoval", "upscale")

# Paths (dot-separated, `*` = any service block) whose content is passed through to Kubernetes or is a
# user-defined map: any keys allowed.
FREE_FORM = {
    "commonLabels",
    "podAnnotations",
    "imagePullSecrets",
    "serviceAccount.annotations",
    "podSecurityContext",
    "containerSecurityContext",
    "*.resources",
    "*.nodeSelector",
    "*.tolerations",
    "*.affinity",
    "*.extraEnv",
    "*.service.annotations",
    "orchestrator.workflows",
    "orchestrator.extraClients",
    "generate.registry",
    "backgroundRemoval.catalog",
    "postgresql.bundled.resources",
    "postgresql.bundled.nodeSelector",
    "postgresql.bundled.tolerations",
    "ingress.annotations",
    "ingress.hosts",
    "ingress.tls",
    "metrics.serviceMonitor.labels",
    "networkPolicy.gatewayFrom",
    "networkPolicy.metricsFrom",
    "imageStore.pvc.accessModes",
}
INT_OR_STRING = {"*.pdb.maxUnavailable", "*.pdb.minAvailable", "generate.autoscaling.queueDepth.averageValue"}
ENUMS = {
    "models.source": ["image", "pvc"],
    "imageStore.type": ["pvc", "emptyDir", "objectStore"],
    "image.pullPolicy": ["Always", "IfNotPresent", "Never"],
    "logLevel": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
    "imageStore.objectStore.addressingStyle": ["auto", "path", "virtual"],
}
# Strings whose shape the services would otherwise only reject at start-up (empty = unset).
PATTERNS = {
    "imageStore.objectStore.url": "^(s3://[^/]+(/.*)?)?$",
    "gateway.publicBaseUrl": "^(https?://[^/]+)?$",
    "imageStore.objectStore.endpointUrl": "^(https?://.+)?$",
    "imageStore.objectStore.publicEndpointUrl": "^(https?://.+)?$",
}
# Keys allowed although values.yaml does not set them.
OPTIONAL = {
    "*.image": {"registry": {"type": "string"}, "pullPolicy": {"enum": ENUMS["image.pullPolicy"]}},
    "*.pdb": {"minAvailable": {"type": ["integer", "string"]}},
    "*.probes.startup": {"timeoutSeconds": {"type": "integer", "minimum": 1}},
    "*.probes.readiness": {"timeoutSeconds": {"type": "integer", "minimum": 1}},
    "*.probes.liveness": {"timeoutSeconds": {"type": "integer", "minimum": 1}},
    "*": {"terminationGracePeriodSeconds": {"type": "integer", "minimum": 0}},
}


def generic(path: str) -> str:
    head, _, rest = path.partition(".")
    return f"*.{rest}" if head in SERVICES and rest else ("*" if head in SERVICES else path)


def schema_for(value: object, path: str) -> dict:
    key = generic(path)
    if path in FREE_FORM or key in FREE_FORM:
        return {"type": "array"} if isinstance(value, list) else {"type": "object"}
    if path in INT_OR_STRING or key in INT_OR_STRING:
        return {"type": ["integer", "string"]}
    if path in ENUMS:
        return {"enum": ENUMS[path]}
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer", "minimum": 0}
    if isinstance(value, str):
        return {"type": "string", "pattern": PATTERNS[path]} if path in PATTERNS else {"type": "string"}
    if isinstance(value, list):
        return {"type": "array"}
    if isinstance(value, dict):
        props = {k: schema_for(v, f"{path}.{k}" if path else k) for k, v in value.items()}
        props.update(OPTIONAL.get(key, {}))
        return {"type": "object", "additionalProperties": False, "properties": props}
    raise TypeError(f"{path}: unsupported default {value!r}")


def build() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "imagemesh chart values",
        **schema_for(values, ""),
    }
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    target = CHART / "values.schema.json"
    text = build()
    if "--check" in argv:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is stale: run python deploy/gen_values_schema.py", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

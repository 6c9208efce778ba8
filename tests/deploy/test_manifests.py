"""deploy/helm and deploy/kustomize: rendered by real Helm (Helm v4's Go library through
helm-python-sdk) and by `kubectl kustomize`, they produce the same objects; those objects keep the
promises (2 replicas, anti-affinity, gRPC probes, non-root, read-only root, least-privilege RBAC,
valid config), and the apiserver accepts every one of them (`kubectl apply --dry-run=server`).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import crds, tools
from tests.support.kubeenv import KubeEnv

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "prewarm"
BASE = ROOT / "deploy" / "kustomize" / "base"
EXAMPLE = ROOT / "deploy" / "kustomize" / "example"
RBAC = ROOT / "deploy" / "rbac"
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
EXAMPLE_VALUES = {"tls": {"enabled": True}, "example": {"enabled": True}}
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version")
CORE_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "PriorityClass",
              "ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
Obj = dict[str, Any]


def helm_render(sdk: Path, values: Obj | None = None, *, name: str = "prewarm", namespace: str = "prewarm",
                hooks: bool = False) -> list[Obj]:
    """The objects `helm install` creates; with ``hooks``, its hooks instead (e.g. the `helm test` Pod)."""
    answer = tools.helm(sdk, {"action": "render", "chart": str(CHART), "values": values or {}, "name": name,
                              "namespace": namespace})
    docs: list[Obj] = []
    for path, text in sorted(answer["manifests"].items()):
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return [d for d in docs if ("helm.sh/hook" in d["metadata"].get("annotations", {})) == hooks]


def kustomize(kubectl: str, directory: Path) -> list[Obj]:
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def key(obj: Obj) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def normalized(obj: Obj) -> Obj:
    """Helm's bookkeeping labels dropped; config.yaml compared as data, not text."""
    obj = copy.deepcopy(obj)
    labels = obj["metadata"].get("labels", {})
    for label in HELM_ONLY_LABELS:
        labels.pop(label, None)
    if obj["kind"] == "ConfigMap" and "config.yaml" in obj.get("data", {}):
        obj["data"]["config.yaml"] = yaml.safe_load(obj["data"]["config.yaml"])
    return obj


def by_key(objs: list[Obj]) -> dict[tuple[str, str, str], Obj]:
    out = {key(o): normalized(o) for o in objs}
    assert len(out) == len(objs), "duplicate objects"
    return out


def find(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    return next(o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name))


@pytest.fixture(scope="module")
def helm_default(helm_sdk: Path) -> list[Obj]:
    return helm_render(helm_sdk)


@pytest.fixture(scope="module")
def helm_example(helm_sdk: Path) -> list[Obj]:
    return helm_render(helm_sdk, EXAMPLE_VALUES)


# --- Helm and kustomize render the same objects ------------------------------------------------


@pytest.mark.parametrize(("directory", "values"), [
    pytest.param(BASE, {}, id="base-vs-default-values"),
    pytest.param(EXAMPLE, EXAMPLE_VALUES, id="example-vs-tls-and-example-values"),
])
def test_helm_and_kustomize_render_the_same_objects(helm_sdk: Path, kubectl: str, directory: Path,
                                                    values: Obj) -> None:
    helm_objs, kustomize_objs = by_key(helm_render(helm_sdk, values)), by_key(kustomize(kubectl, directory))
    assert sorted(helm_objs) == sorted(kustomize_objs)
    for k, obj in helm_objs.items():
        assert obj == kustomize_objs[k], f"{k} differs:\nhelm:      {json.dumps(obj, sort_keys=True)}\n" \
                                         f"kustomize: {json.dumps(kustomize_objs[k], sort_keys=True)}"


def test_default_render_has_every_object(helm_default: list[Obj], helm_example: list[Obj]) -> None:
    kinds = {o["kind"] for o in helm_default}
    assert kinds == CORE_KINDS | {"ServiceMonitor", "PrometheusRule"}
    extra = {key(o) for o in helm_example} - {key(o) for o in helm_default}
    assert extra == {("Deployment", "llm", "vllm-llama3-8b"), ("ScaledObject", "llm", "vllm-llama3-8b"),
                     ("TriggerAuthentication", "llm", "prewarm-mtls")}


def test_rbac_is_the_shipped_least_privilege_rbac(helm_default: list[Obj], kubectl: str) -> None:
    shipped = by_key(kustomize(kubectl, RBAC))
    rendered = by_key(helm_default)
    for k, obj in shipped.items():
        mine = copy.deepcopy(rendered[k])
        mine["metadata"]["labels"].pop("app.kubernetes.io/instance")
        assert mine == obj, k


def test_generated_copies_are_current() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "deploy" / "sync.py"), "--check"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout


# --- the objects keep their promises ----------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "mtls"])
def test_deployment_promises(helm_sdk: Path, tls: bool) -> None:
    objs = helm_render(helm_sdk, {"tls": {"enabled": tls}})
    deployment = find(objs, "Deployment", "prewarm")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    terms = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert terms[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] > 0
    sc = container["securityContext"]
    assert sc == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["args"][0] == "serve" and "--config=/etc/prewarm/config/config.yaml" in container["args"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts  # the only writable path (read-only root)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        kind = "tcpSocket" if tls else "grpc"
        assert kind in container[probe], (probe, container[probe])
    if tls:
        assert "--tls-client-ca=/etc/prewarm/tls/ca.crt" in container["args"]
        assert "/etc/prewarm/tls" in mounts
    else:
        assert container["readinessProbe"]["grpc"] == {"port": 9090, "service": "externalscaler.ExternalScaler"}
    service = find(objs, "Service", "prewarm")
    assert service["spec"]["clusterIP"] == "None"
    assert {p["name"] for p in service["spec"]["ports"]} == {"grpc", "metrics"}
    assert find(objs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert find(objs, "PriorityClass")["value"] < 0


def test_prometheus_rule_is_the_tested_rules_file(helm_default: list[Obj]) -> None:
    assert find(helm_default, "PrometheusRule")["spec"] == yaml.safe_load(RULES.read_text())


@pytest.mark.parametrize("values", [
    pytest.param({}, id="default"),
    pytest.param({"config": {"nodePools": [{"name": "gpu-a", "gpusPerNode": 8, "maxBalloonGpus": 8},
                                           {"name": "gpu-b", "gpusPerNode": 4, "maxBalloonGpus": 4}],
                             "models": [{"name": "m", "capacityPerReplica": 4, "nodePool": "gpu-b"}]}},
                 id="two-pools"),
])
def test_config_is_valid_and_rbac_follows_it(helm_sdk: Path, tmp_path: Path, values: Obj) -> None:
    objs = helm_render(helm_sdk, values, name="scaler", namespace="inference")
    config = find(objs, "ConfigMap", "scaler-prewarm-config")["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(config)
    check = subprocess.run([sys.executable, "-m", "scaler", "check-config", str(path)], capture_output=True,
                           text=True, cwd=ROOT, check=False, timeout=60)
    assert check.returncode == 0 and "warning" not in check.stderr, check.stdout + check.stderr
    parsed = yaml.safe_load(config)
    assert parsed["kubernetes"] == {"namespace": "inference", "configMap": "scaler-prewarm-config",
                                    "stateConfigMap": "scaler-prewarm-state", "leaseName": "scaler-prewarm-leader"}
    role = find(objs, "Role", "scaler-prewarm")
    names = {n for rule in role["rules"] for n in rule.get("resourceNames", [])}
    assert {"scaler-prewarm-config", "scaler-prewarm-state", "scaler-prewarm-leader"} <= names
    for pool in parsed["nodePools"]:
        assert pool["balloon"]["namespace"] == "inference"
        assert f"prewarm-balloon-{pool['name']}" in names


def test_kustomize_config_is_valid(tmp_path: Path) -> None:
    check = subprocess.run([sys.executable, "-m", "scaler", "check-config", str(BASE / "config.yaml")],
                           capture_output=True, text=True, cwd=ROOT, check=False, timeout=60)
    assert check.returncode == 0 and "warning" not in check.stderr, check.stdout + check.stderr


def test_values_schema_rejects_a_typo(helm_sdk: Path) -> None:
    with pytest.raises(RuntimeError, match=r"replicaCuont|additional"):
        helm_render(helm_sdk, {"replicaCuont": 3})
    with pytest.raises(RuntimeError, match="replicaCount"):
        helm_render(helm_sdk, {"replicaCount": "two"})


def test_balloon_namespace_other_than_release_is_refused(helm_sdk: Path) -> None:
    pools = [{"name": "gpu-a", "gpusPerNode": 8, "maxBalloonGpus": 8, "balloon": {"namespace": "elsewhere"}}]
    with pytest.raises(RuntimeError, match=r"balloon\.namespace must be the release namespace"):
        helm_render(helm_sdk, {"config": {"nodePools": pools}})


def test_helm_lint_is_clean(helm_sdk: Path) -> None:
    result = tools.helm(helm_sdk, {"action": "lint", "chart": str(CHART)})
    assert not result["errors"], result
    problems = [m for m in result["messages"] if m["severity"] > 1]  # 1: INFO
    assert not problems, problems


def test_grafana_dashboard_configmap(helm_sdk: Path) -> None:
    objs = helm_render(helm_sdk, {"grafanaDashboard": {"enabled": True}})
    cm = find(objs, "ConfigMap", "prewarm-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["prewarm.json"]) == json.loads((ROOT / "deploy" / "grafana" / "prewarm.json").read_text())


# --- the apiserver accepts every object ----------------------------------------------------------------


def for_apiserver_1_20(objs: list[Obj]) -> list[Obj]:
    """The test apiserver is v1.20 (built from Debian's source): policy/v1 PodDisruptionBudget and
    gRPC probes came later (1.21, 1.24). Only those two are lowered, field for field."""
    out = copy.deepcopy(objs)
    for obj in out:
        if obj["kind"] == "PodDisruptionBudget":
            obj["apiVersion"] = "policy/v1beta1"
        for container in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if "grpc" in container.get(probe, {}):
                    container[probe]["tcpSocket"] = {"port": container[probe].pop("grpc")["port"]}
    return out


def kubectl_apply(kubectl: str, env: KubeEnv, objs: list[Obj], *, dry_run: bool) -> str:
    cmd = [kubectl, "--kubeconfig", str(env.admin_kubeconfig), "apply", "-f", "-"]
    if dry_run:
        cmd.append("--dry-run=server")
    result = subprocess.run(cmd, input=yaml.safe_dump_all(objs), capture_output=True, text=True, check=False,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def apiserver(kube: KubeEnv, kubectl: str) -> KubeEnv:
    namespaces = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in ("prewarm", "llm")]
    kubectl_apply(kubectl, kube, namespaces, dry_run=False)
    return kube


@pytest.mark.slow
@pytest.mark.kube
@pytest.mark.parametrize("source", ["helm", "kustomize"])
def test_apiserver_accepts_every_core_object(apiserver: KubeEnv, kubectl: str, helm_example: list[Obj],
                                             source: str) -> None:
    objs = helm_example if source == "helm" else kustomize(kubectl, EXAMPLE)
    core = [o for o in objs if o["kind"] in CORE_KINDS]
    assert {o["kind"] for o in core} == CORE_KINDS
    out = kubectl_apply(kubectl, apiserver, for_apiserver_1_20(core), dry_run=True)
    accepted = [line for line in out.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(core), out


@pytest.mark.slow
@pytest.mark.kube
def test_apiserver_refuses_a_broken_object(apiserver: KubeEnv, kubectl: str, helm_example: list[Obj]) -> None:
    """The dry run has teeth: a non-integer replica count and a Service port out of range fail."""
    objs = for_apiserver_1_20(helm_example)
    deployment = copy.deepcopy(find(objs, "Deployment", "prewarm"))
    deployment["spec"]["replicas"] = "two"
    service = copy.deepcopy(find(objs, "Service", "prewarm"))
    service["spec"]["ports"][0]["port"] = 70000
    for obj in (deployment, service):
        cmd = [kubectl, "--kubeconfig", str(apiserver.admin_kubeconfig), "apply", "--dry-run=server", "-f", "-"]
        result = subprocess.run(cmd, input=yaml.safe_dump(obj), capture_output=True, text=True, check=False, timeout=60)
        assert result.returncode != 0, result.stdout


def test_custom_resources_match_their_schemas(helm_example: list[Obj]) -> None:
    custom = [o for o in helm_example if o["kind"] not in CORE_KINDS]
    assert {o["kind"] for o in custom} == {"ServiceMonitor", "PrometheusRule", "ScaledObject", "TriggerAuthentication"}
    for obj in custom:
        assert not crds.validate(obj), (key(obj), crds.validate(obj))
    scaled = copy.deepcopy(find(helm_example, "ScaledObject"))
    del scaled["spec"]["triggers"]
    scaled["spec"]["minReplicaCount"] = -1
    assert len(crds.validate(scaled)) == 2
    # KEDA resolves the TriggerAuthentication by name in the ScaledObject's namespace
    auth = find(helm_example, "TriggerAuthentication")
    trigger = find(helm_example, "ScaledObject")["spec"]["triggers"][0]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert {p["parameter"] for p in auth["spec"]["secretTargetRef"]} == {"caCert", "tlsClientCert", "tlsClientKey"}
    model = yaml.safe_load(find(helm_example, "ConfigMap", "prewarm-config")["data"]["config.yaml"])["models"][0]
    assert trigger["metadata"]["model"] == model["name"]
    assert model["target"] == {"namespace": "llm", "deployment": find(helm_example, "ScaledObject")["spec"]["scaleTargetRef"]["name"]}

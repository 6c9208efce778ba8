"""A real kube-apiserver + etcd for tests (``scripts/kube-env.sh``), and a player for pods' and nodes' lives.

There is no scheduler, kubelet or controller-manager: the test plays them by writing through the API
what they would write - a pod's binding to a node, its conditions (with ``lastTransitionTime``) via
the status subresource, a node's allocatable GPUs and Ready condition. ``creationTimestamp`` is the
server's (second precision), so timelines are written relative to it.

The daemon side always talks with the ServiceAccount token (``system:serviceaccount:prewarm:prewarm``)
that the shipped ``deploy/rbac`` bindings grant; the harness uses the admin token.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from scaler.edges.kubernetes.api import Api, KubeApiError, Obj, parse_time

ROOT = Path(__file__).resolve().parents[2]
ENV_SCRIPT = ROOT / "scripts" / "kube-env.sh"
RBAC_DIR = ROOT / "deploy" / "rbac"
DAEMON_NAMESPACE = "prewarm"
GPU = "nvidia.com/gpu"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def cached_binary() -> Path | None:
    """The cached kube-apiserver, or None when it has not been built."""
    result = subprocess.run(["bash", str(ENV_SCRIPT), "path"], capture_output=True, text=True,
                            check=False)
    path = result.stdout.strip()
    return Path(path) if result.returncode == 0 and path else None


def build() -> tuple[Path | None, str]:
    """Install missing packages and build (once; 5-10 min). (binary or None, output tail)."""
    result = subprocess.run(["bash", str(ENV_SCRIPT), "build"], capture_output=True, text=True,
                            check=False, timeout=3600)
    tail = (result.stdout + result.stderr)[-3000:]
    return cached_binary(), tail


def toolchain_ready() -> bool:
    return cached_binary() is not None and subprocess.run(
        ["bash", "-c", "command -v etcd && command -v openssl && command -v curl"],
        capture_output=True, check=False).returncode == 0


@dataclass
class KubeEnv:
    dir: Path
    server: str
    start_seconds: float
    """Wall time from `kube-env.sh start` to /readyz ok (etcd included)."""
    _apis: list[Api] = field(default_factory=list)

    @property
    def admin_kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def daemon_kubeconfig(self) -> Path:
        """The ServiceAccount user the shipped RBAC binds (never the admin)."""
        return self.dir / "prewarm.kubeconfig"

    def admin(self) -> Api:
        api = Api.connect(str(self.admin_kubeconfig))
        self._apis.append(api)
        return api

    def daemon(self) -> Api:
        api = Api.connect(str(self.daemon_kubeconfig))
        self._apis.append(api)
        return api

    def close_apis(self) -> None:
        for api in self._apis:
            api.close()
        self._apis.clear()


@contextmanager
def running(directory: Path) -> Iterator[KubeEnv]:
    """Start etcd + kube-apiserver in ``directory``; stop both (and remove etcd's data) after."""
    began = time.monotonic()
    result = subprocess.run(["bash", str(ENV_SCRIPT), "start", str(directory)], capture_output=True,
                            text=True, check=False, timeout=180)
    if result.returncode != 0:
        subprocess.run(["bash", str(ENV_SCRIPT), "stop", str(directory)], check=False, timeout=60)
        raise RuntimeError(f"kube-env.sh start failed:\n{result.stderr[-3000:]}")
    env_vars = dict(line.split("=", 1) for line in (directory / "env").read_text().splitlines() if "=" in line)
    env = KubeEnv(dir=directory, server=env_vars["SERVER"], start_seconds=time.monotonic() - began)
    try:
        yield env
    finally:
        env.close_apis()
        subprocess.run(["bash", str(ENV_SCRIPT), "stop", str(directory)], check=False, timeout=60)


# --- applying manifests (what `kubectl apply` does for the kinds deploy/rbac ships) -------------

_PATHS = {
    ("v1", "Namespace"): "/api/v1/namespaces",
    ("v1", "ServiceAccount"): "/api/v1/namespaces/{ns}/serviceaccounts",
    ("rbac.authorization.k8s.io/v1", "Role"): "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"):
        "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"):
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    ("scheduling.k8s.io/v1", "PriorityClass"): "/apis/scheduling.k8s.io/v1/priorityclasses",
}


def manifests(directory: Path = RBAC_DIR) -> list[Obj]:
    """Every object of the kustomization's resources, in its order."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[Obj] = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((directory / name).read_text()) if d]
    return docs


def apply(api: Api, objects: list[Obj]) -> None:
    for obj in objects:
        template = _PATHS[(obj["apiVersion"], obj["kind"])]
        path = template.format(ns=obj["metadata"].get("namespace", ""))
        ensure(api, path, obj)


def ensure(api: Api, collection: str, obj: Obj) -> Obj:
    try:
        return api.create(collection, obj)
    except KubeApiError as exc:
        if not exc.conflict:
            raise
        return api.get(f"{collection}/{obj['metadata']['name']}")


def ensure_namespace(api: Api, name: str) -> None:
    ensure(api, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def delete(api: Api, path: str) -> None:
    """Delete now (gracePeriodSeconds=0: no kubelet will ever confirm a graceful delete)."""
    try:
        api.request("DELETE", path, query={"gracePeriodSeconds": "0"})
    except KubeApiError as exc:
        if not exc.not_found:
            raise


def delete_all(api: Api, collection: str, *, label_selector: str = "") -> None:
    query = {"gracePeriodSeconds": "0"}
    if label_selector:
        query["labelSelector"] = label_selector
    api.request("DELETE", collection, query=query)


# --- playing the lives of pods and nodes ----------------------------------------------------------


def rfc3339(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class Player:
    """Plays the scheduler, kubelets and the node autoscaler through the API (admin token)."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def deployment(self, namespace: str, name: str, labels: Mapping[str, str], *, replicas: int = 0) -> Obj:
        body = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)},
                                  "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai"}]}}},
        }
        return self.api.create(f"/apis/apps/v1/namespaces/{namespace}/deployments", body)

    def pod(self, namespace: str, name: str, labels: Mapping[str, str], *, gpus: int = 1,
            node: str | None = None) -> Obj:
        """A new Pending pod (``creationTimestamp`` is now, by the server's clock)."""
        container: dict[str, Any] = {"name": "vllm", "image": "vllm/vllm-openai"}
        if gpus:
            container["resources"] = {"requests": {GPU: str(gpus)}, "limits": {GPU: str(gpus)}}
        spec: dict[str, Any] = {"containers": [container]}
        if node is not None:
            spec["nodeName"] = node
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)}, "spec": spec}
        return self.api.create(f"/api/v1/namespaces/{namespace}/pods", body)

    def bind(self, namespace: str, name: str, node: str) -> None:
        """What the scheduler does: POST a Binding."""
        self.api.create(f"/api/v1/namespaces/{namespace}/pods/{name}/binding", {
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        })

    def pod_status(self, namespace: str, name: str, *, scheduled: float | None = None,
                   containers_ready: float | None = None, ready: float | None = None,
                   phase: str | None = None, restarts: int = 0) -> Obj:
        """What the kubelet writes: conditions with their transition times (Unix seconds)."""
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        pod = self.api.get(path)
        conditions = []
        for kind, at in (("PodScheduled", scheduled), ("Initialized", scheduled),
                         ("ContainersReady", containers_ready), ("Ready", ready)):
            if at is not None:
                conditions.append({"type": kind, "status": "True", "lastTransitionTime": rfc3339(at)})
        running = ready is not None
        pod["status"] = {
            "phase": phase or ("Running" if running else "Pending"),
            "conditions": conditions,
            "containerStatuses": [{
                "name": "vllm", "image": "vllm/vllm-openai", "imageID": "", "ready": running,
                "restartCount": restarts, "started": running,
                "state": {"running": {"startedAt": rfc3339(scheduled or time.time())}} if running
                else {"waiting": {"reason": "ContainerCreating"}},
            }],
        }
        return self.api.replace(path + "/status", pod)

    def node(self, name: str, labels: Mapping[str, str]) -> Obj:
        """A new node, not Ready yet (as a node autoscaler creates it)."""
        return self.api.create("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                                  "metadata": {"name": name, "labels": dict(labels)}})

    def node_ready(self, name: str, *, at: float, gpus: int) -> Obj:
        """What the kubelet and the GPU device plugin write once the node is up."""
        path = f"/api/v1/nodes/{name}"
        node = self.api.get(path)
        stamp = rfc3339(at)
        node["status"] = {
            "capacity": {GPU: str(gpus), "cpu": "96", "memory": "1Ti", "pods": "110"},
            "allocatable": {GPU: str(gpus), "cpu": "95", "memory": "1000Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status",
                            "lastTransitionTime": stamp, "lastHeartbeatTime": stamp}],
        }
        return self.api.replace(path + "/status", node)

    def created(self, obj: Obj) -> float:
        value = parse_time(obj["metadata"]["creationTimestamp"])
        assert value is not None
        return value


def wait_until(check: Any, *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``check()`` until true: the only waiting these tests do (for watches to deliver)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


async def eventually(check: Any, *, timeout: float, what: str, interval: float = 0.02) -> None:
    """Async ``wait_until``: lets the watches deliver (they hand events to this event loop)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        await asyncio.sleep(interval)

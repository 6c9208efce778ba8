"""The shipped deploy/rbac roles: enough for the daemon (every other tests/kube test runs with them),
and nothing beyond - each request below is one the daemon never needs, made with its token.

The narrowed grants in particular: the daemon cannot create a Deployment (not even a balloon: the
chart creates them), cannot rewrite a balloon's pod template (that would mount any Secret), can
scale only the balloons by name, and reads pods only in the models' namespaces (and its own,
for the balloon pods) - never cluster-wide.

The token authenticates as ``system:serviceaccount:prewarm:prewarm`` (kube-env.sh tokens.csv), so the
shipped RoleBinding/ClusterRoleBinding apply to it exactly as to a pod of that ServiceAccount.
"""

from __future__ import annotations

from typing import Any

import pytest

from scaler.edges.kubernetes.api import Api, KubeApiError, Obj
from tests.kube.common import MODEL_NAMESPACE
from tests.support.kubeenv import KubeEnv, Player

pytestmark = [pytest.mark.kube]

DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
              "spec": {"selector": {"matchLabels": {"a": "b"}},
                       "template": {"metadata": {"labels": {"a": "b"}},
                                    "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}}

# (id, method, path, body): requests the shipped roles must refuse.
DENIED: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("scale-the-model-itself", "PATCH", f"/apis/apps/v1/namespaces/{MODEL_NAMESPACE}/deployments/vllm-llama/scale",
     {"spec": {"replicas": 0}}),
    ("patch-the-model-deployment", "PATCH", f"/apis/apps/v1/namespaces/{MODEL_NAMESPACE}/deployments/vllm-llama",
     {"spec": {"replicas": 0}}),
    ("create-deployment-elsewhere", "POST", f"/apis/apps/v1/namespaces/{MODEL_NAMESPACE}/deployments", DEPLOYMENT),
    ("create-balloon-deployment", "POST", "/apis/apps/v1/namespaces/prewarm/deployments",
     {**DEPLOYMENT, "metadata": {"name": "prewarm-balloon-gpu-h100"}}),
    ("create-any-deployment-in-own-namespace", "POST", "/apis/apps/v1/namespaces/prewarm/deployments", DEPLOYMENT),
    ("rewrite-the-balloon-template", "PATCH", "/apis/apps/v1/namespaces/prewarm/deployments/prewarm-balloon-gpu-h100",
     {"spec": {"template": {"spec": {"volumes": [{"name": "s", "secret": {"secretName": "any"}}]}}}}),
    ("replace-the-balloon", "PUT", "/apis/apps/v1/namespaces/prewarm/deployments/prewarm-balloon-gpu-h100",
     {**DEPLOYMENT, "metadata": {"name": "prewarm-balloon-gpu-h100"}}),
    ("patch-a-non-balloon-deployment", "PATCH", "/apis/apps/v1/namespaces/prewarm/deployments/prewarm",
     {"spec": {"replicas": 0}}),
    ("scale-another-pools-balloon", "PATCH",
     "/apis/apps/v1/namespaces/prewarm/deployments/prewarm-balloon-other/scale", {"spec": {"replicas": 1}}),
    ("read-another-deployment-in-own-namespace", "GET", "/apis/apps/v1/namespaces/prewarm/deployments/prewarm", None),
    ("list-pods-cluster-wide", "GET", "/api/v1/pods", None),
    ("list-pods-in-another-namespace", "GET", "/api/v1/namespaces/kube-system/pods", None),
    ("get-a-pod-in-another-namespace", "GET", "/api/v1/namespaces/default/pods/any", None),
    ("read-deployments-in-another-namespace", "GET", "/apis/apps/v1/namespaces/default/deployments/any", None),
    ("list-deployments-in-a-model-namespace", "GET", f"/apis/apps/v1/namespaces/{MODEL_NAMESPACE}/deployments",
     None),
    ("scale-another-deployment-in-own-namespace", "PATCH",
     "/apis/apps/v1/namespaces/prewarm/deployments/prewarm/scale", {"spec": {"replicas": 0}}),
    ("delete-own-balloons", "DELETE", "/apis/apps/v1/namespaces/prewarm/deployments/prewarm-balloon-gpu-h100", None),
    ("list-deployments", "GET", "/apis/apps/v1/deployments", None),
    ("create-pods", "POST", f"/api/v1/namespaces/{MODEL_NAMESPACE}/pods",
     {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
      "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    ("delete-pods", "DELETE", f"/api/v1/namespaces/{MODEL_NAMESPACE}/pods", None),
    ("evict-or-patch-nodes", "PATCH", "/api/v1/nodes/any", {"spec": {"unschedulable": True}}),
    ("read-secrets", "GET", "/api/v1/namespaces/prewarm/secrets", None),
    ("read-configmaps-elsewhere", "GET", f"/api/v1/namespaces/{MODEL_NAMESPACE}/configmaps", None),
    ("list-all-configmaps-in-own-namespace", "GET", "/api/v1/namespaces/prewarm/configmaps", None),
    ("overwrite-the-config", "PUT", "/api/v1/namespaces/prewarm/configmaps/prewarm-config",
     {**CM, "metadata": {"name": "prewarm-config"}}),
    ("write-another-configmap", "PUT", "/api/v1/namespaces/prewarm/configmaps/other",
     {**CM, "metadata": {"name": "other"}}),
    ("create-configmap-elsewhere", "POST", f"/api/v1/namespaces/{MODEL_NAMESPACE}/configmaps", CM),
    ("read-events", "GET", "/api/v1/namespaces/prewarm/events", None),
    ("create-events-elsewhere", "POST", f"/api/v1/namespaces/{MODEL_NAMESPACE}/events",
     {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "x"},
      "involvedObject": {"kind": "Pod", "name": "x", "namespace": MODEL_NAMESPACE}}),
    ("take-another-lease", "PUT", "/apis/coordination.k8s.io/v1/namespaces/prewarm/leases/other",
     {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "other"}, "spec": {}}),
    ("delete-the-lease", "DELETE", "/apis/coordination.k8s.io/v1/namespaces/prewarm/leases/prewarm-leader", None),
    ("create-leases-elsewhere", "POST", f"/apis/coordination.k8s.io/v1/namespaces/{MODEL_NAMESPACE}/leases",
     {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "x"}, "spec": {}}),
    ("mint-a-priority-class", "POST", "/apis/scheduling.k8s.io/v1/priorityclasses",
     {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "x"},
      "value": 1000000}),
    ("read-other-priority-classes", "GET", "/apis/scheduling.k8s.io/v1/priorityclasses", None),
    ("escalate-rbac", "POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/prewarm/rolebindings",
     {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "x"},
      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
      "subjects": [{"kind": "ServiceAccount", "name": "prewarm", "namespace": "prewarm"}]}),
    ("create-namespaces", "POST", "/api/v1/namespaces",
     {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}),
]


@pytest.mark.parametrize(("method", "path", "body"), [pytest.param(*d[1:], id=d[0]) for d in DENIED])
def test_the_daemon_token_is_denied_beyond_the_shipped_roles(
    kube: KubeEnv, method: str, path: str, body: dict[str, Any] | None
) -> None:
    daemon = kube.daemon()
    content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
    with pytest.raises(KubeApiError) as denied:
        daemon.request(method, path, body=body, content_type=content_type)
    assert denied.value.status == 403, denied.value


def test_the_daemon_token_can_do_what_the_daemon_needs(
    kube: KubeEnv, player: Player, admin: Api, balloon: Obj
) -> None:
    player.deployment(MODEL_NAMESPACE, "vllm-llama", {"app": "vllm-llama"})
    daemon = kube.daemon()
    for namespace in (MODEL_NAMESPACE, "prewarm"):  # the models' pods, the balloon pods
        daemon.list_all(f"/api/v1/namespaces/{namespace}/pods")
        daemon.open_watch(f"/api/v1/namespaces/{namespace}/pods", {}, timeout_seconds=1).release_conn()
    daemon.list_all("/api/v1/nodes")
    daemon.get(f"/apis/apps/v1/namespaces/{MODEL_NAMESPACE}/deployments/vllm-llama")
    daemon.get("/apis/scheduling.k8s.io/v1/priorityclasses/prewarm-balloon")
    # The config ConfigMap is watchable by name (fieldSelector metadata.name = resourceNames).
    daemon.list_all("/api/v1/namespaces/prewarm/configmaps", {"fieldSelector": "metadata.name=prewarm-config"})
    daemon.create("/api/v1/namespaces/prewarm/configmaps", {**CM, "metadata": {"name": "prewarm-state"}})
    state = daemon.get("/api/v1/namespaces/prewarm/configmaps/prewarm-state")
    daemon.replace("/api/v1/namespaces/prewarm/configmaps/prewarm-state", {**state, "data": {"k": "v"}})
    balloon_path = f"/apis/apps/v1/namespaces/prewarm/deployments/{balloon['metadata']['name']}"
    daemon.get(balloon_path)
    daemon.merge_patch(balloon_path + "/scale", {"spec": {"replicas": 2}})
    scale = daemon.get(balloon_path + "/scale")
    daemon.replace(balloon_path + "/scale", {**scale, "spec": {"replicas": 3}})
    assert admin.get(balloon_path)["spec"]["replicas"] == 3
    daemon.create("/api/v1/namespaces/prewarm/events", {
        "apiVersion": "v1", "kind": "Event", "metadata": {"generateName": "prewarm-balloon-gpu-h100."},
        "involvedObject": {"kind": "Deployment", "name": "prewarm-balloon-gpu-h100", "namespace": "prewarm"},
        "reason": "BalloonDeploymentMissing", "message": "m", "type": "Warning"})


@pytest.mark.parametrize("path", ["/api/v1/pods", "/api/v1/namespaces/default/pods"])
def test_pods_cannot_be_watched_outside_the_models_namespaces(kube: KubeEnv, path: str) -> None:
    with pytest.raises(KubeApiError) as denied:
        kube.daemon().open_watch(path, {}, timeout_seconds=1)
    assert denied.value.status == 403, denied.value

"""Session fixtures for tests/kube: one real kube-apiserver + etcd for the whole session.

Missing toolchain (kube-apiserver not built, etcd missing): built/installed through
scripts/kube-env.sh when CI=true (a failure if that does not work), skipped locally with the
command to run. The shipped deploy/rbac manifests are applied once (the balloon Deployment, which
the chart creates, comes from the ``balloon`` fixture); after each test the objects
with pinned names (Lease, state and config ConfigMaps, balloon Deployment), all nodes and the
test's pods are deleted, so tests stay independent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from scaler.edges.kubernetes.api import Api, Obj
from scaler.edges.kubernetes.balloons import balloon_deployment
from tests.kube.common import settings
from tests.support import kubeenv
from tests.support.kubeenv import DAEMON_NAMESPACE, KubeEnv, Player

PINNED = (
    f"/apis/coordination.k8s.io/v1/namespaces/{DAEMON_NAMESPACE}/leases/prewarm-leader",
    f"/api/v1/namespaces/{DAEMON_NAMESPACE}/configmaps/prewarm-state",
    f"/api/v1/namespaces/{DAEMON_NAMESPACE}/configmaps/prewarm-config",
    f"/apis/apps/v1/namespaces/{DAEMON_NAMESPACE}/deployments/prewarm-balloon-gpu-h100",
)
MODEL_NAMESPACE = "llm"


_BUILD: dict[str, str] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In CI, build a missing kube-apiserver here, once: outside any test's timeout (5-10 min)."""
    if not kubeenv.in_ci() or kubeenv.toolchain_ready():
        return
    if not any(item.get_closest_marker("kube") for item in items):
        return
    began = time.monotonic()
    print("\nkube-apiserver missing: scripts/kube-env.sh build (once, cached) ...", flush=True)
    binary, tail = kubeenv.build()
    _BUILD["seconds"] = f"{time.monotonic() - began:.0f}"
    _BUILD["tail"] = tail
    print(f"kube-apiserver build finished in {_BUILD['seconds']}s: {binary}", flush=True)


@pytest.fixture(scope="session")
def kube_toolchain() -> None:
    if kubeenv.toolchain_ready():
        return
    if kubeenv.in_ci():
        pytest.fail("CI: no kube-apiserver/etcd after scripts/kube-env.sh build:\n"
                    + _BUILD.get("tail", "(build not attempted)"))
    pytest.skip("kube-apiserver not built: run scripts/kube-env.sh build (5-10 min, cached; "
                "CI=true builds it and fails when it cannot)")


@pytest.fixture(scope="session")
def kube(kube_toolchain: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEnv]:
    with kubeenv.running(tmp_path_factory.mktemp("kube")) as env:
        print(f"\nkube-apiserver ready in {env.start_seconds:.1f}s at {env.server}")
        admin = env.admin()
        kubeenv.ensure_namespace(admin, DAEMON_NAMESPACE)
        kubeenv.ensure_namespace(admin, MODEL_NAMESPACE)
        kubeenv.apply(admin, kubeenv.manifests())
        yield env


@pytest.fixture
def admin(kube: KubeEnv) -> Api:
    return kube.admin()


@pytest.fixture
def player(admin: Api) -> Player:
    return Player(admin)


@pytest.fixture
def balloon(admin: Api) -> Obj:
    """The pool's balloon Deployment, created as the chart and kustomize do (0 replicas, admin):
    the daemon only scales it."""
    pool = settings().nodePools[0]
    return admin.create(f"/apis/apps/v1/namespaces/{pool.balloon.namespace}/deployments",
                        balloon_deployment(pool, 0))


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "kube" not in request.fixturenames:
        return
    env: KubeEnv = request.getfixturevalue("kube")
    api = env.admin()
    for path in PINNED:
        kubeenv.delete(api, path)
    kubeenv.delete_all(api, f"/api/v1/namespaces/{MODEL_NAMESPACE}/pods")
    kubeenv.delete_all(api, f"/api/v1/namespaces/{DAEMON_NAMESPACE}/pods")
    kubeenv.delete_all(api, f"/apis/apps/v1/namespaces/{MODEL_NAMESPACE}/deployments")
    kubeenv.delete_all(api, "/api/v1/nodes")
    kubeenv.delete_all(api, f"/api/v1/namespaces/{DAEMON_NAMESPACE}/events")


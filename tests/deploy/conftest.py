"""Fixtures for tests/deploy: the tools the shipped manifests are checked with.

Each tool is installed on demand when missing (apt for promtool, npm into a cache directory for the
Grafana schema, pip into a cache directory for Helm's Go library). In CI (CI=true) a tool that
cannot be had is a failure; elsewhere the test is skipped with the command that installs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.deploy import tools
from tests.support import kubeenv, promenv

T = TypeVar("T")


def need(what: str, found: Callable[[], T | None], install: Callable[[], T | None], hint: str) -> T:
    """``found()``; else ``install()`` in CI (fail when that does not work), else skip with ``hint``."""
    value = found()
    if value is None and tools.in_ci():
        value = install()
        if value is None:
            pytest.fail(f"CI: {what} is missing and could not be installed ({hint})")
    if value is None:
        pytest.skip(f"{what} not installed: {hint}")
    return value


@pytest.fixture(scope="session")
def promtool() -> str:
    pair = need("prometheus/promtool", promenv.binaries, promenv.install, "scripts/prometheus-env.sh install")
    return pair[1]


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    pair = need("prometheus/promtool", promenv.binaries, promenv.install, "scripts/prometheus-env.sh install")
    return pair[0]


@pytest.fixture(scope="session")
def kubectl() -> str:
    return need("kubectl", tools.kubectl, lambda: None, "install kubectl >= 1.27 (it renders kustomize)")


@pytest.fixture(scope="session")
def dashboard_schema() -> Path:
    return need("the Grafana dashboard JSON Schema", tools.dashboard_schema, tools.build_dashboard_schema,
                "scripts/grafana-schema.sh (npm: @grafana/schema + ts-json-schema-generator)")


@pytest.fixture(scope="session")
def helm_sdk() -> Path:
    return need("helm-python-sdk (Helm's Go library)", tools.helm_sdk, tools.install_helm_sdk,
                f"pip install --target {tools.HELM_SDK_DIR} helm-python-sdk=={tools.HELM_SDK_VERSION}")


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kubeenv.KubeEnv]:
    """A real kube-apiserver + etcd (scripts/kube-env.sh), shared by the session's deploy tests."""
    def build() -> bool | None:
        binary, tail = kubeenv.build()
        if binary is None or not kubeenv.toolchain_ready():
            print(tail)
            return None
        return True

    need("kube-apiserver + etcd", lambda: True if kubeenv.toolchain_ready() else None, build,
         "scripts/kube-env.sh build (5-10 min once, cached)")
    began = time.monotonic()
    with kubeenv.running(tmp_path_factory.mktemp("kube")) as env:
        print(f"\nkube-apiserver ready in {time.monotonic() - began:.1f}s")
        yield env

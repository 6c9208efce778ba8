"""The chart as an operator meets it, through real Helm (Helm v4's Go library): `helm install`
refuses a bad `config` (the generated config schema sits in values.schema.json), the `helm test`
hook renders and its check works against a real `prewarm serve`, the example values install, and
the chart README names every value.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import tools
from tests.deploy.test_manifests import CHART, ROOT, find, helm_render
from tests.support.certs import make_pki
from tests.support.process import start_serve

EXAMPLE_VALUES = ROOT / "deploy" / "examples" / "values.yaml"
HEALTH_CHECK = CHART / "files" / "grpc-health-check.py"
Obj = dict[str, Any]


def helm_install(sdk: Path, values: Obj, *, name: str = "prewarm", namespace: str = "prewarm") -> list[Obj]:
    """`helm install --dry-run=client`: Helm's own install path, schema check included, no cluster."""
    release = tools.helm(sdk, {"action": "install", "chart": str(CHART), "values": values, "name": name,
                               "namespace": namespace})
    return [d for d in yaml.safe_load_all(release["manifest"]) if d]


def check_config(config: Obj | str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return subprocess.run([sys.executable, "-m", "scaler", "check-config", str(path)], capture_output=True,
                          text=True, cwd=ROOT, check=False, timeout=60)


# --- values.schema.json carries the config schema ---------------------------------------------------

GOOD_MODEL = {"name": "m", "capacityPerReplica": 4}


@pytest.mark.parametrize(("config", "where"), [
    pytest.param({"models": [{**GOOD_MODEL, "capacityPerReplcia": 4}]}, "/config/models/0", id="typo-in-a-key"),
    pytest.param({"modles": [GOOD_MODEL]}, "/config", id="typo-in-a-section"),
    pytest.param({"models": [{**GOOD_MODEL, "name": "Llama_3"}]}, "/config/models/0/name", id="bad-name"),
    pytest.param({"models": [{**GOOD_MODEL, "maxReplicas": "twenty"}]}, "/config/models/0/maxReplicas",
                 id="wrong-type"),
    pytest.param({"models": [{**GOOD_MODEL, "capacityPerReplica": 0}]}, "/config/models/0/capacityPerReplica",
                 id="out-of-range"),
    pytest.param({"defaults": {"refitInterval": "soon"}}, "/config/defaults/refitInterval", id="bad-duration"),
    pytest.param({"models": []}, "/config/models", id="no-model"),
])
def test_helm_install_refuses_a_bad_config(helm_sdk: Path, tmp_path: Path, config: Obj, where: str) -> None:
    with pytest.raises(RuntimeError, match="values don't meet the specifications") as refused:
        helm_install(helm_sdk, {"config": config})
    assert f"at '{where}" in str(refused.value), refused.value
    # the daemon objects too (an unknown key is only a warning there)
    merged = yaml.safe_load((CHART / "values.yaml").read_text())["config"] | config
    checked = check_config(merged, tmp_path)
    assert "Traceback" not in checked.stderr, checked.stderr
    assert checked.returncode != 0 or "warning" in checked.stderr, checked.stdout + checked.stderr


def test_helm_install_accepts_the_default_config(helm_sdk: Path) -> None:
    kinds = {o["kind"] for o in helm_install(helm_sdk, {})}
    assert {"Deployment", "ConfigMap", "Service"} <= kinds


def test_values_schema_config_is_the_generated_one() -> None:
    """deploy/sync.py writes it (test_manifests.test_generated_copies_are_current fails when it is stale)."""
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import sync
    finally:
        sys.path.pop(0)
    assert sync.VALUES_SCHEMA in sync.copies()
    schema = yaml.safe_load(sync.VALUES_SCHEMA.read_text())["properties"]["config"]
    assert set(schema["properties"]) >= {"models", "prometheus", "defaults", "nodePools", "kubernetes"}


# --- `helm test` -------------------------------------------------------------------------------------


def hook_pod(sdk: Path, values: Obj) -> Obj:
    (pod,) = helm_render(sdk, values, hooks=True)
    return pod


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "mtls"])
def test_helm_test_hook_renders(helm_sdk: Path, tls: bool) -> None:
    values: Obj = {"tls": {"enabled": tls}}
    pod = hook_pod(helm_sdk, values)
    deployment = find(helm_render(helm_sdk, values), "Deployment", "prewarm")["spec"]["template"]["spec"]
    assert pod["kind"] == "Pod" and pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never" and pod["spec"]["automountServiceAccountToken"] is False
    (container,) = pod["spec"]["containers"]
    (daemon,) = deployment["containers"]
    assert container["image"] == daemon["image"]  # the chart's own image: no other registry
    assert container["securityContext"] == daemon["securityContext"]
    assert pod["spec"]["securityContext"] == deployment["securityContext"]
    python, flag, script, target, *tls_dir = container["command"]
    assert (python, flag) == ("python", "-c") and script == HEALTH_CHECK.read_text()
    assert target == "prewarm.prewarm.svc.cluster.local:9090"
    if tls:
        assert tls_dir == ["/etc/prewarm/tls"]
        assert pod["spec"]["volumes"] == [{"name": "tls", "secret": {"secretName": "prewarm-tls"}}]
        other = hook_pod(helm_sdk, {"tls": {"enabled": True}, "helmTest": {"clientTlsSecret": "keda-client"}})
        assert other["spec"]["volumes"][0]["secret"]["secretName"] == "keda-client"
    else:
        assert tls_dir == [] and "volumes" not in pod["spec"]
    assert not helm_render(helm_sdk, {"helmTest": {"enabled": False}}, hooks=True)


def run_check(command: list[str], target: str, *tls_dir: str) -> subprocess.CompletedProcess[str]:
    """The hook's own command line, with this machine's Python and the local daemon's address."""
    _python, flag, script, _target, *_ = command
    return subprocess.run([sys.executable, flag, script, target, *tls_dir], capture_output=True, text=True,
                          check=False, timeout=60)


@pytest.mark.slow
def test_helm_test_check_against_a_real_daemon(helm_sdk: Path, tmp_path: Path) -> None:
    command = hook_pod(helm_sdk, {})["spec"]["containers"][0]["command"]
    server = start_serve(["--demo"], tmp_path)
    try:
        ok = run_check(command, server.address)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert f"{server.address} externalscaler.ExternalScaler: SERVING" in ok.stdout
    finally:
        server.terminate()
    down = run_check(command, server.address)
    assert down.returncode == 1 and "UNAVAILABLE" in down.stdout, down.stdout + down.stderr


def secret_dir(directory: Path, ca: Path, cert: Path, key: Path) -> Path:
    """A TLS Secret as Kubernetes mounts it: ca.crt, tls.crt, tls.key."""
    directory.mkdir()
    for name, source in (("ca.crt", ca), ("tls.crt", cert), ("tls.key", key)):
        (directory / name).write_bytes(source.read_bytes())
    return directory


@pytest.mark.slow
def test_helm_test_check_over_mutual_tls(helm_sdk: Path, tmp_path: Path) -> None:
    import grpc

    command = hook_pod(helm_sdk, {"tls": {"enabled": True}})["spec"]["containers"][0]["command"]
    pki, rogue = make_pki(tmp_path), make_pki(tmp_path, ca_name="rogue-ca")
    client = secret_dir(tmp_path / "client", pki["ca"].cert, pki["client"].cert, pki["client"].key)
    stranger = secret_dir(tmp_path / "stranger", pki["ca"].cert, rogue["client"].cert, rogue["client"].key)
    creds = grpc.ssl_channel_credentials(pki["ca"].cert.read_bytes(), pki["client"].key.read_bytes(),
                                         pki["client"].cert.read_bytes())
    server = start_serve(["--demo", "--tls-cert", str(pki["server"].cert), "--tls-key", str(pki["server"].key),
                          "--tls-client-ca", str(pki["ca"].cert)], tmp_path, credentials=creds)
    try:
        ok = run_check(command, server.address, str(client))
        assert ok.returncode == 0 and "SERVING" in ok.stdout, ok.stdout + ok.stderr
        refused = run_check(command, server.address, str(stranger))
        assert refused.returncode == 1, refused.stdout + refused.stderr
    finally:
        server.terminate()


# --- the example values file and the chart README ---------------------------------------------------


def test_example_values_install_and_their_config_is_valid(helm_sdk: Path, tmp_path: Path) -> None:
    values = yaml.safe_load(EXAMPLE_VALUES.read_text())
    objs = helm_install(helm_sdk, values)
    deployment = find(objs, "Deployment", "prewarm")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/platform/prewarm:0.1.0"
    assert "--tls-client-ca=/etc/prewarm/tls/ca.crt" in container["args"]
    config = find(objs, "ConfigMap", "prewarm-config")["data"]["config.yaml"]
    checked = check_config(config, tmp_path)
    assert checked.returncode == 0 and "warning" not in checked.stderr, checked.stdout + checked.stderr
    assert "quantile" not in yaml.safe_load(config)["defaults"]  # null dropped the chart's default


WHOLE = {"config", "resources", "podSecurityContext", "securityContext"}  # documented as one value


def value_paths(values: Obj) -> list[str]:
    """Top-level keys, and the keys of each top-level section (`config` is docs/CONFIG.md's)."""
    return [f"{k}.{sub}" if isinstance(v, dict) and v and k not in WHOLE else k
            for k, v in values.items() for sub in (v if isinstance(v, dict) and v and k not in WHOLE else [None])]


def test_chart_readme_documents_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    missing = [p for p in value_paths(yaml.safe_load((CHART / "values.yaml").read_text())) if f"`{p}`" not in readme]
    assert not missing, f"deploy/helm/prewarm/README.md lacks {missing}"

"""Child process of the deploy tests: Helm's Go library (helm-python-sdk) renders or lints a chart.

stdin: {"action": "render" | "install" | "lint", "chart": DIR, "values": {...}, "name": ..., "namespace": ...}
stdout: {"manifests": {template path: YAML}}, the release of `helm install --dry-run=client` (no
cluster contacted) or the lint result; exit 1 with Helm's error on stderr.
"""

from __future__ import annotations

import json
import sys

EMPTY_KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n"


def main() -> int:
    import helm_python as helm

    request = json.load(sys.stdin)
    try:
        if request["action"] == "lint":
            answer = helm.lint(request["chart"])
        elif request["action"] == "render":
            with helm.Chart.load(request["chart"]) as chart:
                chart.validate_schema(request.get("values") or {})
                answer = {
                    "manifests": chart.render(request.get("values") or {}, name=request["name"],
                                              namespace=request["namespace"], is_install=True),
                    "helm": helm.helm_sdk_version(),
                }
        elif request["action"] == "install":
            # no cluster: an empty kubeconfig, and a client-side dry run
            with helm.Config(namespace=request["namespace"], kubeconfig_content=EMPTY_KUBECONFIG) as config:
                answer = config.install(request["chart"], request["name"], request.get("values") or {},
                                        namespace=request["namespace"], dry_run="client")
        else:
            raise ValueError(f"unknown action {request['action']!r}")
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

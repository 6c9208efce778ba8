"""Child process of the deploy tests: Helm's Go library (helm-python-sdk) renders or lints a chart.

stdin: {"action": "render" | "lint", "chart": DIR, "values": {...}, "name": ..., "namespace": ...}
stdout: {"manifests": {template path: YAML}} or the lint result; exit 1 with Helm's error on stderr.
"""

from __future__ import annotations

import json
import sys


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
        else:
            raise ValueError(f"unknown action {request['action']!r}")
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Minimal CustomResourceDefinitions for the shipped custom resources (ServiceMonitor,
PrometheusRule, ScaledObject, TriggerAuthentication), written for these tests (not the projects' own).

They check the fields the shipped objects rely on: required keys, types, enums; anything else is
preserved. The test apiserver (v1.20.2 built from Debian's source with Go 1.19) segfaults while
serving a CRD (its vendored reflect2 predates Go 1.18's map layout), so the schemas are applied
locally with ``jsonschema`` (:func:`validate`) instead of by a server-side dry run.
"""

from __future__ import annotations

from typing import Any

import jsonschema

OPEN: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties,
            "x-kubernetes-preserve-unknown-fields": True}


def _crd(group: str, version: str, kind: str, plural: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [{"name": version, "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": _obj(["spec"], spec=spec)}}],
        },
    }


_RULE = _obj(["expr"], alert={"type": "string"}, record={"type": "string"},
             expr={"type": "string", "minLength": 1}, labels={"type": "object", "additionalProperties": {"type": "string"}},
             annotations={"type": "object", "additionalProperties": {"type": "string"}},
             **{"for": {"type": "string", "pattern": r"^(0|(([0-9]+)(ms|s|m|h|d|w|y))+)$"}})
_TRIGGER = _obj(["type", "metadata"], type={"type": "string", "minLength": 1}, name={"type": "string"},
                metricType={"type": "string", "enum": ["AverageValue", "Value", "Utilization"]},
                metadata={"type": "object", "additionalProperties": {"type": "string"}},
                authenticationRef=_obj(["name"], name={"type": "string"}))

CRDS = [
    _crd("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors",
         _obj(["selector", "endpoints"], selector=OPEN,
              endpoints={"type": "array", "minItems": 1,
                         "items": _obj(["port"], port={"type": "string"}, path={"type": "string"},
                                       interval={"type": "string"}, scrapeTimeout={"type": "string"})})),
    _crd("monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules",
         _obj(["groups"], groups={"type": "array", "items": _obj(["name", "rules"], name={"type": "string"},
                                                                  rules={"type": "array", "items": _RULE})})),
    _crd("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects",
         _obj(["scaleTargetRef", "triggers"], scaleTargetRef=_obj(["name"], name={"type": "string"}),
              minReplicaCount={"type": "integer", "minimum": 0}, maxReplicaCount={"type": "integer", "minimum": 1},
              pollingInterval={"type": "integer"}, cooldownPeriod={"type": "integer"},
              fallback=_obj(["failureThreshold", "replicas"], failureThreshold={"type": "integer", "minimum": 0},
                            replicas={"type": "integer", "minimum": 0},
                            # KEDA 2.17 added behavior; 2.20 added scalingModifiers
                            behavior={"type": "string", "enum": ["static", "currentReplicas", "currentReplicasIfHigher",
                                                                 "currentReplicasIfLower", "scalingModifiers"]}),
              advanced=_obj([], horizontalPodAutoscalerConfig=OPEN,
                            scalingModifiers=_obj([], formula={"type": "string"}, target={"type": "string"},
                                                  activationTarget={"type": "string"},
                                                  metricType={"type": "string", "enum": ["AverageValue", "Value"]})),
              triggers={"type": "array", "minItems": 1, "items": _TRIGGER})),
    _crd("keda.sh", "v1alpha1", "TriggerAuthentication", "triggerauthentications",
         _obj([], secretTargetRef={"type": "array", "items": _obj(["parameter", "name", "key"],
                                                                   parameter={"type": "string"}, name={"type": "string"},
                                                                   key={"type": "string"})})),
]


def _json_schema(schema: Any) -> Any:
    """An OpenAPI v3 structural schema as JSON Schema (drop the x-kubernetes-* extensions)."""
    if isinstance(schema, dict):
        out = {k: _json_schema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
        return out
    if isinstance(schema, list):
        return [_json_schema(v) for v in schema]
    return schema


def validate(obj: dict[str, Any]) -> list[str]:
    """Problems of a custom resource against its CRD here (an unknown kind is a problem too)."""
    group, _, version = obj["apiVersion"].partition("/")
    for crd in CRDS:
        spec = crd["spec"]
        if spec["group"] == group and spec["names"]["kind"] == obj["kind"] and spec["versions"][0]["name"] == version:
            schema = _json_schema(spec["versions"][0]["schema"]["openAPIV3Schema"])
            return [f"{list(e.absolute_path)}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(obj)]
    return [f"no CRD for {obj['apiVersion']} {obj['kind']}"]

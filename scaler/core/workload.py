"""Pods, Nodes and label selectors as the scaler sees them: plain immutable values.

The Kubernetes edge parses API objects into these; :mod:`scaler.core.fleet` keeps them and
derives cold-start samples and GPU accounting from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scaler.core.config import NodePool

BALLOON_LABEL = "prewarm.io/balloon"
"""Label of balloon pods (value: the pool name): their GPUs are spare for real pods."""
TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True)
class PodView:
    uid: str
    namespace: str
    name: str
    labels: Mapping[str, str]
    created: float
    scheduled: float | None
    containers_ready: float | None
    ready: float | None
    """Ready=True transition time (None while not Ready)."""
    node: str | None
    phase: str
    requests: Mapping[str, int]
    """Extended-resource requests (``nvidia.com/gpu`` ...) summed over containers."""
    restarts: int

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES


@dataclass(frozen=True)
class NodeView:
    name: str
    labels: Mapping[str, str]
    created: float
    ready: bool
    ready_since: float | None
    unschedulable: bool
    allocatable: Mapping[str, int]


@dataclass(frozen=True)
class Selector:
    """A Deployment's label selector (matchLabels + matchExpressions)."""

    match_labels: Mapping[str, str] = field(default_factory=dict)
    expressions: tuple[tuple[str, str, frozenset[str]], ...] = ()

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> Selector:
        expressions = tuple(
            (str(e.get("key")), str(e.get("operator")), frozenset(str(v) for v in e.get("values") or []))
            for e in obj.get("matchExpressions") or []
        )
        return cls(match_labels=dict(obj.get("matchLabels") or {}), expressions=expressions)

    def matches(self, labels: Mapping[str, str]) -> bool:
        if not self.match_labels and not self.expressions:
            return False  # an empty selector would claim every pod: never a model's
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        return all(_expression_matches(labels, e) for e in self.expressions)


def _expression_matches(labels: Mapping[str, str], expression: tuple[str, str, frozenset[str]]) -> bool:
    key, operator, values = expression
    if operator == "In":
        return labels.get(key) in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    return False


def node_in_pool(node: NodeView, pool: NodePool) -> bool:
    selector = pool.balloon.nodeSelector
    return bool(selector) and all(node.labels.get(k) == v for k, v in selector.items())

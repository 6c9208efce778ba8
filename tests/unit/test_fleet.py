"""core.fleet: matching pods to models once per view gives what matching per model gave."""

from __future__ import annotations

import random

from scaler.core.config import parse_settings
from scaler.core.fleet import Fleet
from scaler.core.workload import PodView, Selector


def settings(models: int):
    return parse_settings({
        "prometheus": {"url": "http://127.0.0.1:9"},
        "nodePools": [{"name": "gpu", "gpusPerNode": 8, "balloon": {"namespace": "prewarm",
                                                                     "nodeSelector": {"pool": "gpu"}}}],
        "models": [{"name": f"m{i}", "capacityPerReplica": 1, "nodePool": "gpu",
                    "target": {"namespace": "llm" if i % 3 else "other", "deployment": f"d{i}"}}
                   for i in range(models)],
    }).settings


def pod(i: int, rng: random.Random) -> PodView:
    app = f"d{rng.randrange(40)}"
    labels = {"app": app, "tier": rng.choice(["a", "b"])}
    return PodView(uid=f"u{i}", namespace=rng.choice(["llm", "other", "elsewhere"]), name=f"p{i}", labels=labels,
                   created=1.0, scheduled=2.0, containers_ready=3.0, ready=4.0 if i % 2 else None,
                   node=None if i % 5 == 0 else "n1", phase="Running", requests={"nvidia.com/gpu": 1}, restarts=0)


def test_pods_by_model_matches_model_pods_for_every_kind_of_selector() -> None:
    rng = random.Random(7)
    fleet = Fleet(settings(40))
    for i, m in enumerate(fleet.settings.models):
        assert m.target is not None
        key = (m.target.namespace, m.target.deployment)
        if i % 4 == 0:  # matchExpressions only: every pod of the namespace is a candidate
            fleet.selectors[key] = Selector(expressions=(("app", "In", frozenset({f"d{i}"})),))
        elif i % 4 == 1:  # no selector read yet: no pods
            continue
        else:
            fleet.selectors[key] = Selector(match_labels={"app": f"d{i}", "tier": "a"})
    fleet.reset_pods(pod(i, rng) for i in range(600))
    index = fleet.pods_by_model()
    for m in fleet.settings.models:
        expected = sorted(p.uid for p in fleet.model_pods(m))
        assert sorted(p.uid for p in index.get(m.name, [])) == expected, m.name
    assert any(index.values())
    pool = fleet.settings.nodePools[0]
    members = {p.uid for pods in index.values() for p in pods}
    assert fleet.pool_capacity(pool, members) == fleet.pool_capacity(pool)

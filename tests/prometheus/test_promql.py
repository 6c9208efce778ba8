"""Query building: escaping (no PromQL injection), template validation, batched plans. Pure."""

from __future__ import annotations

import ast
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaler.core.config import ModelSettings, parse_settings
from scaler.edges.prometheus import checks, promql

names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


def models(*specs: dict[str, Any]) -> tuple[ModelSettings, ...]:
    raw = {"replay": {}, "models": [{"capacityPerReplica": 1, **s} for s in specs]}
    return parse_settings(raw).settings.models


@pytest.mark.parametrize(("value", "literal"), [
    pytest.param("llama-3-8b", '"llama-3-8b"', id="plain"),
    pytest.param('a"b', '"a\\"b"', id="double-quote"),
    pytest.param("a\\b", '"a\\\\b"', id="backslash"),
    pytest.param("a\nb\tc\rd", '"a\\nb\\tc\\rd"', id="newline-tab-cr"),
    pytest.param("a\x00\x1b\x7f", '"a\\x00\\x1b\\x7f"', id="control"),
    pytest.param("modèle/ü", '"modèle/ü"', id="unicode"),
    pytest.param('x"} or vector(1) or {a="', '"x\\"} or vector(1) or {a=\\""', id="injection"),
])
def test_quote(value: str, literal: str) -> None:
    assert promql.quote(value) == literal


@given(names)
def test_quote_round_trips(value: str) -> None:
    # PromQL string escapes are Go's; for the escapes quote() emits, Python's are the same.
    assert ast.literal_eval(promql.quote(value)) == value


@given(names, names)
def test_regex_escape_matches_only_itself(value: str, other: str) -> None:
    pattern = promql.regex_escape(value)
    assert re.fullmatch(pattern, value, flags=re.DOTALL)
    if other != value:
        assert not re.fullmatch(pattern, other, flags=re.DOTALL)


@pytest.mark.parametrize(("served", "labels", "expected"), [
    pytest.param(["a"], {}, 'model_name="a"', id="one-exact"),
    pytest.param(["b.1", "a"], {}, 'model_name=~"a|b\\\\.1"', id="regex-sorted-escaped"),
    pytest.param(["a", "a"], {}, 'model_name="a"', id="deduplicated"),
    pytest.param(["a"], {"ns": 'l"m', "cluster": "c"}, 'model_name="a",cluster="c",ns="l\\"m"',
                 id="extra-labels-sorted-quoted"),
    pytest.param(["a|b", ".*"], {}, 'model_name=~"\\\\.\\\\*|a\\\\|b"', id="regex-metachars"),
])
def test_matchers(served: list[str], labels: dict[str, str], expected: str) -> None:
    assert promql.matchers(served, labels) == expected


@pytest.mark.parametrize(("queries", "batched", "problems"), [
    pytest.param({"running": "sum by (model_name) (x{{{matchers}}})"}, True, [], id="ok"),
    pytest.param({"running": "sum(gw{route=\"/a\"})"}, False, [], id="per-model-without-matchers"),
    pytest.param({"running": "sum(gw)"}, True,
                 ["running: must use {{matchers}} (a defaults query is sent for all models at once)"],
                 id="batched-needs-matchers"),
    pytest.param({"runing": "x"}, False, ["runing: unknown signal 'runing' (known: "
                                          + ", ".join(promql.SIGNALS) + ")"], id="unknown-signal"),
    pytest.param({"waiting": "x{{{model}}}"}, False,
                 ["waiting: unknown placeholder {{model}} (known: {{matchers}}, {{window}})"],
                 id="unknown-placeholder"),
    pytest.param({"waiting": "  "}, False, ["waiting: empty query"], id="empty"),
    pytest.param({"waiting": "sum(rate(x{{{matchers}}}[{{window}}])"}, False,
                 ["waiting: unclosed '('"], id="unclosed"),
    pytest.param({"waiting": "sum(x])"}, False, ["waiting: unbalanced ']'"], id="unbalanced"),
    pytest.param({"waiting": 'x{a="(}'}, False, ['waiting: unterminated string (")'],
                 id="unterminated-string"),
    pytest.param({"waiting": 'x{a=")\\"("}'}, False, [], id="brackets-in-strings-ignored"),
])
def test_validate_queries(queries: dict[str, str], batched: bool, problems: list[str]) -> None:
    assert checks.validate_queries(queries, batched=batched) == problems


def test_every_default_query_is_valid() -> None:
    assert checks.validate_queries(promql.SIGNALS, batched=True) == []


@pytest.mark.parametrize(("labels", "problems"), [
    pytest.param({"namespace": "llm", "_x1": "y"}, [], id="ok"),
    pytest.param({"bad-key": "v"}, ["bad-key: not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"],
                 id="dash"),
    pytest.param({'a="x"} or {b': "v"}, ['a="x"} or {b: not a Prometheus label name '
                                         "([a-zA-Z_][a-zA-Z0-9_]*)"], id="injection-in-key"),
    pytest.param({"__name__": "v"}, ["__name__: labels starting with '__' are reserved"],
                 id="reserved"),
    pytest.param({"model_name": "v"}, ["model_name: set by prewarm (use servedModelName for "
                                       "model_name)"], id="model-name"),
])
def test_validate_labels(labels: dict[str, str], problems: list[str]) -> None:
    assert checks.validate_labels(labels) == problems


def test_grouping() -> None:
    ms = models(
        {"name": "a"}, {"name": "b"},
        {"name": "c", "labels": {"ns": "x"}},
        {"name": "d", "servedModelName": "a"},  # same served name as a: another group
        {"name": "e", "queries": {"running": "sum(gw)"}},
        {"name": "f", "queries": {"running": "sum(gw)"}},  # same override text: still its own
    )
    groups = promql.group_models("running", ms, {})
    assert [[n for _, n in g.models] for g in groups] == [["a", "b"], ["c"], ["d"], ["e"], ["f"]]
    assert [g.keyed for g in groups] == [True, True, True, False, False]
    plan = promql.plan("running", groups, window="1m")
    assert plan.query.count("label_replace(") == 5
    assert plan.model_for({"model_name": "b", "prewarm_group": "0"}) == "b"
    assert plan.model_for({"model_name": "a", "prewarm_group": "2"}) == "d"
    assert plan.model_for({"prewarm_group": "4", "route": "x"}) == "f"
    assert plan.model_for({"model_name": "a"}) is None
    assert plan.model_for({"model_name": "a", "prewarm_group": "9"}) is None


def test_single_group_is_not_tagged() -> None:
    plan = promql.plan("running", promql.group_models("running", models({"name": "a"}), {}),
                       window="1m")
    assert plan.query == 'sum by (model_name) (vllm:num_requests_running{model_name="a"})'
    assert plan.model_for({"model_name": "a"}) == "a"
    assert plan.model_for({"model_name": "z"}) is None


def test_defaults_override_is_batched() -> None:
    override = {"running": "max by (model_name) (my_running{{{matchers}}})"}
    ms = models({"name": "a"}, {"name": "b"})
    [plan] = promql.plans("running", ms, override, window="1m", max_query_chars=10_000)
    assert plan.query == 'max by (model_name) (my_running{model_name=~"a|b"})'


def test_huge_batches_are_split_under_the_url_budget() -> None:
    ms = models(*({"name": f"model-{i:04d}"} for i in range(400)))
    plans = promql.plans("arrivals", ms, {}, window="1m", max_query_chars=8_000)
    assert len(plans) > 1
    assert all(len(p.query) <= 8_000 for p in plans)
    covered = [n for p in plans for g in p.groups for _, n in g.models]
    assert covered == [m.name for m in ms]


def test_windows_and_durations() -> None:
    assert promql.duration(60) == "60s"
    assert promql.duration(0.25) == "250ms"
    rendered = promql.render(promql.SIGNALS["completions_per_second"], matchers='model_name="a"',
                             window="2m")
    assert rendered == 'sum by (model_name) (rate(vllm:request_success_total{model_name="a"}[2m]))'
    with pytest.raises(ValueError, match="unknown placeholder"):
        promql.render("x{{{oops}}}", matchers="", window="1m")


# --- the SLO signal --------------------------------------------------------------------------------


def test_slo_is_read_only_on_request() -> None:
    assert promql.SLO_SIGNAL in promql.SIGNALS
    assert promql.SLO_SIGNAL not in promql.AUX_SIGNALS


def test_slo_default_query() -> None:
    [model] = models({"name": "a", "slo": {"onTime": 0.99, "window": "30m"}})
    [plan] = promql.plans(promql.SLO_SIGNAL, [model], {}, window="1m", max_query_chars=10_000)
    assert plan.query == (
        'sum by (model_name, le) (increase(vllm:request_queue_time_seconds_bucket{model_name="a",le!="+Inf"}'
        '[1800s])) or label_replace(sum by (model_name) (increase(vllm:request_queue_time_seconds_count'
        '{model_name="a"}[1800s])), "le", "+Inf", "", "")')


def test_slo_groups_by_window_not_by_bound() -> None:
    ms = models(
        {"name": "a", "slo": {"onTime": 0.99, "maxQueueTime": "1s", "window": "30m"}},
        {"name": "b", "slo": {"onTime": 0.9, "maxQueueTime": "2.5s", "window": "30m"}},
        {"name": "c", "slo": {"onTime": 0.99, "window": "1h"}},
    )
    groups = promql.group_models(promql.SLO_SIGNAL, ms, {})
    assert [([n for _, n in g.models], g.window) for g in groups] == [(["a", "b"], "1800s"), (["c"], "3600s")]
    [plan] = promql.plans(promql.SLO_SIGNAL, ms, {}, window="1m", max_query_chars=10_000)
    assert plan.query.count("[1800s]") == 2 and plan.query.count("[3600s]") == 2 and "[1m]" not in plan.query
    assert plan.model_for({"model_name": "c", "le": "1.0", "prewarm_group": "1"}) == "c"
    # Other signals ignore the SLO window: one group, the rate window.
    assert [g.window for g in promql.group_models("running", ms, {})] == [None]


@pytest.mark.parametrize(("le", "bound"), [
    pytest.param("1.0", 1.0, id="python-client"),
    pytest.param("1", 1.0, id="go-client"),
    pytest.param("1e+00", 1.0, id="exponent"),
    pytest.param("0.3", 0.3, id="decimal"),
    pytest.param("+Inf", float("inf"), id="total"),
    pytest.param("", None, id="missing"),
    pytest.param("NaN", None, id="nan"),
    pytest.param("fast", None, id="garbage"),
])
def test_bound(le: str, bound: float | None) -> None:
    assert promql.bound(le) == bound


INF = float("inf")


@pytest.mark.parametrize(("buckets", "max_queue_time", "expected"), [
    pytest.param({0.5: 5, 1.0: 8, INF: 10}, 1.0, (8, 10), id="at-a-bound"),
    pytest.param({0.5: 5, 1.0: 8, 1.5: 9, INF: 10}, 1.2, (8, 10), id="between-reads-the-lower"),
    pytest.param({0.5: 5, 1.0: 8, INF: 10}, 1000.0, (8, 10), id="above-every-finite-bound"),
    pytest.param({0.3: 2, INF: 10}, 300 / 1000, (2, 10), id="config-300ms-is-le-0.3"),
    pytest.param({0.5: 5, INF: 10}, 0.1, None, id="below-the-smallest"),
    pytest.param({0.5: 5, 1.0: 8}, 1.0, None, id="no-total"),
    pytest.param({INF: 10}, 1.0, None, id="only-the-total"),
])
def test_on_time(buckets: dict[float, float], max_queue_time: float, expected: tuple[float, float] | None) -> None:
    assert promql.on_time(buckets, max_queue_time) == expected

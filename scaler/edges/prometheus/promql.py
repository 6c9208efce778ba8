"""PromQL for vLLM's metrics: default signal queries, safe label matchers, batched query plans,
and the validation of answers.

Pure (no I/O), so it is table-tested on its own; ``prometheus.py`` sends what this module builds
and hands it what comes back. Everything a user writes into a query goes through :func:`quote`
(PromQL string escaping) and, inside a regex matcher, :func:`regex_escape` first: a served model
name such as ``x"} or vector(1) or {a="`` stays a label value and cannot change the query.

Query templates (built-in and config overrides) use two placeholders:

``{{matchers}}``
    the model's label matchers without braces, e.g. ``model_name="llama-3-8b",namespace="llm"``;
    in a batched query ``model_name=~"llama-3-8b|qwen-2\\\\.5"``. Write ``metric{{{matchers}}}``
    or ``metric{reason="capacity",{{matchers}}}``.
``{{window}}``
    the range-vector window for ``rate``/``deriv``, e.g. ``1m`` (history: ``max(2 * step, 1m)``);
    for the SLO signal, the model's ``slo.window``.

Batching: per refresh, each signal is ONE request for all models. Models that share a template
and extra labels form a group with one regex matcher on ``model_name``; a per-model override is a
group of its own. Several groups are joined with ``or``, each tagged with a ``prewarm_group``
label by ``label_replace`` so an answer maps back to its group; inside a group, ``model_name``
maps back to the model (a per-model override may return any labels, but only one series).

The SLO signal (:data:`SLO_SIGNAL`) is the one signal answered with several series per model: a
cumulative histogram by ``le`` over the model's ``slo.window``, from which :func:`on_time` picks
the bucket in Python (see there for why).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scaler.core.config import ModelSettings

MODEL_LABEL = "model_name"
GROUP_LABEL = "prewarm_group"
PLACEHOLDERS = ("matchers", "window")
DEMAND_SIGNALS = ("concurrency", "arrivals")
"""Signals that can be a model's demand (``policy.demand``); the same names as the config's."""
SLO_SIGNAL = "slo_on_time"
"""Read only for models with an ``slo``; it yields ``slo_on_time_ratio`` and ``slo_requests``."""
SAMPLED_SIGNAL = "sampled_at"
"""When the model's data was scraped (Unix seconds, the oldest engine's last scrape): the
observation's ``sampled_at``, which the decision's validity counts from. Not exported as a signal."""

_RUNNING = "vllm:num_requests_running{{{matchers}}}"
_WAITING = "vllm:num_requests_waiting{{{matchers}}}"


def _rate(counter: str) -> str:
    return f"sum by (model_name) (rate({counter}{{{{{{matchers}}}}}}[{{{{window}}}}]))"


def _p95(*histograms: str) -> str:
    # `or` per series (rate() drops the name, labels incl. `le` match): a replica exporting both
    # the new and the old name counts once; one exporting only the old name still counts.
    rates = " or ".join(f"rate({h}_bucket{{{{{{matchers}}}}}}[{{{{window}}}}])" for h in histograms)
    return f"histogram_quantile(0.95, sum by (model_name, le) ({rates}))"


SIGNALS: Mapping[str, str] = {
    # Demand, default: requests in the system (running + waiting) - includes the queue, so it
    # keeps rising when replicas saturate (see docs/METRICS_SOURCE.md).
    "concurrency": f"sum by (model_name) ({_RUNNING}) + sum by (model_name) ({_WAITING})",
    # Demand, option: arrivals/s ~= completions/s + d(running + waiting)/dt. vLLM has no arrival
    # counter; completions alone are censored by capacity under saturation, the queue growth
    # term puts the censored part back.
    "arrivals": (
        "clamp_min("
        + _rate("vllm:request_success_total")
        + f" + sum by (model_name) (deriv({_RUNNING}[{{{{window}}}}]))"
        + f" + sum by (model_name) (deriv({_WAITING}[{{{{window}}}}])), 0)"
    ),
    # Replicas: distinct scrape targets (pods); data-parallel engines of one pod count once.
    "replicas": f"count by (model_name) (count by (model_name, instance) ({_RUNNING}))",
    # Sample time: the oldest of the engines' latest scrapes (timestamp() of a raw selector is
    # the scrape's time, not the query's), so data Prometheus stopped refreshing looks its age.
    SAMPLED_SIGNAL: f"min by (model_name) (timestamp({_RUNNING}))",
    "running": f"sum by (model_name) ({_RUNNING})",
    "waiting": f"sum by (model_name) ({_WAITING})",
    "kv_cache_usage": (
        "avg by (model_name) (vllm:kv_cache_usage_perc{{{matchers}}}"
        " or vllm:gpu_cache_usage_perc{{{matchers}}})"
    ),
    "completions_per_second": _rate("vllm:request_success_total"),
    "prompt_tokens_per_second": _rate("vllm:prompt_tokens_total"),
    "generation_tokens_per_second": _rate("vllm:generation_tokens_total"),
    "ttft_p95_seconds": _p95("vllm:time_to_first_token_seconds"),
    "queue_time_p95_seconds": _p95("vllm:request_queue_time_seconds"),
    "inter_token_latency_p95_seconds": _p95(
        "vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"
    ),
    # SLO: requests finished in the window, cumulative by queue-time bound, with the total from
    # `_count` relabelled as le="+Inf". The whole histogram comes back because `le` is a string
    # ("1.0" from vLLM's Python client, "1" from Go clients and Prometheus 2.x keeps it verbatim),
    # so PromQL cannot select "the largest bound <= maxQueueTime" by value; on_time() does, in
    # Python, from the parsed numbers. ~22 series per model is a small answer.
    SLO_SIGNAL: (
        "sum by (model_name, le) (increase(vllm:request_queue_time_seconds_bucket"
        '{{{matchers}},le!="+Inf"}[{{window}}]))'
        " or label_replace(sum by (model_name) (increase(vllm:request_queue_time_seconds_count"
        '{{{matchers}}}[{{window}}])), "le", "+Inf", "", "")'
    ),
}
"""Default PromQL per signal (vLLM V1 names, ``model_name`` label, old names via ``or``)."""

AUX_SIGNALS = tuple(s for s in SIGNALS if s not in (*DEMAND_SIGNALS, SLO_SIGNAL))
"""Signals read every refresh for every model besides the demand: ``replicas`` and the extras."""

PLACEHOLDER_PATTERN = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


# --- escaping ------------------------------------------------------------------------------------


_QUOTE = {
    **{c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]},
    ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t",
}
_REGEX = {ord(ch): "\\" + ch for ch in "\\.+*?()|[]{}^$"}


def quote(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal (Go escapes: ``\\\\``, ``\\"``, ``\\n``...)."""
    return '"' + value.translate(_QUOTE) + '"'


def regex_escape(value: str) -> str:
    """``value`` as an RE2 regex matching exactly itself (Prometheus anchors matchers)."""
    return value.translate(_REGEX)


def matchers(served_names: Sequence[str], labels: Mapping[str, str]) -> str:
    """Label matchers, without braces, for one or several served names and extra exact labels."""
    names = sorted(set(served_names))
    if not names:
        raise ValueError("at least one served model name is needed")
    if len(names) == 1:
        parts = [f"{MODEL_LABEL}={quote(names[0])}"]
    else:
        parts = [f"{MODEL_LABEL}=~{quote('|'.join(regex_escape(n) for n in names))}"]
    parts += [f"{key}={quote(value)}" for key, value in sorted(labels.items())]
    return ",".join(parts)


def render(template: str, *, matchers: str, window: str) -> str:
    """Fill a template's placeholders (validated beforehand: unknown ones raise ValueError)."""
    values = {"matchers": matchers, "window": window}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"unknown placeholder {{{{{name}}}}}")
        return values[name]

    return PLACEHOLDER_PATTERN.sub(fill, template)


def duration(seconds: float) -> str:
    """A PromQL duration literal: 60 -> ``60s``, 0.5 -> ``500ms``."""
    millis = round(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


# --- batched plans ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """Models answered by one sub-query: same template and extra labels."""

    template: str
    labels: tuple[tuple[str, str], ...]
    models: tuple[tuple[str, str], ...]
    """(served name, config name) pairs; served names are unique within a group."""
    keyed: bool
    """True: series carry ``model_name``. False: a per-model override, one series, any labels."""
    window: str | None = None
    """The group's own ``{{window}}`` (the SLO's), else the plan's."""
    _by_served: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_served", dict(self.models))

    def model_for(self, labels: Mapping[str, str]) -> str | None:
        if not self.keyed:
            return self.models[0][1]
        return self._by_served.get(labels.get(MODEL_LABEL, ""))


@dataclass(frozen=True)
class Plan:
    """One request: the query and how to map each answer series back to a model."""

    signal: str
    query: str
    groups: tuple[Group, ...]

    def model_for(self, labels: Mapping[str, str]) -> str | None:
        if len(self.groups) == 1:
            return self.groups[0].model_for(labels)
        tag = labels.get(GROUP_LABEL, "")
        if not tag.isdigit() or int(tag) >= len(self.groups):
            return None
        return self.groups[int(tag)].model_for(labels)


def template_for(signal: str, model: ModelSettings, defaults_queries: Mapping[str, str]) -> str:
    """The model's override, else the defaults override, else the built-in query."""
    return model.queries.get(signal) or defaults_queries.get(signal) or SIGNALS[signal]


def window_for(signal: str, model: ModelSettings) -> str | None:
    """The model's own ``{{window}}`` for ``signal`` (its ``slo.window``), or None: the rate window."""
    slo = model.policy.slo
    return duration(slo.window) if signal == SLO_SIGNAL and slo is not None else None


def group_models(
    signal: str, models: Sequence[ModelSettings], defaults_queries: Mapping[str, str]
) -> list[Group]:
    """Partition ``models`` into as few groups as batching allows (order-stable, linear time).

    Models with different SLO windows go into different groups, still in the same request: each
    group renders its own ``{{window}}``. Their ``maxQueueTime`` does not split them, because the
    bucket is picked after the answer (:func:`on_time`).
    """
    Key = tuple[str, tuple[tuple[str, str], ...], str | None]
    groups: list[tuple[Key, list[tuple[str, str]], bool]] = []
    served: list[set[str]] = []
    by_key: dict[Key, list[int]] = {}
    for m in models:
        key = (template_for(signal, m, defaults_queries), tuple(sorted(m.labels.items())),
               window_for(signal, m))
        own = signal in m.queries
        candidates = [] if own else by_key.setdefault(key, [])
        index = next((i for i in candidates if m.served_name not in served[i]), None)
        if index is None:
            index = len(groups)
            groups.append((key, [], not own))
            served.append(set())
            candidates.append(index)
        groups[index][1].append((m.served_name, m.name))
        served[index].add(m.served_name)
    return [Group(template, labels, tuple(pairs), keyed, window)
            for (template, labels, window), pairs, keyed in groups]


def plan(signal: str, groups: Sequence[Group], *, window: str) -> Plan:
    """One query for ``groups``: tagged sub-queries joined with ``or`` when there are several."""
    parts = [
        render(g.template, matchers=matchers([s for s, _ in g.models], dict(g.labels)),
               window=g.window or window)
        for g in groups
    ]
    if len(parts) == 1:
        return Plan(signal, parts[0], tuple(groups))
    tagged = [
        f'label_replace({p}, "{GROUP_LABEL}", "{i}", "", "")' for i, p in enumerate(parts)
    ]
    return Plan(signal, " or ".join(tagged), tuple(groups))


def plans(
    signal: str,
    models: Sequence[ModelSettings],
    defaults_queries: Mapping[str, str],
    *,
    window: str,
    max_query_chars: int,
) -> list[Plan]:
    """Requests for ``signal`` over ``models``: one, unless the query outgrows ``max_query_chars``.

    The client sends queries in the URL (prometheus-api-client GETs): a query for thousands of
    models is split into parts sized from the first rendering, which keeps it under proxies' URL
    limits (e.g. 2,000 models -> 4 requests per signal at the default budget).
    """
    if not models:
        return []
    groups = group_models(signal, models, defaults_queries)
    p = plan(signal, groups, window=window)
    if len(p.query) <= max_query_chars or len(models) <= 1:
        return [p]
    size = math.ceil(len(models) / (len(p.query) // max_query_chars + 1))
    return [
        part
        for first in range(0, len(models), size)
        for part in plans(signal, models[first:first + size], defaults_queries, window=window,
                          max_query_chars=max_query_chars)
    ]


# --- answers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One answer series: its labels and (time, value) points (one point for an instant query)."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]


def parse_result(raw: object, key: str) -> list[Sample]:
    """The ``data.result`` of a vector (``key="value"``) or matrix (``"values"``) answer.

    Raises ValueError for anything else (a scalar, a series without points, a value that is not
    a string...): garbage is refused as a whole, never half-read.
    """
    if not isinstance(raw, list):
        raise ValueError(f"result is {type(raw).__name__}, expected a list of series")
    try:
        return [_sample(item, key) for item in raw]
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"malformed series: {exc!r}"[:300]) from None


def bound(le: str) -> float | None:
    """A bucket's upper bound from its ``le`` label: "1", "1.0", "1e+00" and "+Inf" all parse.

    None for anything else (a missing or garbled label): such a series is no bucket.
    """
    try:
        value = float(le)
    except ValueError:
        return None
    return None if math.isnan(value) else value


BOUND_TOLERANCE = 1e-9
"""Relative slack when comparing a bound with ``maxQueueTime`` or a share with 1: both sides come
from decimal text ("300ms" in the config, "0.3" in ``le``), and sums of the same counts in another
order may differ in the last bit."""


def on_time(buckets: Mapping[float, float], max_queue_time: float) -> tuple[float, float] | None:
    """(requests that waited at most ``max_queue_time``, all requests) from cumulative counts by
    bucket bound, or None when the histogram lacks the total (``+Inf``) or a bound that low.

    The bound used is the largest one <= ``max_queue_time``: a request counts as on time only if
    the histogram proves it waited no longer (so a ``maxQueueTime`` between two bounds is read
    conservatively, at the lower one).
    """
    total = buckets.get(math.inf)
    within = [b for b in buckets if b <= max_queue_time * (1 + BOUND_TOLERANCE)]
    if total is None or not within:
        return None
    return buckets[max(within)], total


def hygiene(value: float) -> str | None:
    """Why a value is refused, or None. Every signal here is non-negative by definition."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf"
    return "negative" if value < 0 else None


def _sample(item: Any, key: str) -> Sample:
    labels = item["metric"]
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise TypeError("metric must map label names to strings")
    points = [item["value"]] if key == "value" else item["values"]
    if not isinstance(points, list) or not points:
        raise TypeError(f"{key} must be a non-empty list")
    return Sample(labels, tuple(_point(p) for p in points))


def _point(point: Any) -> tuple[float, float]:
    if not isinstance(point, list) or len(point) != 2 or not isinstance(point[0], int | float):
        raise TypeError(f"point {point!r} is not [time, value]")
    value = point[1]
    # Prometheus encodes sample values as strings ("1.5", "NaN", "+Inf"); a bare number is garbage.
    if not isinstance(value, str):
        raise TypeError(f"sample value {value!r} is not a string")
    return float(point[0]), float(value)

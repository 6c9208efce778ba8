"""Config checks only the Prometheus edge can make: query templates, labels, auth combinations.

Part of config validation everywhere a config is read (``check-config``, load, file and
ConfigMap reload), through :meth:`scaler.edges.prometheus.PrometheusEdge.problems`.

Query templates are parsed by a real PromQL parser (``promql-parser``, Prometheus' grammar in
Rust) after their placeholders are filled, so ``rat(...)`` or a ``[1x]`` window is refused when
the config is read, not when Prometheus first answers 400 on every refresh.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import promql_parser

from scaler.core.config import PrometheusSettings, Settings
from scaler.edges.prometheus.promql import GROUP_LABEL, MODEL_LABEL, PLACEHOLDERS, SIGNALS, render
from scaler.edges.prometheus.promql import LABEL_NAME as _LABEL_NAME
from scaler.edges.prometheus.promql import PLACEHOLDER_PATTERN as _PLACEHOLDER

_CLOSERS = {")": "(", "]": "[", "}": "{"}

# Prometheus 2.x's name for double_exponential_smoothing (renamed in 3.0): still valid on the
# servers many clusters run, so it must not be refused here.
promql_parser.register_extra_functions([promql_parser.Function(
    "holt_winters", [promql_parser.ValueType.Matrix, promql_parser.ValueType.Scalar,
                     promql_parser.ValueType.Scalar], promql_parser.ValueType.Vector)])

_QUOTED = re.compile(r"'([^']+)'")
_TRAILING = re.compile(r":\s*(\S+)\s*$")


def validate_queries(queries: Mapping[str, str], *, batched: bool = False) -> list[str]:
    """Problems in query overrides, each ``"<signal>: <problem>"``; empty when all are fine.

    ``batched``: the overrides are ``defaults.queries``, shared by all models and sent as one
    query for all of them, so each must use ``{{matchers}}`` (per-model overrides need not:
    ``sum(rate(gateway_requests_total{route="/llama"}[{{window}}]))`` is a fine override).
    """
    problems: list[str] = []
    known = ", ".join(SIGNALS)
    for name, template in queries.items():
        if name not in SIGNALS:
            problems.append(f"{name}: unknown signal {name!r} (known: {known})")
            continue
        problems += [f"{name}: {p}" for p in _template_problems(template, batched=batched)]
    return problems


def validate_labels(labels: Mapping[str, str]) -> list[str]:
    """Problems in a model's extra label matchers, each ``"<label>: <problem>"``."""
    problems: list[str] = []
    for key in labels:
        if not _LABEL_NAME.fullmatch(key):
            problems.append(f"{key}: not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")
        elif key.startswith("__"):
            problems.append(f"{key}: labels starting with '__' are reserved")
        elif key in (MODEL_LABEL, GROUP_LABEL):
            problems.append(f"{key}: set by prewarm (use servedModelName for {MODEL_LABEL})")
    return problems


def _template_problems(template: str, *, batched: bool) -> list[str]:
    if not template.strip():
        return ["empty query"]
    problems: list[str] = []
    used = {m.group(1) for m in _PLACEHOLDER.finditer(template)}
    allowed = ", ".join(f"{{{{{p}}}}}" for p in PLACEHOLDERS)
    problems += [
        f"unknown placeholder {{{{{p}}}}} (known: {allowed})"
        for p in sorted(used - set(PLACEHOLDERS))
    ]
    if batched and "matchers" not in used:
        problems.append("must use {{matchers}} (a defaults query is sent for all models at once)")
    if not problems:
        sample = render(template, matchers='model_name="m"', window="1m")
        problems += _bracket_problems(sample) or _syntax_problems(template, sample)
    return problems


def _syntax_problems(template: str, sample: str) -> list[str]:
    """What the PromQL parser says about the rendered ``sample``, with the column in ``template``
    where the parser's culprit stands (when it names one that occurs once)."""
    try:
        promql_parser.parse(sample)
    except ValueError as exc:
        message = str(exc)
        column = _column(template, message)
        where = f" at column {column}" if column is not None else ""
        return [f"not valid PromQL{where}: {message}"]
    return []


def _column(template: str, message: str) -> int | None:
    """1-based column of the token the parser's message quotes (``unknown function with name
    'rat'``, ``bad number or duration syntax: 1x``); None when it is absent or ambiguous."""
    found = _QUOTED.search(message) or _TRAILING.search(message)
    if found is None:
        return None
    token = found.group(1)
    # A whole token only: 'rat' must not match inside 'rate', '1x' not inside '11x'.
    edges = r"(?<![\w:.]){}(?![\w:])" if re.fullmatch(r"[\w:.]+", token) else "{}"
    hits = [m.start() for m in re.finditer(edges.format(re.escape(token)), template)]
    return hits[0] + 1 if len(hits) == 1 else None


def _bracket_problems(query: str) -> list[str]:
    """Unbalanced brackets or an open string: the mistakes a config edit typically makes."""
    stack: list[str] = []
    quote_char: str | None = None
    escaped = False
    for ch in query:
        if quote_char is not None:
            if escaped:
                escaped = False
            elif ch == "\\" and quote_char != "`":
                escaped = True
            elif ch == quote_char:
                quote_char = None
        elif ch in "\"'`":
            quote_char = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in _CLOSERS and (not stack or stack.pop() != _CLOSERS[ch]):
            return [f"unbalanced {ch!r}"]
    if quote_char is not None:
        return [f"unterminated string ({quote_char})"]
    return [f"unclosed {stack[-1]!r}"] if stack else []


def validate_settings(settings: PrometheusSettings) -> list[str]:
    """Problems in the ``prometheus`` section that its field types cannot catch."""
    problems: list[str] = []
    if settings.bearerTokenFile and settings.basicAuth is not None:
        problems.append("bearerTokenFile: set either bearerTokenFile or basicAuth, not both")
    if settings.insecureSkipVerify and settings.caFile:
        problems.append("insecureSkipVerify: set either caFile or insecureSkipVerify, not both")
    lowered = {k.lower() for k in settings.headers}
    if "authorization" in lowered and (settings.bearerTokenFile or settings.basicAuth):
        problems.append("headers: Authorization is set by bearerTokenFile/basicAuth")
    return problems


def config_problems(settings: Settings) -> list[str]:
    """Every Prometheus-related problem in a parsed config, each as ``key.path: problem``.

    For config validation (``check-config``, load and reload): unknown signal names, bad query
    templates, bad extra labels, conflicting auth settings.
    """
    problems = [f"defaults.queries.{p}"
                for p in validate_queries(settings.defaults.queries, batched=True)]
    for i, m in enumerate(settings.models):
        problems += [f"models[{i}].queries.{p}" for p in validate_queries(m.queries)]
        problems += [f"models[{i}].labels.{p}" for p in validate_labels(m.labels)]
    if settings.prometheus is not None:
        problems += [f"prometheus.{p}" for p in validate_settings(settings.prometheus)]
    return problems

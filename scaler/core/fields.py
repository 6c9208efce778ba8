"""Declarative config fields: one description drives parsing, validation and the JSON Schema.

Each settings dataclass field carries ``metadata={"spec": Kind, "key": "camelKey", "doc": ...}``.
:func:`parse_section` walks the fields of a dataclass, converts each value with its
:class:`~scaler.core.kinds.Kind` (YAML, or a KEDA trigger's string metadata), and collects every
problem as ``path: message`` instead of stopping at the first, so one run of
``prewarm check-config`` shows them all. Durations follow :mod:`forecasting.durations`, the
grammar the command-line flags use too.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from forecasting.durations import format_duration, parse_duration
from scaler.core.kinds import (
    Bool,
    Duration,
    DurationList,
    Flatten,
    Float,
    Int,
    Invalid,
    Kind,
    Raw,
    Section,
    SectionList,
    Str,
    StrMap,
)

__all__ = [
    "Bool", "Duration", "DurationList", "Flatten", "Float", "Int", "Invalid", "Kind", "Problems",
    "Raw", "Section", "SectionList", "Str", "StrMap", "check_all", "field", "format_duration",
    "json_schema", "known_keys", "markdown_reference", "parse_duration", "parse_section",
    "to_plain",
]

T = TypeVar("T")


def field(
    key: str, spec: Kind, doc: str, *, default: Any = dataclasses.MISSING, factory: Any = None
) -> Any:
    """A dataclass field described for parsing and for the JSON Schema."""
    meta = {"key": key, "spec": spec, "doc": doc}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Problems:
    """Collects ``path: message`` errors and unknown-key warnings."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}" if path else message)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def did_you_mean(key: str, known: Sequence[str]) -> str:
    """`` (did you mean refreshInterval?)`` for a near miss among ``known``, else ``""``.

    A key that differs only in case is always suggested; otherwise difflib's closest match
    (ratio >= 0.6), so a typo gets a hint and an unrelated key gets none."""
    by_case = {k.lower(): k for k in known}
    close = ([by_case[key.lower()]] if key.lower() in by_case
             else difflib.get_close_matches(key, list(known), n=1, cutoff=0.6))
    return f" (did you mean {close[0]}?)" if close else ""


def known_keys(cls: type) -> list[str]:
    keys: list[str] = []
    for f in dataclasses.fields(cls):
        spec = f.metadata["spec"]
        keys.extend(known_keys(spec.cls) if isinstance(spec, Flatten) else [f.metadata["key"]])
    return keys


def parse_section(
    cls: type[T],
    raw: object,
    path: str,
    problems: Problems,
    *,
    base: Any = None,
    inherit: Mapping[type, Any] | None = None,
) -> T | None:
    """Parse ``raw`` into ``cls``; ``base`` supplies defaults for absent keys.

    ``inherit`` maps a flattened section class to the instance its absent keys default to, so
    keys under each ``models[i]`` inherit from ``defaults``.

    A value that fails to convert is recorded in ``problems`` and replaced by its default (None
    when required), so cross-field checks can still run and report everything in one pass.
    Returns None only when ``raw`` is not a mapping.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.error(path, f"must be a mapping, got {type(raw).__name__}")
        return None
    known = known_keys(cls)
    unknown = sorted(set(map(str, raw)) - set(known))
    for key in unknown:
        problems.warnings.append(f"{_join(path, key)}: unknown key, ignored{did_you_mean(key, known)}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        values[f.name] = _parse_field(f, raw, path, problems, base, inherit or {})
    return cls(**values)


def _field_default(f: dataclasses.Field[Any], base: Any) -> Any:
    if base is not None and hasattr(base, f.name):
        return getattr(base, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _parse_field(
    f: dataclasses.Field[Any],
    raw: Mapping[str, Any],
    path: str,
    problems: Problems,
    base: Any,
    inherit: Mapping[type, Any],
) -> Any:
    spec, key = f.metadata["spec"], f.metadata["key"]
    sub = _join(path, key)
    if isinstance(spec, Flatten):
        inner_base = getattr(base, f.name, None) if base is not None else inherit.get(spec.cls)
        return parse_section(spec.cls, raw, path, _Quiet(problems), base=inner_base,
                             inherit=inherit)
    if key not in raw or raw[key] is None:
        default = _field_default(f, base)
        if default is dataclasses.MISSING:
            problems.error(sub, "required")
        return None if default is dataclasses.MISSING else default
    value = raw[key]
    if isinstance(spec, Section):
        inner_base = getattr(base, f.name, None) if base is not None else None
        return parse_section(spec.cls, value, sub, problems, base=inner_base, inherit=inherit)
    if isinstance(spec, SectionList):
        if not isinstance(value, list):
            problems.error(sub, "must be a list")
            return ()
        items = [parse_section(spec.cls, v, f"{sub}[{i}]", problems, inherit=inherit)
                 for i, v in enumerate(value)]
        return tuple(i for i in items if i is not None)
    try:
        return spec.convert(value)
    except Invalid as exc:
        problems.error(sub, str(exc))
        default = _field_default(f, base)
        return None if default is dataclasses.MISSING else default


class _Quiet(Problems):
    """Shares errors with the parent but drops unknown-key warnings (the parent reports them)."""

    def __init__(self, parent: Problems) -> None:
        self.errors = parent.errors
        self.warnings = []


def json_schema(cls: type, *, title: str = "") -> dict[str, Any]:
    """JSON Schema (draft 2020-12) for a settings dataclass, from the same field descriptions."""
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        spec = f.metadata["spec"]
        if isinstance(spec, Flatten):
            inner = json_schema(spec.cls)
            props.update(inner["properties"])
            required.extend(inner.get("required", []))
            continue
        props[f.metadata["key"]] = _field_schema(f, spec)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.metadata["key"])
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": True}
    if required:
        out["required"] = required
    if title:
        out = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title, **out}
    return out


def _field_schema(f: dataclasses.Field[Any], spec: Kind) -> dict[str, Any]:
    if isinstance(spec, Section):
        schema = json_schema(spec.cls)
    elif isinstance(spec, SectionList):
        schema = {"type": "array", "items": json_schema(spec.cls)}
    else:
        schema = spec.schema()
    return {**schema, "description": f.metadata["doc"]}


def to_plain(obj: Any, cls: type | None = None) -> Any:
    """A settings dataclass back to YAML-shaped data with the user's keys (for --print)."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return list(obj) if isinstance(obj, tuple) else obj
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value, spec = getattr(obj, f.name), f.metadata["spec"]
        if isinstance(spec, Flatten):
            out.update(to_plain(value))
        elif isinstance(spec, SectionList):
            out[f.metadata["key"]] = [to_plain(v) for v in value]
        elif isinstance(spec, Duration):
            if value is not None:  # an optional duration left unset (its default is computed)
                out[f.metadata["key"]] = format_duration(value)
        elif isinstance(spec, DurationList):
            out[f.metadata["key"]] = [format_duration(v) for v in value]
        elif value is not None:
            out[f.metadata["key"]] = to_plain(value)
    return out


def check_all(checks: Sequence[tuple[bool, str, str]], problems: Problems) -> None:
    """Record ``(failed, path, message)`` cross-field checks."""
    for failed, path, message in checks:
        if failed:
            problems.error(path, message)


def markdown_reference(cls: type, *, prefix: str = "") -> list[str]:
    """Rows ``| key | type | default | description |`` for every field, nested sections flattened."""
    rows: list[str] = []
    for f in dataclasses.fields(cls):
        spec, key = f.metadata["spec"], f.metadata["key"]
        if isinstance(spec, Flatten):
            rows += markdown_reference(spec.cls, prefix=prefix)
            continue
        path = f"{prefix}{key}"
        if isinstance(spec, Section | SectionList):
            suffix = "[]." if isinstance(spec, SectionList) else "."
            rows.append(f"| `{path}` | {'list' if suffix == '[].' else 'section'} | | {f.metadata['doc']} |")
            rows += markdown_reference(spec.cls, prefix=f"{path}{suffix}")
            continue
        rows.append(f"| `{path}` | {_type_name(spec)} | {_default_text(f, spec)} | {f.metadata['doc']} |")
    return rows


def _type_name(spec: Kind) -> str:
    return {Duration: "duration", Int: "integer", Float: "number", Bool: "boolean", Str: "string",
            StrMap: "map", Raw: "list", DurationList: "list of durations"}.get(type(spec), "value")


def _default_text(f: dataclasses.Field[Any], spec: Kind) -> str:
    default = _field_default(f, None)
    if default is dataclasses.MISSING:
        return "**required**"
    if default is None or default == {} or default == ():
        return ""
    if isinstance(spec, Duration):
        return format_duration(default)
    if isinstance(spec, DurationList):
        return "[" + ", ".join(format_duration(d) for d in default) + "]"
    return f"`{str(default).lower() if isinstance(default, bool) else default}`"

"""Declarative config fields: one description drives parsing, validation and the JSON Schema.

Each settings dataclass field carries ``metadata={"spec": Kind, "key": "camelKey", "doc": ...}``.
:func:`parse_section` walks the fields of a dataclass, converts each value from YAML (or from a
KEDA trigger's string metadata), and collects every problem as ``path: message`` instead of
stopping at the first, so one run of ``prewarm check-config`` shows them all.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


class Invalid(ValueError):
    """A value is wrong; the message says why, without the path (the caller adds it)."""


def parse_duration(value: object) -> float:
    """Seconds from ``"90s"``, ``"1h30m"``, ``"2d"``, ``"500ms"`` or a plain number of seconds."""
    if isinstance(value, bool):
        raise Invalid(f"{value!r} is not a duration (use e.g. 30s, 10m, 1h30m, 7d)")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise Invalid(f"{text!r} is not a duration (use e.g. 30s, 10m, 1h30m, 7d)")
    return total


def format_duration(seconds: float) -> str:
    """Shortest exact form: 600 -> '10m', 90 -> '90s', 86400 -> '1d'."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Kind:
    """How one value is converted and what JSON Schema describes it."""

    def convert(self, value: object) -> Any:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError


def _check_range(x: float, lo: float | None, hi: float | None, show: Callable[[float], str]) -> None:
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        low = show(lo) if lo is not None else "-inf"
        high = show(hi) if hi is not None else "inf"
        raise Invalid(f"{show(x)}, must be in [{low}; {high}] range")


@dataclass(frozen=True)
class Duration(Kind):
    min: float | None = None
    max: float | None = None

    def convert(self, value: object) -> float:
        seconds = parse_duration(value)
        _check_range(seconds, self.min, self.max, format_duration)
        return seconds

    def schema(self) -> dict[str, Any]:
        return {
            "oneOf": [
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d|w))+$"},
                {"type": "number", "minimum": self.min or 0},
            ],
            "description": "duration, e.g. 30s, 10m, 1h30m, 7d (a plain number is seconds)",
        }


@dataclass(frozen=True)
class Int(Kind):
    min: int | None = None
    max: int | None = None

    def convert(self, value: object) -> int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise Invalid(f"{value!r} is not a whole number")
        try:
            number = int(str(value).strip()) if isinstance(value, str) else int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise Invalid(f"{value!r} is not a whole number") from None
        _check_range(number, self.min, self.max, lambda x: str(int(x)))
        return number

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer"}
        if self.min is not None:
            out["minimum"] = self.min
        if self.max is not None:
            out["maximum"] = self.max
        return out


@dataclass(frozen=True)
class Float(Kind):
    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False

    def convert(self, value: object) -> float:
        if isinstance(value, bool):
            raise Invalid(f"{value!r} is not a number")
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise Invalid(f"{value!r} is not a number") from None
        if not math.isfinite(number):
            raise Invalid(f"{value!r} is not a finite number")
        if self.exclusive_min and self.min is not None and number <= self.min:
            raise Invalid(f"{number:g}, must be > {self.min:g}")
        _check_range(number, self.min, self.max, lambda x: f"{x:g}")
        return number

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "number"}
        if self.min is not None:
            out["exclusiveMinimum" if self.exclusive_min else "minimum"] = self.min
        if self.max is not None:
            out["maximum"] = self.max
        return out


@dataclass(frozen=True)
class Bool(Kind):
    def convert(self, value: object) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise Invalid(f"{value!r} is not a boolean (true or false)")

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Str(Kind):
    pattern: str | None = None
    hint: str = ""
    max_length: int = 253
    choices: tuple[str, ...] = ()

    def convert(self, value: object) -> str:
        if not isinstance(value, str):
            raise Invalid(f"{value!r} is not a string")
        if len(value) > self.max_length:
            raise Invalid(f"{value[:40]!r}... is longer than {self.max_length} characters")
        if self.choices and value not in self.choices:
            raise Invalid(f"{value!r} is not one of {', '.join(self.choices)}")
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise Invalid(f"{value!r} is not valid: {self.hint or 'must match ' + self.pattern}")
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string", "maxLength": self.max_length}
        if self.pattern:
            out["pattern"] = f"^(?:{self.pattern})$"
        if self.choices:
            out["enum"] = list(self.choices)
        return out


@dataclass(frozen=True)
class StrMap(Kind):
    def convert(self, value: object) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise Invalid("must be a mapping of strings to strings")
        bad = [k for k, v in value.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise Invalid(f"key {bad[0]!r}: keys and values must be strings (quote numbers)")
        return dict(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": {"type": "string"}}


@dataclass(frozen=True)
class Raw(Kind):
    """A list of mappings passed through verbatim (e.g. Kubernetes tolerations)."""

    def convert(self, value: object) -> tuple[dict[str, Any], ...]:
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise Invalid("must be a list of mappings")
        return tuple(dict(v) for v in value)

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "object"}}


@dataclass(frozen=True)
class DurationList(Kind):
    item: Duration = Duration(min=60)

    def convert(self, value: object) -> tuple[float, ...]:
        if not isinstance(value, list):
            raise Invalid("must be a list of durations, e.g. [1d, 7d]")
        return tuple(self.item.convert(v) for v in value)

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item.schema()}


@dataclass(frozen=True)
class Section(Kind):
    """A nested mapping parsed into dataclass ``cls``."""

    cls: type


@dataclass(frozen=True)
class SectionList(Kind):
    cls: type


@dataclass(frozen=True)
class Flatten(Kind):
    """Fields of ``cls`` read from the same mapping as the parent (shared per-model policy keys)."""

    cls: type


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
    unknown = sorted(set(map(str, raw)) - set(known_keys(cls)))
    for key in unknown:
        problems.warnings.append(f"{_join(path, key)}: unknown key, ignored")
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

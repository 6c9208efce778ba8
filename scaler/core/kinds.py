"""The kinds of config value: how one value is converted, checked and described in JSON Schema.

Each :class:`Kind` converts a value from YAML (or from a KEDA trigger's string metadata) and
raises :class:`Invalid` with a message that leaves out the key path (the caller in
:mod:`scaler.core.fields` adds it, so every problem is reported by the user's key).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from forecasting.durations import SCHEMA_PATTERN, DurationError, format_duration, parse_duration


class Invalid(ValueError):
    """A value is wrong; the message says why, without the path (the caller adds it)."""


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
        try:
            seconds = parse_duration(value)
        except DurationError as exc:
            raise Invalid(str(exc)) from None
        _check_range(seconds, self.min, self.max, format_duration)
        return seconds

    def schema(self) -> dict[str, Any]:
        return {
            "oneOf": [{"type": "string", "pattern": SCHEMA_PATTERN},
                      {"type": "number", "minimum": self.min or 0}],
            "description": "duration, e.g. 90s, 5m, 1h30m, 7d (text needs a unit; a number is "
                           "seconds)",
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

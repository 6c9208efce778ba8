"""The one duration grammar of prewarm: config files, trigger metadata and command-line flags.

A duration is one or more ``<number><unit>`` parts, units ``ms s m h d w``: ``90s``, ``5m``,
``1h30m``, ``1.5h``, ``500ms``, ``2w1d``. In text (flags, trigger metadata, quoted YAML) the
unit is required: a bare ``5`` is refused rather than guessed (``--cold-start 5`` used to mean
five seconds when five minutes was meant). The one exception is ``0``, the same in every unit
(as in Go's ``time.ParseDuration``, which KEDA and Kubernetes users know). A YAML or Python
*number* is still seconds: existing configs and the settings the backtest and demo build in
code rely on it. Negative durations are refused: nothing in prewarm waits backwards.

It lives in ``forecasting`` so that both packages share it: ``forecasting`` never imports
``scaler``, and ``scaler`` imports this module.
"""

from __future__ import annotations

import argparse
import math
import re

UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
"""Seconds per unit; ``ms`` before ``m`` in the pattern so ``500ms`` is not ``500m`` + ``s``."""

EXPECTED = "expected a duration like 90s, 5m or 1h30m"

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION = re.compile(rf"(?:{_PART.pattern})+")
SCHEMA_PATTERN = rf"^(?:0|{_DURATION.pattern})$"
"""The grammar as a JSON Schema ``pattern`` (the config schema uses it)."""

_LOOKS_NEGATIVE = re.compile(r"^-\d\S*$")
"""A flag value such as ``-3m`` or ``-5``: argparse must hand it to the flag, not treat it as
an option, so the user hears why it is wrong (negative) instead of 'expected one argument'."""


class DurationError(ValueError):
    """Text is not a duration; the message quotes it and gives the expected form."""


def parse_duration(value: object) -> float:
    """Seconds from a duration: ``"90s"`` -> 90.0, ``"1h30m"`` -> 5400.0, ``"500ms"`` -> 0.5.

    ``value`` may come from YAML (a number), trigger metadata or a flag (a string). Raises
    :class:`DurationError` for text that is a bare number other than 0, a negative value, an
    unknown unit, spaces inside or an empty string.
    """
    if isinstance(value, bool):
        raise DurationError(f"{value!r} is not a duration: {EXPECTED}")
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        return float(value)  # a number, not text: settings built in code, or a YAML number
    text = str(value).strip()
    if _DURATION.fullmatch(text):
        seconds = sum(float(n) * UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
        if not math.isfinite(seconds):  # 400 digits overflow a float
            raise DurationError(f"{text[:40]!r} is not a duration: too large; {EXPECTED}")
        return seconds
    if text.startswith("-"):
        raise DurationError(f"{text!r} is not a duration: it is negative; {EXPECTED}")
    if _is_number(text):
        if float(text) == 0:
            return 0.0
        raise DurationError(f"{text!r} is not a duration: a bare number has no unit; {EXPECTED}")
    raise DurationError(f"{text!r} is not a duration: {EXPECTED}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def format_duration(seconds: float) -> str:
    """Shortest exact form, read back by :func:`parse_duration`: 600 -> '10m', 90 -> '90s'."""
    for unit in ("w", "d", "h", "m", "s"):
        size = UNIT_SECONDS[unit]
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def accept_negative_durations(parser: argparse.ArgumentParser) -> None:
    """Let ``--flag -3m`` reach the flag's parser (which refuses it by name) instead of argparse.

    argparse treats any argument starting with ``-`` as an option unless it looks like a
    negative *number*; a negative duration does not, so argparse stopped with 'expected one
    argument' before the grammar could say what is wrong. Widening its negative-number pattern
    is safe because no prewarm option starts with ``-`` and a digit.
    """
    numbers = parser._negative_number_matcher
    parser._negative_number_matcher = re.compile(f"{numbers.pattern}|{_LOOKS_NEGATIVE.pattern}")

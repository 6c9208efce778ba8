"""Errors the scaler raises on purpose.

    PrewarmError
    ├── ConfigError            a config file, ConfigMap or CLI value is invalid (permanent: fix the input)
    ├── MetadataError          a ScaledObject trigger's metadata is invalid (-> INVALID_ARGUMENT)
    └── SourceError            a metrics source failed; ``reason`` is a short label for metrics
                               (temporary: retried next refresh, decisions hold meanwhile)
"""

from __future__ import annotations

from collections.abc import Sequence


class PrewarmError(Exception):
    pass


class ConfigError(PrewarmError):
    """Every problem found in one config, each as ``path: message``."""

    def __init__(self, problems: Sequence[str], *, source: str = "config") -> None:
        self.problems = tuple(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s):\n{lines}")


class MetadataError(PrewarmError):
    pass


class SourceError(PrewarmError):
    def __init__(self, message: str, *, reason: str = "error") -> None:
        self.reason = reason
        super().__init__(message)

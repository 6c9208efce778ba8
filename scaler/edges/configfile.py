"""Config from a YAML file (a mounted ConfigMap key), with hot reload that keeps the last good config.

A ConfigMap volume updates by swapping a symlink, so the watcher compares file *content*, not
inotify events or mtimes alone. A bad new file is logged and counted; the daemon keeps running on
the last good settings.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import yaml

from scaler.core.config import ParsedSettings, Settings, parse_settings
from scaler.core.errors import ConfigError

log = logging.getLogger("prewarm.config")


def parse_yaml_text(text: str, *, source: str) -> ParsedSettings:
    """Parse YAML text into settings; every problem (YAML syntax included) as one ConfigError."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}invalid YAML: {problem}"], source=source) from None
    parsed = parse_settings(raw, source=source)
    problems = adapter_problems(parsed.settings)
    if problems:
        raise ConfigError(problems, source=source)
    return parsed


def adapter_problems(settings: Settings) -> list[str]:
    """Checks only an adapter can make (PromQL overrides and labels, auth combinations)."""
    from scaler.edges.prometheus.source import config_problems

    return config_problems(settings)


def load_config_file(path: Path) -> ParsedSettings:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror or exc}"], source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not UTF-8 text: {exc}"], source=str(path)) from None
    return parse_yaml_text(text, source=str(path))


class ConfigFileWatcher:
    """Polls a config file; calls ``on_change`` with new valid settings, counts bad ones."""

    def __init__(self, path: Path, on_change: Callable[[ParsedSettings], None]) -> None:
        self.path = path
        self.on_change = on_change
        self.reloads_total = 0
        self.errors_total = 0
        self.last_error: str | None = None
        self._digest = self._read_digest()

    def _read_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def poll(self) -> bool:
        """Check once; True when a new valid config was applied."""
        digest = self._read_digest()
        if digest is None or digest == self._digest:
            return False
        self._digest = digest
        try:
            parsed = load_config_file(self.path)
        except ConfigError as exc:
            self.errors_total += 1
            self.last_error = str(exc)
            log.error("config reload rejected, keeping the last good config: %s", exc)
            return False
        for warning in parsed.warnings:
            log.warning("config %s: %s", self.path, warning)
        self.reloads_total += 1
        self.last_error = None
        self.on_change(parsed)
        log.info("config reloaded from %s (%d models)", self.path, len(parsed.settings.models))
        return True

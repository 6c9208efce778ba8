"""The config file edge: polls a YAML file (a mounted ConfigMap key) while it is the live source.

A ConfigMap volume updates by swapping a symlink, so the watcher compares file *content*, not
inotify events or mtimes alone. A bad new file is logged and counted; the daemon keeps running on
the last good settings. Parsing and validation are not done here: the app hands in ``parse``
(the core's checks plus every edge's), so this edge needs no other edge.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from scaler.core.config import ParsedSettings
from scaler.core.errors import ConfigError
from scaler.edges import Edge, ReloadStats, Task, named

log = logging.getLogger("prewarm.config")

Parse = Callable[[str, str], ParsedSettings]
"""(YAML text, source name) -> settings, or ConfigError naming every problem."""


def load_config_file(path: Path, parse: Parse) -> ParsedSettings:
    """Read ``path`` and parse it; unreadable and non-UTF-8 files are ConfigErrors too."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror or exc}"], source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not UTF-8 text: {exc}"], source=str(path)) from None
    return parse(text, str(path))


class ConfigFileEdge(Edge):
    """Polls ``path`` every ``poll_seconds``; hands new valid settings to ``on_settings``."""

    name = "configfile"

    def __init__(self, path: Path, parse: Parse, on_settings: Callable[[ParsedSettings], None],
                 *, poll_seconds: float = 2.0) -> None:
        self.path = path
        self.parse = parse
        self.on_settings = on_settings
        self.poll_seconds = poll_seconds
        self.stats = ReloadStats()
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
            parsed = load_config_file(self.path, self.parse)
        except ConfigError as exc:
            self.stats.rejected(exc)
            log.error("config reload rejected, keeping the last good config: %s", exc)
            return False
        for warning in parsed.warnings:
            log.warning("config %s: %s", self.path, warning)
        self.stats.applied()
        self.on_settings(parsed)
        log.info("config reloaded from %s (%d models)", self.path, len(parsed.settings.models))
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            self.poll()

    def tasks(self) -> list[Task]:
        return [named("config-watch", self._watch)]

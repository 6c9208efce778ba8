"""List+watch on the Api: a resumable stream of one collection, fed to a handler on the loop.

A list rebuilds the handler's view; watch events update it; a 410 Gone (expired
resourceVersion) or any error relists after a backoff, so the view converges whatever the API
server does. The HTTP stream is read in a thread; the handler runs on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import urllib3.exceptions

from scaler.edges.kubernetes.api import BACKOFF_SECONDS, WATCH_TIMEOUT_SECONDS, Api, KubeApiError, Obj

log = logging.getLogger("prewarm.kubernetes")

class WatchHandler(Protocol):
    """What a :class:`ListWatch` feeds, always on the event loop thread."""

    def replace(self, items: list[Obj]) -> None:
        """The full current list (on start and after every relist)."""
        ...

    def apply(self, event_type: str, obj: Obj) -> None:
        """ADDED, MODIFIED or DELETED."""
        ...


@dataclass
class WatchStats:
    relists: int = 0
    events: int = 0
    errors: int = 0
    last_error: str | None = None


@dataclass(eq=False)
class _Stream:
    """One watch request running in a worker thread; ``stop`` interrupts its blocking read."""

    response: Any = None
    stopped: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self.stopped.set()
        response = self.response
        if response is not None:
            # urllib3 >= 2.3: unblocks a read in progress in another thread.
            shutdown = getattr(response, "shutdown", None)
            if shutdown is not None:
                shutdown()


class ListWatch:
    """List, then watch from the list's resourceVersion; relist on 410 Gone and after errors.

    Every replica of the daemon runs its own (state is rebuilt from the API on start).
    """

    def __init__(
        self,
        api: Api,
        path: str,
        handler: WatchHandler,
        *,
        query: Mapping[str, str] | None = None,
        name: str = "",
    ) -> None:
        self.api = api
        self.path = path
        self.handler = handler
        self.query = dict(query or {})
        self.name = name or path
        self.stats = WatchStats()
        self.synced = asyncio.Event()
        """Set once the first list has been handed to the handler."""
        self._streams: set[_Stream] = set()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"k8s-watch-{self.name}")
        """This watch's own thread: list and stream, one at a time."""

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = BACKOFF_SECONDS[0]
        while True:
            try:
                items, version = await loop.run_in_executor(
                    self._executor, self.api.list_all, self.path, self.query)
                self.stats.relists += 1
                self.handler.replace(items)
                self.synced.set()
                while True:
                    version = await self._watch_once(version)
                    backoff = BACKOFF_SECONDS[0]
            except KubeApiError as exc:
                if exc.gone:
                    continue
                await self._failed(exc, backoff)
            except (OSError, ValueError, urllib3.exceptions.HTTPError) as exc:
                await self._failed(exc, backoff)
            backoff = min(BACKOFF_SECONDS[1], backoff * 2)

    async def _failed(self, exc: BaseException, backoff: float) -> None:
        self.stats.errors += 1
        self.stats.last_error = str(exc)
        log.warning("watch %s failed (%s); retrying in %.1fs", self.name, exc, backoff)
        await asyncio.sleep(backoff * random.uniform(0.8, 1.2))

    async def _watch_once(self, version: str) -> str:
        """One watch request until the server closes it; the resourceVersion to go on from."""
        loop = asyncio.get_running_loop()
        stream = _Stream()
        self._streams.add(stream)
        timeout = random.randint(*WATCH_TIMEOUT_SECONDS)
        try:
            return await loop.run_in_executor(
                self._executor, self._stream_events, stream, loop, version, timeout)
        finally:
            stream.stop()
            self._streams.discard(stream)

    def _stream_events(
        self, stream: _Stream, loop: asyncio.AbstractEventLoop, version: str, timeout: int
    ) -> str:
        try:
            if stream.stopped.is_set():
                return version
            response = self.api.open_watch(
                self.path, {**self.query, "resourceVersion": version}, timeout_seconds=timeout)
            stream.response = response
            try:
                # stop() reads .response after setting .stopped: one of the two sees the other.
                for event in () if stream.stopped.is_set() else _events(response):
                    if stream.stopped.is_set():
                        break
                    version = self._dispatch(event, loop, version)
            finally:
                response.close() if stream.stopped.is_set() else response.release_conn()
            return version
        except Exception:
            if stream.stopped.is_set():
                return version  # interrupted on purpose: the read error is the shutdown
            raise
        finally:
            stream.done.set()

    def _dispatch(self, event: Obj, loop: asyncio.AbstractEventLoop, version: str) -> str:
        kind = str(event.get("type", ""))
        obj = event.get("object") or {}
        if kind == "ERROR":
            raise KubeApiError(int(obj.get("code", 500)), str(obj.get("reason", "")),
                               str(obj.get("message", "")))
        new_version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if kind != "BOOKMARK":
            self.stats.events += 1
            loop.call_soon_threadsafe(self.handler.apply, kind, obj)
        return new_version

    def stop(self, wait_seconds: float = 2.0) -> None:
        """Interrupt running streams and wait (bounded) for their threads (used by close())."""
        streams = list(self._streams)
        for stream in streams:
            stream.stop()
        for stream in streams:
            stream.done.wait(wait_seconds)
        self._executor.shutdown(wait=False, cancel_futures=True)


def _events(response: Any) -> Iterator[Obj]:
    """Watch events, one JSON object per line (lines may span chunks)."""
    buffer = b""
    for chunk in response.stream(65536, decode_content=True):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)
    if buffer.strip():
        yield json.loads(buffer)

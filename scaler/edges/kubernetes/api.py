"""JSON over the Kubernetes API, and list+watch, on the official client's ApiClient.

Why not the generated ``CoreV1Api`` models: every object here is read for a handful of fields
(timestamps, conditions, GPU requests), and the generated models cost a pydantic validation per
object and a conversion back for every write. The official ``ApiClient`` still does everything
that matters: kubeconfig and in-cluster config, TLS, token refresh, proxies.

The client is blocking. Each call runs in a thread of the Api's own small pool (``Api.call``) and
each watch streams in a thread of its own, handing events to the event loop with
``call_soon_threadsafe``, so every store is only mutated on the loop. Neither uses asyncio's default
executor: a watch holds its thread for minutes, and a few of them would starve everything else the
app runs in that executor. Cancelling a watch shuts its socket down so the thread ends within
milliseconds, not at the server's watch timeout.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

log = logging.getLogger("prewarm.kubernetes")

Obj = dict[str, Any]
"""A Kubernetes object as decoded JSON."""

WATCH_TIMEOUT_SECONDS = (240, 480)
"""Server-side watch timeout range (random, so replicas do not relist together, as client-go)."""
REQUEST_TIMEOUT_SECONDS = 30.0
BACKOFF_SECONDS = (0.5, 30.0)
API_THREADS = 4
"""Threads for short blocking calls (Lease, balloons, state, Events): they never wait on each other."""

T = TypeVar("T")


class KubeApiError(Exception):
    """A non-2xx answer of the API server; ``reason`` is the Status reason (e.g. ``Conflict``)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{status} {reason}: {message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """409: a stale resourceVersion (Conflict) or a create of an existing name (AlreadyExists)."""
        return self.status == 409

    @property
    def forbidden(self) -> bool:
        return self.status == 403

    @property
    def gone(self) -> bool:
        """410: the watch's resourceVersion is too old; relist."""
        return self.status == 410


def _error_from(status: int, body: bytes) -> KubeApiError:
    try:
        decoded = json.loads(body)
    except ValueError:
        return KubeApiError(status, "Unknown", body[:200].decode("utf-8", "replace"))
    if not isinstance(decoded, dict):
        return KubeApiError(status, "Unknown", str(decoded)[:200])
    return KubeApiError(status, str(decoded.get("reason", "")), str(decoded.get("message", "")))


def load_api_client(kubeconfig: str | None) -> Any:
    """An ApiClient from a kubeconfig file, or the in-cluster service account when None."""
    configuration = k8s_client.Configuration()
    # The loaders are untyped: call them through Any.
    incluster: Any = k8s_config.load_incluster_config
    from_file: Any = k8s_config.load_kube_config
    if kubeconfig is None:
        incluster(client_configuration=configuration)
    else:
        from_file(config_file=kubeconfig, client_configuration=configuration)
    return k8s_client.ApiClient(configuration)


class Api:
    """Blocking JSON calls; ``path`` is the URL path (``/api/v1/namespaces/x/pods``)."""

    def __init__(self, api_client: Any, *, request_timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        self._client = api_client
        self._executor = ThreadPoolExecutor(API_THREADS, thread_name_prefix="k8s-api")
        self.request_timeout = request_timeout
        self.requests_total: dict[str, int] = {}
        """Requests by verb, for the metrics (as VPA instruments its Prometheus client)."""
        self.errors_total: dict[str, int] = {}
        """Failed requests by HTTP status (or ``network``)."""

    @classmethod
    def connect(cls, kubeconfig: str | None) -> Api:
        return cls(load_api_client(kubeconfig))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking function (usually one of this Api's calls) off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def get(self, path: str, query: Mapping[str, str] | None = None) -> Obj:
        return self.request("GET", path, query=query)

    def create(self, path: str, body: Obj) -> Obj:
        return self.request("POST", path, body=body)

    def replace(self, path: str, body: Obj) -> Obj:
        """PUT: fails with 409 when ``body.metadata.resourceVersion`` is stale (optimistic lock)."""
        return self.request("PUT", path, body=body)

    def merge_patch(self, path: str, body: Obj) -> Obj:
        return self.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Obj | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        self.requests_total[method] = self.requests_total.get(method, 0) + 1
        response = self._send(method, path, query=query, body=body, content_type=content_type,
                              timeout=self.request_timeout)
        try:
            data = response.data
        finally:
            response.release_conn()
        if not 200 <= response.status <= 299:
            self._count_error(str(response.status))
            raise _error_from(response.status, data)
        decoded = json.loads(data) if data else {}
        return decoded if isinstance(decoded, dict) else {"value": decoded}

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None,
        body: Obj | None,
        content_type: str,
        timeout: float | tuple[float, float],
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        verb, url, headers, payload, _ = self._client.param_serialize(
            method, path, query_params=list((query or {}).items()), header_params=headers,
            body=body, auth_settings=["BearerToken"],
        )
        try:
            return self._client.call_api(verb, url, headers, payload, _request_timeout=timeout).response
        except Exception:
            self._count_error("network")
            raise

    def _count_error(self, key: str) -> None:
        self.errors_total[key] = self.errors_total.get(key, 0) + 1

    def list_all(self, path: str, query: Mapping[str, str] | None = None) -> tuple[list[Obj], str]:
        """Every item (paged by 500) and the list's resourceVersion to watch from."""
        items: list[Obj] = []
        params = {**(query or {}), "limit": "500"}
        while True:
            page = self.get(path, params)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return items, str(meta.get("resourceVersion", ""))
            params["continue"] = str(meta["continue"])

    def open_watch(self, path: str, query: Mapping[str, str], *, timeout_seconds: int) -> Any:
        """A streaming watch response (urllib3 HTTPResponse); raises KubeApiError on non-2xx."""
        self.requests_total["WATCH"] = self.requests_total.get("WATCH", 0) + 1
        params = {**query, "watch": "true", "timeoutSeconds": str(timeout_seconds),
                  "allowWatchBookmarks": "true"}
        response = self._send("GET", path, query=params, body=None, content_type="",
                              timeout=(self.request_timeout, timeout_seconds + 30.0))
        if not 200 <= response.status <= 299:
            try:
                data = response.data
            finally:
                response.release_conn()
            self._count_error(str(response.status))
            raise _error_from(response.status, data)
        return response


def parse_time(value: object) -> float | None:
    """RFC 3339 (``2024-05-01T12:00:00Z``, with or without microseconds) -> Unix seconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def format_micro_time(unix_seconds: float) -> str:
    """Unix seconds -> MicroTime (``2024-05-01T12:00:00.123456Z``) as Leases and Events want."""
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_time(unix_seconds: float) -> str:
    """Unix seconds -> Time (second precision) as ``firstTimestamp`` wants."""
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def quantity_int(value: object) -> int:
    """An integer resource quantity (GPUs: ``"8"``); 0 when absent or not a whole number."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                return 0
            return int(number) if number.is_integer() else 0
    return 0


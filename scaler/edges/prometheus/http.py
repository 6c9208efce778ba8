"""The HTTP side of the Prometheus edge: credentials read per request, failures classified.

A failed request becomes a :class:`SourceError` with a stable ``reason`` (the label of
``prewarm_source_errors``); the source retries only the reasons in ``RETRIED``.
"""

from __future__ import annotations

import re

import requests
import urllib3
from prometheus_api_client.exceptions import PrometheusApiClientException

from scaler.core.config import PrometheusSettings
from scaler.core.errors import SourceError

RETRIED = frozenset({"unreachable", "timeout", "throttled", "http_5xx", "bad_response"})
_STATUS = re.compile(r"HTTP Status Code (\d{3})")


class FileAuth(requests.auth.AuthBase):
    """Bearer token or basic auth read from files on every request (rotated secrets just work)."""

    def __init__(self, settings: PrometheusSettings) -> None:
        self._token_file = settings.bearerTokenFile
        self._basic = settings.basicAuth

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._token_file:
            token = read_secret(self._token_file)
            request.headers["Authorization"] = f"Bearer {token}"
        elif self._basic is not None:
            password = read_secret(self._basic.passwordFile)
            basic = requests.auth.HTTPBasicAuth(self._basic.username, password)
            return basic(request)
        return request


class CredentialsError(Exception):
    pass


def read_secret(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc.strerror or exc}") from exc


def classify(exc: BaseException) -> SourceError | None:
    """A SourceError with a stable ``reason`` for a failed request; None: not ours to handle."""
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, CredentialsError):
        return SourceError(f"prometheus credentials: {exc}", reason="credentials")
    if isinstance(exc, requests.exceptions.SSLError):
        return SourceError(f"prometheus TLS error: {exc}", reason="tls")
    if isinstance(exc, requests.Timeout):
        return SourceError(f"prometheus timed out: {exc}", reason="timeout")
    if isinstance(exc, requests.ConnectionError | urllib3.exceptions.HTTPError):
        return SourceError(f"prometheus unreachable: {exc}", reason="unreachable")
    if isinstance(exc, PrometheusApiClientException):
        match = _STATUS.search(str(exc))
        status = int(match.group(1)) if match else 0
        reason = {408: "timeout", 429: "throttled"}.get(status) or (
            "http_5xx" if status >= 500 else "http_4xx" if status >= 400 else "bad_response")
        return SourceError(f"prometheus answered {str(exc)[:300]}", reason=reason)
    if isinstance(exc, ValueError | KeyError | TypeError | requests.RequestException):
        return SourceError(f"prometheus answer unreadable: {exc!r}"[:300], reason="bad_response")
    return None

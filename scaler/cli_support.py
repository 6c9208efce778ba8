"""What every `prewarm` subcommand shares: the version, logging (text or JSON), the one error
prefix, and the ``PREWARM_*`` environment defaults of ``serve``'s flags.

Kept apart from :mod:`scaler.cli` so the command table there stays a list of commands.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class UsageError(ValueError):
    """A bad flag or environment value; the message names it. Exit status 2."""


def version() -> str:
    """The installed package's version (its metadata, not a constant that can drift)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("prewarm")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def error_line(command: str, message: str) -> str:
    """The one prefix every command's errors carry: ``prewarm <command>: error: <message>``."""
    return f"prewarm {command}: error: {message}"


# --- logging ---------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and the exception's
    traceback when there is one, so a log pipeline never has to stitch lines back together."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str, fmt: str) -> None:
    """Root logging to stderr in ``fmt``; replaces handlers a library may have installed."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job run otherwise
    # Python warnings go through logging too, so a JSON log stays one object per line.
    logging.captureWarnings(fmt == "json")


def add_logging_flags(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``--log-format``; SUPPRESS keeps a subcommand's absent flag from
    overwriting the same flag given before the subcommand (``prewarm --log-level DEBUG serve``)."""
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default=argparse.SUPPRESS,
                        help="log level (env PREWARM_LOG_LEVEL; default INFO for serve, WARNING "
                             "for the other commands)")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default=argparse.SUPPRESS,
                        help="text, or json: one object per line with time, level, logger, message "
                             "and exception (env PREWARM_LOG_FORMAT; default text)")


def logging_choice(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str, str]:
    """(level, format) from the flags, else the environment, else the command's default."""
    level = getattr(args, "log_level", None) or _env_choice(environ, "PREWARM_LOG_LEVEL", LOG_LEVELS)
    fmt = getattr(args, "log_format", None) or _env_choice(environ, "PREWARM_LOG_FORMAT", LOG_FORMATS)
    return level or ("INFO" if args.command == "serve" else "WARNING"), fmt or "text"


def _env_choice(environ: Mapping[str, str], var: str, choices: tuple[str, ...]) -> str | None:
    text = environ.get(var, "").strip()
    if not text:
        return None
    value = text.upper() if choices is LOG_LEVELS else text.lower()
    if value not in choices:
        raise UsageError(f"{var}={text!r}: expected one of {', '.join(choices)}")
    return value


# --- serve's environment defaults ----------------------------------------------------------------


def _host_port(text: str) -> str:
    _, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT, e.g. 0.0.0.0:9090")
    return text


def _readable_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise ValueError("no such file" if not path.exists() else "not a file")
    if not os.access(path, os.R_OK):
        raise ValueError("not readable")
    return path


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected seconds, e.g. 10") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError("expected seconds >= 0, e.g. 10")
    return value


@dataclass(frozen=True)
class EnvDefault:
    """A ``serve`` flag whose default can come from ``var``; the flag on the command line wins."""

    dest: str
    var: str
    default: Any
    convert: Callable[[str], Any]


SERVE_ENV = (
    EnvDefault("config", "PREWARM_CONFIG", None, _readable_file),
    EnvDefault("listen", "PREWARM_LISTEN", "0.0.0.0:9090", _host_port),
    EnvDefault("metrics_listen", "PREWARM_METRICS_LISTEN", "0.0.0.0:8080", _host_port),
    EnvDefault("tls_cert", "PREWARM_TLS_CERT", None, _readable_file),
    EnvDefault("tls_key", "PREWARM_TLS_KEY", None, _readable_file),
    EnvDefault("tls_client_ca", "PREWARM_TLS_CLIENT_CA", None, _readable_file),
    EnvDefault("kubeconfig", "PREWARM_KUBECONFIG", None, lambda text: str(_readable_file(text))),
    EnvDefault("grace", "PREWARM_GRACE", 10.0, _seconds),
    EnvDefault("ready_timeout", "PREWARM_READY_TIMEOUT", 60.0, _seconds),
)
ENV_BY_DEST = {e.dest: e for e in SERVE_ENV}


def env_help(dest: str, text: str) -> str:
    """A flag's help with its variable and built-in default, e.g. ``... (env PREWARM_LISTEN;
    default 0.0.0.0:9090)``."""
    e = ENV_BY_DEST[dest]
    default = "" if e.default is None else f"; default {e.default:g}" if isinstance(e.default, float) \
        else f"; default {e.default}"
    return f"{text} (env {e.var}{default})"


def apply_serve_env(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """Fill every ``serve`` flag left unset (None) from its ``PREWARM_*`` variable, else its
    default. An empty variable counts as unset (a template that renders ``""`` means "not set").
    ``--demo`` on the command line wins over ``PREWARM_CONFIG``."""
    for e in SERVE_ENV:
        if getattr(args, e.dest) is not None:
            continue
        text = environ.get(e.var, "").strip()
        if e.dest == "config" and args.demo:
            text = ""
        if not text:
            setattr(args, e.dest, e.default)
            continue
        try:
            setattr(args, e.dest, e.convert(text))
        except ValueError as exc:
            raise UsageError(f"{e.var}={text!r}: {exc}") from None
    if args.config is None and not args.demo:
        raise UsageError("give --config FILE (or set PREWARM_CONFIG) or --demo")


SERVE_ENV_EPILOG = """environment:
  Every flag above that names a PREWARM_* variable takes its default from it; a flag given on
  the command line wins, and an empty variable counts as unset. A bad value is refused naming
  the variable. PREWARM_LOG_LEVEL and PREWARM_LOG_FORMAT work for every command. --demo has no
  variable, so a production pod cannot start in demo mode by accident.
"""

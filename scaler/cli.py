"""`prewarm` command line: serve, check-config, config-schema, forecast-eval."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from scaler.core.errors import ConfigError

EPILOG = """examples:
  prewarm serve --demo                       run on an embedded replayed trace (no cluster needed)
  prewarm serve --config /etc/prewarm/config.yaml
  prewarm check-config config.yaml           validate; exit 1 on errors
  prewarm config-schema > prewarm.schema.json
  prewarm forecast-eval --trace ../shared/data/servegen/m-small_10min.csv --horizon 30m
"""


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the KEDA external scaler (gRPC) and /metrics",
                       description="Run the KEDA ExternalScaler gRPC server, the refresh/refit "
                                   "loop and the /metrics endpoint.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, metavar="FILE",
                     help="config.yaml (e.g. a mounted ConfigMap key); reloaded when it changes")
    src.add_argument("--demo", action="store_true",
                     help="embedded config: model `demo` on a replayed synthetic trace, accelerated")
    p.add_argument("--listen", default="0.0.0.0:9090", metavar="HOST:PORT",
                   help="gRPC listen address (default %(default)s)")
    p.add_argument("--metrics-listen", default="0.0.0.0:8080", metavar="HOST:PORT",
                   help="/metrics listen address (default %(default)s)")
    p.add_argument("--tls-cert", type=Path, metavar="FILE", help="server certificate (PEM)")
    p.add_argument("--tls-key", type=Path, metavar="FILE", help="server private key (PEM)")
    p.add_argument("--tls-client-ca", type=Path, metavar="FILE",
                   help="require client certificates signed by this CA (mTLS)")
    p.add_argument("--kubeconfig", metavar="FILE",
                   help="kubeconfig for the Kubernetes integration (default: in-cluster)")
    p.add_argument("--grace", type=float, default=10.0, metavar="SECONDS",
                   help="shutdown grace period for in-flight calls (default %(default)s)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _add_check(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check-config", help="validate a config file (exit 1 on errors)",
                       description="Validate a config.yaml; print every problem by key path.")
    p.add_argument("file", type=Path, help="config.yaml to check")
    p.add_argument("--print", dest="print_effective", action="store_true",
                   help="print the effective config (defaults filled in) when valid")
    sub.add_parser("config-schema", help="print the config's JSON Schema (for editors)",
                   description="Print a JSON Schema of config.yaml for editor validation.")


def _add_forecast_eval(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("forecast-eval", help="rolling-origin forecast accuracy on a trace",
                       description="Evaluate every forecaster and the auto-selected one on a "
                                   "trace (docs/EVALUATION.md).")
    from forecasting.eval_cli import add_arguments

    add_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prewarm", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Predictive KEDA external scaler for LLM inference: forecasts demand one "
                    "cold start ahead and pre-warms replicas and GPU nodes.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(sub)
    _add_check(sub)
    _add_forecast_eval(sub)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from scaler.app import ServeOptions, serve

    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    options = ServeOptions(
        config=args.config, demo=args.demo, listen=args.listen,
        metrics_listen=args.metrics_listen, tls_cert=args.tls_cert, tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca, kubeconfig=args.kubeconfig, grace_seconds=args.grace)
    return asyncio.run(serve(options))


def _check_config(args: argparse.Namespace) -> int:
    import yaml

    from scaler.adapters.configfile import load_config_file
    from scaler.core.fields import to_plain

    parsed = load_config_file(args.file)
    for warning in parsed.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    models = ", ".join(parsed.settings.model_names)
    print(f"{args.file}: valid ({len(parsed.settings.models)} model(s): {models})")
    if args.print_effective:
        print(yaml.safe_dump(to_plain(parsed.settings), sort_keys=False), end="")
    return 0


def _config_schema(args: argparse.Namespace) -> int:
    from scaler.core.config import config_schema

    print(json.dumps(config_schema(), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"serve": _serve, "check-config": _check_config, "config-schema": _config_schema}
    try:
        if args.command == "forecast-eval":
            from forecasting.eval_cli import run

            return run(args)
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if args.command == "check-config" else 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

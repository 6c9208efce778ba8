"""`prewarm explain MODEL`: why a model has the replica count it has, in plain words.

The explanation is built from one published snapshot (pure: :func:`explain`), so it says what
KEDA is being told right now, with every input that went into it: demand, the forecast peak and
its quantile, the lead time and its parts, the SLO margin, the scale-down window, the bounds, the
reason and how fresh the data is. A running daemon serves it as JSON on its metrics port
(``/explain?model=NAME``); the command prints it, or computes it from a config and Prometheus.
"""

from __future__ import annotations

from typing import Any

from scaler.core.model import Reason
from scaler.core.slo import aim as tuner_aim
from scaler.core.slo import describe
from scaler.core.text import duration, num
from scaler.snapshot import Snapshot

REASONS = {
    Reason.REACTIVE: "current demand sets the count (the forecast asks for no more)",
    Reason.FORECAST: "the forecast over the lead time sets the count (pre-warming ahead of demand)",
    Reason.STABILIZATION: "a higher need within the scale-down window holds the count up",
    Reason.MIN: "minReplicas sets the count (demand and forecast ask for fewer)",
    Reason.MAX: "maxReplicas caps the count (demand or forecast ask for more)",
    Reason.IDLE: "no demand now and none forecast within the lead time",
    Reason.HOLD: "the metrics are missing: the last valid decision is held until staleAfter",
    Reason.NO_DATA: "the metrics have been missing longer than staleAfter: GetMetrics fails, KEDA falls back",
}


def explain(snap: Snapshot, name: str, *, now: float) -> dict[str, Any] | None:
    """Everything behind ``name``'s answer in ``snap`` (None: the model is not configured)."""
    model = snap.settings.model(name)
    d = snap.final_decisions().get(name)
    if model is None or d is None:
        return None
    p = model.policy
    cold = snap.cold_starts.get(name)
    fit = snap.fits.get(name)
    poll = snap.settings.defaults.pollingInterval
    pod = cold.pod_startup_seconds if cold else p.coldStart.initial
    node_wait = max(0.0, d.lead_seconds - pod - poll) if d.lead_seconds else 0.0
    sampled = d.sampled_at if d.sampled_at is not None else d.at
    out: dict[str, Any] = {
        "model": name,
        "replicas": d.replicas,
        "reason": d.reason.value,
        "why": REASONS.get(d.reason, d.reason.value),
        "valid": d.valid,
        "active": d.active,
        "message": d.message,
        "decided_at": d.at,
        "demand": {
            "now": d.demand, "unit": p.demand, "capacity_per_replica": model.capacityPerReplica,
            "replicas_needed_now": d.reactive_replicas,
        },
        "forecast": {
            "enabled": p.forecast,
            "forecaster": fit.model_name if fit else None,
            "skill_mase": fit.skill if fit else None,
            "demoted": bool(fit and fit.demoted),
            "quantile": p.scale_quantile,
            "peak_within_lead": d.forecast_peak,
            "replicas_needed": d.forecast_replicas,
            "prewarm_replicas": d.prewarm_replicas,
        },
        "lead": {
            "seconds": d.lead_seconds, "pod_startup_seconds": pod, "node_wait_seconds": node_wait,
            "poll_seconds": poll, "learned": bool(cold and cold.learned),
            "samples": cold.samples if cold else 0,
            "node_provisioning_seconds": cold.node_provisioning_seconds if cold else p.coldStart.nodeProvisioning,
        },
        "scale_down": {
            "stabilization_seconds": p.stabilization_seconds, "need": d.need,
            "need_reason": d.need_reason.value,
        },
        "bounds": {"min": model.minReplicas, "max": model.maxReplicas, "standby": d.standby},
        "freshness": {
            "sampled_at": sampled, "age_seconds": max(0.0, now - sampled),
            "stale_after_seconds": p.staleAfter, "expires_in_seconds": d.expires_at - now,
        },
    }
    if p.slo is not None:
        margin = snap.margins.get(name)
        out["slo"] = {
            "on_time_target": p.slo.onTime, "max_queue_seconds": p.slo.maxQueueTime,
            "measured_on_time": d.on_time, "margin": d.margin, "base_demand": d.base,
            "aim": d.slo_aim, "shape": None if margin is None else margin.terms(model.capacityPerReplica),
            "budget": snap.budgets.get(name),
        }
    return out


def _budget_note(slo: dict[str, Any]) -> str:
    """How often the margin is chosen, and why, from the tuner's reading of the week's error
    budget (or, without one, from the aim: the spent aim is the higher)."""
    budget = slo.get("budget")
    if budget is None:
        budget = "spent" if slo["aim"] >= tuner_aim(slo["on_time_target"], spent=True) - 1e-12 else "calm"
    return {"spent": " (week's error budget spent: re-chosen hourly)",
            "one-off": " (a lone outlier burst spent the week's budget, the rest of the week did not: "
                       "re-chosen daily)",
            }.get(budget, " (re-chosen daily)")


def render(e: dict[str, Any]) -> str:
    """The explanation as an operator reads it."""
    dem, fc, lead, sd, b, fr = (e[k] for k in ("demand", "forecast", "lead", "scale_down", "bounds", "freshness"))
    lines = [f"{e['model']}: {e['replicas']} replicas ({e['reason']}): {e['why']}."]
    if not e["valid"]:
        lines.append(f"  NOT SERVED: {e['message'] or 'no valid decision'}")
    lines.append(f"  demand now     {num(dem['now'])} {dem['unit']} / {num(dem['capacity_per_replica'])} per replica "
                 f"-> {dem['replicas_needed_now']} replicas")
    if not fc["enabled"]:
        lines.append("  forecast       disabled for this model")
    elif fc["demoted"]:
        lines.append(f"  forecast       demoted: {fc['forecaster']} has no skill (MASE {num(fc['skill_mase'], 2)} "
                     f">= maxSkill); scaled on demand alone")
    elif fc["peak_within_lead"] is None:
        lines.append(f"  forecast       none yet ({e['message'] or 'no forecaster fitted yet'})")
    else:
        lines.append(f"  forecast       p{100 * fc['quantile']:g} peak {num(fc['peak_within_lead'])} within the lead "
                     f"-> {fc['replicas_needed']} replicas ({fc['forecaster']}, MASE {num(fc['skill_mase'], 2)})")
    if fc["prewarm_replicas"]:
        lines.append(f"  pre-warm       {fc['prewarm_replicas']} more replica(s) forecast within lead + node "
                     f"provisioning: GPU nodes held by balloons")
    learned = f"learned from {lead['samples']} startups" if lead["learned"] else "configured, not learned yet"
    lines.append(f"  lead time      {duration(lead['seconds'])} = pod startup "
                 f"{duration(lead['pod_startup_seconds'])} ({learned}) + node wait "
                 f"{duration(lead['node_wait_seconds'])} + poll {duration(lead['poll_seconds'])}")
    slo = e.get("slo")
    if slo is not None:
        measured = "not measured yet" if slo["measured_on_time"] is None else f"{100 * slo['measured_on_time']:.2f}%"
        lines.append(f"  SLO            {100 * slo['on_time_target']:g}% of requests queued <= "
                     f"{num(slo['max_queue_seconds'], 3)}s; measured {measured}; margin x{num(slo['margin'], 2)} "
                     f"on base {num(slo['base_demand'])}"
                     + ("" if slo.get("aim") is None
                        else f", chosen to reach {100 * slo['aim']:.2f}% on the replayed two weeks"
                        + _budget_note(slo)))
        if slo.get("shape"):
            lines.append(f"  margin         {describe(slo['shape'])}")
    lines.append(f"  scale-down     window {duration(sd['stabilization_seconds'])}; need {sd['need']} "
                 f"({sd['need_reason']})")
    lines.append(f"  bounds         min {b['min']}, max {b['max']}, standby {b['standby']}")
    lines.append(f"  data           sampled {duration(fr['age_seconds'])} ago; stale after "
                 f"{duration(fr['stale_after_seconds'])} (answer expires in {duration(fr['expires_in_seconds'])})")
    return "\n".join(lines)


def summary(snap: Snapshot, *, limit: int = 50) -> dict[str, Any]:
    """Every model's count and reason (the first ``limit``), for ``/explain`` without a model."""
    decisions = snap.final_decisions()
    names = sorted(decisions)
    return {"models": {n: {"replicas": decisions[n].replicas, "reason": decisions[n].reason.value}
                       for n in names[:limit]},
            "more": max(0, len(names) - limit)}


EXPLAIN_EXAMPLES = """examples:
  prewarm explain llama-3-70b                          ask the daemon at 127.0.0.1:8080
  prewarm explain llama-3-70b --url http://prewarm.prewarm.svc:8080 --json
  kubectl -n prewarm port-forward svc/prewarm 8080 & prewarm explain llama-3-70b
  prewarm explain llama-3-70b --config config.yaml     compute it here from Prometheus
"""


def add_arguments(parser: Any) -> None:
    parser.add_argument("model", help="the model's name in the config")
    parser.add_argument("--url", default="http://127.0.0.1:8080", metavar="URL",
                        help="a running daemon's metrics address (default: %(default)s)")
    parser.add_argument("--config", metavar="FILE",
                        help="instead of asking a daemon, read the config and its Prometheus (or "
                             "replay) here, fit, decide once and explain that")
    parser.add_argument("--json", action="store_true", help="print the explanation as JSON")


def fetch(url: str, model: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """The daemon's explanation (raises ExplainError with a readable message)."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    address = f"{url.rstrip('/')}/explain?{urllib.parse.urlencode({'model': model})}"
    try:
        with urllib.request.urlopen(address, timeout=timeout) as response:
            page: dict[str, Any] = json.loads(response.read())
            return page
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            detail = exc.reason
        raise ExplainError(f"{address}: {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ExplainError(f"cannot reach the daemon at {url} ({reason}); is `prewarm serve` running "
                           f"there (port-forward its metrics port), or use --config FILE") from None


async def compute(config: str, model: str) -> dict[str, Any]:
    """Explain from a config: backfill history, fit in threads, decide once (no daemon)."""
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from scaler.app import load_config, make_source
    from scaler.core.clock import SystemClock
    from scaler.engine import Engine
    from scaler.snapshot import SnapshotHolder, initial_snapshot

    path = Path(config)
    settings = load_config(path).settings
    if settings.model(model) is None:
        raise ExplainError(f"model {model[:64]!r} is not in {config}")
    clock = SystemClock()
    holder = SnapshotHolder(initial_snapshot(settings, clock.now()))
    source = make_source(settings, path.parent)
    with ThreadPoolExecutor(max_workers=1) as fits:
        engine = Engine(clock, settings, source, holder, fit_executor=fits)
        await engine.backfill()
        await engine.refit()
        snap = await engine.refresh()
    await source.aclose()
    out = explain(snap, model, now=clock.now())
    assert out is not None
    return out


class ExplainError(Exception):
    pass


def run(args: Any) -> int:
    import asyncio
    import json
    import sys

    try:
        e = asyncio.run(compute(args.config, args.model)) if args.config else fetch(args.url, args.model)
    except ExplainError as exc:
        print(f"prewarm explain: error: {exc}", flush=True, file=sys.stderr)
        return 2
    print(json.dumps(e, indent=2, sort_keys=True) if args.json else render(e))
    return 0

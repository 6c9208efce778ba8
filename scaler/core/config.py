"""Settings: the ConfigMap's ``config.yaml`` and a ScaledObject's trigger metadata, parsed and validated.

Keys are camelCase, as KEDA and Kubernetes users write them. Per-model policy keys (``quantile``,
``coldStart``, ``scaleDown``, ...) may stand under ``defaults`` and be overridden under each model.
:func:`parse_settings` reports every problem at once as a :class:`ConfigError`, each by its key
path (``models[2].maxReplicas: must be >= minReplicas (3)``); unknown keys are warnings.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from scaler.core.errors import ConfigError, MetadataError
from scaler.core.fields import (
    Bool,
    Duration,
    DurationList,
    Flatten,
    Float,
    Int,
    Problems,
    Raw,
    Section,
    SectionList,
    Str,
    StrMap,
    check_all,
    field,
    json_schema,
    parse_section,
)

# A model's config name: lowercase DNS label, so `prewarm-<name>` is a valid, lowercase HPA
# metric name. The served model name used in PromQL (`servedModelName`) may be anything.
MODEL_NAME = r"[a-z0-9]([-a-z0-9]{0,53}[a-z0-9])?"
DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?"
DEMAND_KINDS = ("concurrency", "arrivals")


@dataclass(frozen=True)
class ColdStartSettings:
    initial: float = field("initial", Duration(min=0, max=6 * 3600), "Cold start assumed until enough startups are observed (pod created -> Ready). Default 5m.", default=300.0)
    learn: bool = field("learn", Bool(), "Learn each model's cold start from its pods' timelines. Default true.", default=True)
    minSamples: int = field("minSamples", Int(min=1, max=1000), "Observed startups needed before the learned p90 replaces `initial`. Default 3.", default=3)
    nodeProvisioning: float = field("nodeProvisioning", Duration(min=0, max=6 * 3600), "Node provisioning time assumed when the pool has no spare GPU (node created -> Ready) until learned. Default 0 (no node wait).", default=0.0)


@dataclass(frozen=True)
class ScaleDownSettings:
    stabilization: float | None = field("stabilization", Duration(min=0, max=24 * 3600), "Scale down only after demand and forecast stayed lower this long (highest need in the window wins). Default 10m; with `slo` set, the tuner chooses it (half a lead or a lead) unless set here, and then never goes below it.", default=None)


@dataclass(frozen=True)
class SloSettings:
    """A request-level latency SLO: prewarm then picks its own safety margin (see scaler/core/slo.py)."""

    onTime: float = field("onTime", Float(min=0.5, max=0.9999), "Target share of requests served on time, e.g. 0.99.")
    maxQueueTime: float = field("maxQueueTime", Duration(min=0.001, max=3600), "Longest wait in vLLM's queue that still counts as on time (`vllm:request_queue_time_seconds`; use a histogram bucket bound). Default 1s.", default=1.0)
    window: float = field("window", Duration(min=60, max=86400), "Trailing window the live on-time share is measured over; the margin is re-chosen as often. Default 1h.", default=3600.0)


@dataclass(frozen=True)
class Policy:
    """Per-model decision settings; each may stand under ``defaults`` or under a model."""

    quantile: float | None = field("quantile", Float(min=0.5, max=0.99), "Forecast quantile scaled up to over the lead window. Default 0.9; with `slo` set, the tuner reads the median and chooses the margin itself, and an explicit `quantile` pins the level it reads instead.", default=None)
    coldStart: ColdStartSettings = field("coldStart", Section(ColdStartSettings), "Cold-start estimate used as the forecast lead time.", factory=ColdStartSettings)
    scaleDown: ScaleDownSettings = field("scaleDown", Section(ScaleDownSettings), "Scale-down hysteresis.", factory=ScaleDownSettings)
    staleAfter: float = field("staleAfter", Duration(min=1, max=3600), "With no fresh data, hold the last decision this long; then GetMetrics fails UNAVAILABLE so KEDA's fallback applies. Default 2m.", default=120.0)
    seasonality: tuple[float, ...] = field("seasonality", DurationList(), "Seasonal periods the forecaster may use. Default [1d, 7d].", default=(86400.0, 604800.0))
    demand: str = field("demand", Str(choices=DEMAND_KINDS), "Demand signal: `concurrency` (vLLM running + waiting; default) or `arrivals` (requests/s).", default="concurrency")
    activationDemand: float = field("activationDemand", Float(min=0), "Demand (now or forecast) above which a model at zero is woken (IsActive). Default 0.", default=0.0)
    forecast: bool = field("forecast", Bool(), "Use the forecast (false: reactive only). Default true.", default=True)
    slo: SloSettings | None = field("slo", Section(SloSettings), "Request-level SLO. When set, prewarm chooses and adapts its own margin (forecast quantile, headroom, standby) to hold it at the least GPU cost; `quantile` and `standbyReplicas` then act only as explicit manual overrides.", default=None)
    maxSkill: float = field("maxSkill", Float(min=0, exclusive_min=True), "Demote the model to reactive when its forecast MASE vs seasonal naive is >= this. Default 1.", default=1.0)

    @property
    def stabilization_seconds(self) -> float:
        """Scale-down stabilization the config sets: ``scaleDown.stabilization``; unset, 10m, or
        with an SLO nothing (the margin's own hold, chosen by the tuner, applies)."""
        explicit = self.scaleDown.stabilization
        if explicit is not None:
            return explicit
        return 0.0 if self.slo is not None else 600.0

    @property
    def scale_quantile(self) -> float:
        """The forecast quantile decisions read: ``quantile`` when set; with an SLO the median
        (the self-tuned margin covers the rest); else 0.9."""
        if self.quantile is not None:
            return self.quantile
        return 0.5 if self.slo is not None else 0.9


@dataclass(frozen=True)
class Target:
    namespace: str = field("namespace", Str(pattern=DNS_LABEL, hint="a Kubernetes namespace (DNS label)"), "Namespace of the scaled Deployment.")
    deployment: str = field("deployment", Str(pattern=DNS_SUBDOMAIN, hint="a Kubernetes object name"), "Name of the scaled vLLM Deployment.")


@dataclass(frozen=True)
class ModelSettings:
    name: str = field("name", Str(pattern=MODEL_NAME, max_length=55, hint="lowercase letters, digits and '-', at most 55 characters, starting and ending alphanumeric"), "Model key; trigger metadata `model: <name>`; HPA metric `prewarm-<name>`.")
    capacityPerReplica: float = field("capacityPerReplica", Float(min=0, exclusive_min=True), "Demand one replica serves within SLO, in the demand signal's unit (concurrent requests for `concurrency`).")
    servedModelName: str | None = field("servedModelName", Str(max_length=512), "vLLM `model_name` label value (default: `name`).", default=None)
    target: Target | None = field("target", Section(Target), "The Deployment this model scales (needed for cold-start learning).", default=None)
    minReplicas: int = field("minReplicas", Int(min=0, max=10000), "Lower bound. Default 0 (scale to zero when idle and nothing is forecast).", default=0)
    maxReplicas: int = field("maxReplicas", Int(min=1, max=10000), "Upper bound. Default 100.", default=100)
    standbyReplicas: int = field("standbyReplicas", Int(min=0, max=1000), "Warm replicas kept on top of the need while the model is active. Default 0.", default=0)
    nodePool: str | None = field("nodePool", Str(pattern=DNS_LABEL), "Node pool (nodePools[].name) whose GPU nodes are pre-warmed for this model.", default=None)
    labels: dict[str, str] = field("labels", StrMap(), "Extra Prometheus label matchers (exact) for this model's series, e.g. {namespace: llm}.", factory=dict)
    queries: dict[str, str] = field("queries", StrMap(), "PromQL overrides by signal name for this model (placeholders `{{matchers}}`, `{{window}}`; see docs/METRICS_SOURCE.md).", factory=dict)
    policy: Policy = field("policy", Flatten(Policy), "Per-model policy (keys as under defaults).", factory=Policy)

    @property
    def served_name(self) -> str:
        return self.servedModelName or self.name


@dataclass(frozen=True)
class Defaults:
    refreshInterval: float = field("refreshInterval", Duration(min=1, max=600), "How often current metrics are read and decisions made. Default 15s.", default=15.0)
    refitInterval: float = field("refitInterval", Duration(min=10, max=86400), "How often forecasters are refitted (in worker processes). Default 10m.", default=600.0)
    history: float = field("history", Duration(min=3600, max=90 * 86400), "History fitted. Default 21d (weekly seasonality needs > 14d).", default=21 * 86400.0)
    step: float = field("step", Duration(min=10, max=3600), "Resolution of the history the forecaster sees. Default 1m.", default=60.0)
    pollingInterval: float = field("pollingInterval", Duration(min=1, max=3600), "KEDA pollingInterval; added to the lead time as decision delay. Default 30s.", default=30.0)
    queries: dict[str, str] = field("queries", StrMap(), "PromQL overrides by signal name for every model (see docs/METRICS_SOURCE.md).", factory=dict)
    fitWorkers: int = field("fitWorkers", Int(min=0, max=256), "Worker processes for fits (0: one per CPU). Default 0.", default=0)
    policy: Policy = field("policy", Flatten(Policy), "Default per-model policy.", factory=Policy)


@dataclass(frozen=True)
class BasicAuth:
    username: str = field("username", Str(), "User name.")
    passwordFile: str = field("passwordFile", Str(max_length=4096), "File holding the password.")


@dataclass(frozen=True)
class PrometheusSettings:
    url: str = field("url", Str(pattern=r"https?://[^\s]+", hint="an http:// or https:// URL", max_length=2048), "Prometheus (or Thanos/Mimir) base URL.")
    timeout: float = field("timeout", Duration(min=0.1, max=300), "Per-request timeout. Default 10s.", default=10.0)
    rateWindow: float = field("rateWindow", Duration(min=10, max=3600), "Window of rate()/deriv() in the default queries (`{{window}}`); at least 4x your scrape interval. Default 1m.", default=60.0)
    retries: int = field("retries", Int(min=0, max=10), "Retries per query with exponential backoff and jitter. Default 2.", default=2)
    bearerTokenFile: str | None = field("bearerTokenFile", Str(max_length=4096), "File with a bearer token (re-read on every request).", default=None)
    basicAuth: BasicAuth | None = field("basicAuth", Section(BasicAuth), "HTTP basic auth.", default=None)
    caFile: str | None = field("caFile", Str(max_length=4096), "CA bundle to verify the server.", default=None)
    insecureSkipVerify: bool = field("insecureSkipVerify", Bool(), "Skip TLS verification (tests only).", default=False)
    headers: dict[str, str] = field("headers", StrMap(), "Extra HTTP headers, e.g. {X-Scope-OrgID: tenant}.", factory=dict)


@dataclass(frozen=True)
class ReplaySettings:
    trace: str = field("trace", Str(max_length=4096), "`synthetic` (built-in daily+weekly trace) or a trace CSV path (timestamp_utc,requests,...).", default="synthetic")
    speed: float = field("speed", Float(min=0, exclusive_min=True, max=100000), "Virtual seconds per real second (60: a day in 24 minutes). Default 1.", default=1.0)
    scale: float = field("scale", Float(min=0, exclusive_min=True), "Multiply the trace's per-minute arrivals by this to get demand. Default 1.", default=1.0)


@dataclass(frozen=True)
class BalloonSettings:
    namespace: str = field("namespace", Str(pattern=DNS_LABEL), "Namespace of the balloon Deployment. Default prewarm.", default="prewarm")
    nodeSelector: dict[str, str] = field("nodeSelector", StrMap(), "nodeSelector of balloon pods (selects the pool's nodes).", factory=dict)
    tolerations: tuple[dict[str, Any], ...] = field("tolerations", Raw(), "Tolerations of balloon pods (Kubernetes syntax).", default=())
    priorityClassName: str = field("priorityClassName", Str(pattern=DNS_SUBDOMAIN), "Negative-priority class so real pods preempt balloons. Default prewarm-balloon.", default="prewarm-balloon")
    gpuResource: str = field("gpuResource", Str(max_length=253), "Extended resource name of a GPU. Default nvidia.com/gpu.", default="nvidia.com/gpu")


@dataclass(frozen=True)
class NodePool:
    name: str = field("name", Str(pattern=DNS_LABEL), "Pool name, referenced by models[].nodePool.")
    gpusPerNode: int = field("gpusPerNode", Int(min=1, max=64), "GPUs on one node of the pool.")
    gpusPerReplica: int = field("gpusPerReplica", Int(min=1, max=64), "GPUs one model replica requests. Default 1.", default=1)
    maxBalloonGpus: int = field("maxBalloonGpus", Int(min=0, max=100000), "Upper bound of pre-warmed (balloon) GPUs. Default 0 (no pre-warming).", default=0)
    balloon: BalloonSettings = field("balloon", Section(BalloonSettings), "Balloon pods that hold pre-warmed GPU capacity.", factory=BalloonSettings)


@dataclass(frozen=True)
class KubernetesSettings:
    namespace: str = field("namespace", Str(pattern=DNS_LABEL), "Namespace of the daemon's Lease and state ConfigMap. Default prewarm.", default="prewarm")
    leaseName: str = field("leaseName", Str(pattern=DNS_SUBDOMAIN), "coordination.k8s.io Lease used for leader election. Default prewarm-leader.", default="prewarm-leader")
    leaseDuration: float = field("leaseDuration", Duration(min=2, max=600), "Lease duration: a dead leader is replaced within this. Default 15s.", default=15.0)
    renewPeriod: float = field("renewPeriod", Duration(min=0.5, max=300), "How often the leader renews (and others retry). Default 5s.", default=5.0)
    stateConfigMap: str = field("stateConfigMap", Str(pattern=DNS_SUBDOMAIN), "ConfigMap where learned cold starts are persisted. Default prewarm-state.", default="prewarm-state")
    configMap: str | None = field("configMap", Str(pattern=DNS_SUBDOMAIN), "Watch this ConfigMap (key config.yaml) through the API for hot reload, besides the mounted file.", default=None)


@dataclass(frozen=True)
class Settings:
    models: tuple[ModelSettings, ...] = field("models", SectionList(ModelSettings), "Models scaled by this daemon.")
    prometheus: PrometheusSettings | None = field("prometheus", Section(PrometheusSettings), "Where vLLM metrics are read (required unless `replay` is set).", default=None)
    replay: ReplaySettings | None = field("replay", Section(ReplaySettings), "Replay a trace instead of reading Prometheus (demo, dry runs).", default=None)
    defaults: Defaults = field("defaults", Section(Defaults), "Engine settings and per-model policy defaults.", factory=Defaults)
    nodePools: tuple[NodePool, ...] = field("nodePools", SectionList(NodePool), "GPU node pools pre-warmed with balloon pods.", default=())
    kubernetes: KubernetesSettings | None = field("kubernetes", Section(KubernetesSettings), "Kubernetes integration: cold-start learning, balloons, leader election (off when absent).", default=None)

    def model(self, name: str) -> ModelSettings | None:
        return self._by_name.get(name)

    @functools.cached_property
    def _by_name(self) -> dict[str, ModelSettings]:
        # A dict once per Settings: GetMetrics looks a model up on every poll.
        return {m.name: m for m in self.models}

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)


@dataclass(frozen=True)
class ParsedSettings:
    settings: Settings
    warnings: tuple[str, ...]


def settings_from_yaml(text: str, *, source: str) -> ParsedSettings:
    """YAML text into settings; every problem (YAML syntax included) as one ConfigError.

    The core's checks only: the daemon adds each edge's own (``scaler.settings_source``).
    """
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}invalid YAML: {problem}"], source=source) from None
    return parse_settings(raw, source=source)


def parse_settings(raw: object, *, source: str = "config") -> ParsedSettings:
    """Parse and validate a whole config (YAML-loaded data); raise ConfigError with every problem."""
    problems = Problems()
    # Per-model policy keys inherit from `defaults`: parse it first (its errors are reported
    # by the full pass below).
    raw_defaults = raw.get("defaults") if isinstance(raw, Mapping) else None
    base = parse_section(Defaults, raw_defaults, "defaults", Problems())
    inherit: dict[type, Any] = {Policy: base.policy} if base is not None else {}
    settings = parse_section(Settings, raw, "", problems, inherit=inherit)
    if settings is not None:
        _validate(settings, problems)
    if problems.errors or settings is None:
        raise ConfigError(problems.errors or ["config is empty"], source=source)
    return ParsedSettings(settings, tuple(problems.warnings))


def _validate(s: Settings, problems: Problems) -> None:
    pools = {p.name for p in s.nodePools}
    seen: set[str] = set()
    checks: list[tuple[bool, str, str]] = [
        (s.models is not None and not s.models, "models", "at least one model is required"),
        (s.prometheus is None and s.replay is None, "prometheus", "required (or set `replay` to replay a trace)"),
        (s.defaults is not None and s.defaults.step > s.defaults.refitInterval, "defaults.step", "must be <= defaults.refitInterval"),
    ]
    for i, m in enumerate(s.models or ()):
        path = f"models[{i}]"
        bounds = m.minReplicas is not None and m.maxReplicas is not None
        checks += [
            (m.name is not None and m.name in seen, f"{path}.name", f"duplicate model name {m.name!r}"),
            (bounds and m.maxReplicas < m.minReplicas, f"{path}.maxReplicas", f"must be >= minReplicas ({m.minReplicas})"),
            (m.nodePool is not None and m.nodePool not in pools, f"{path}.nodePool",
             f"{m.nodePool!r} is not in nodePools ({', '.join(sorted(pools)) or 'none defined'})"),
        ]
        seen.add(m.name)
    names = [p.name for p in s.nodePools]
    for i, p in enumerate(s.nodePools):
        gpus = p.gpusPerReplica is not None and p.gpusPerNode is not None
        checks.append((p.name is not None and names.count(p.name) > 1, f"nodePools[{i}].name", f"duplicate pool name {p.name!r}"))
        checks.append((gpus and p.gpusPerReplica > p.gpusPerNode, f"nodePools[{i}].gpusPerReplica",
                       f"must be <= gpusPerNode ({p.gpusPerNode})"))
    check_all(checks, problems)


def defaults() -> Defaults:
    return Defaults()


def config_schema() -> dict[str, Any]:
    return json_schema(Settings, title="prewarm config.yaml")


# --- per-ScaledObject overrides from trigger metadata -------------------------------------------


@dataclass(frozen=True)
class Overrides:
    """Optional trigger-metadata keys that override the model's bounds for one ScaledObject."""

    minReplicas: int | None = field("minReplicas", Int(min=0, max=10000), "Lower bound for this ScaledObject.", default=None)
    maxReplicas: int | None = field("maxReplicas", Int(min=1, max=10000), "Upper bound for this ScaledObject.", default=None)
    standbyReplicas: int | None = field("standbyReplicas", Int(min=0, max=1000), "Standby replicas for this ScaledObject.", default=None)
    sloOnTime: float | None = field("sloOnTime", Float(min=0.5, max=0.9999), "On-time target for this ScaledObject, instead of the model's `slo.onTime` (the model must have `slo`: its queue-time bound and window apply). prewarm tunes a margin of its own for each target asked.", default=None)


OVERRIDE_KEYS = tuple(f.metadata["key"] for f in dataclasses.fields(Overrides))


def parse_overrides(metadata: Mapping[str, str], model: ModelSettings) -> Overrides:
    """Overrides from trigger metadata; KEDA's own and unknown keys are ignored.

    Raises MetadataError naming the key and value. Empty values count as absent (a protobuf map
    returns "" for a missing key).
    """
    present = {k: metadata[k] for k in OVERRIDE_KEYS if metadata.get(k, "") != ""}
    problems = Problems()
    parsed = parse_section(Overrides, present, "", problems)
    if parsed is not None:
        lo = parsed.minReplicas if parsed.minReplicas is not None else model.minReplicas
        hi = parsed.maxReplicas if parsed.maxReplicas is not None else model.maxReplicas
        if hi < lo:
            problems.error("maxReplicas", f"{hi} must be >= minReplicas ({lo})")
        if parsed.sloOnTime is not None and model.policy.slo is None:
            problems.error("sloOnTime", f"model {model.name!r} has no `slo` in the config; set one there "
                                        "(its maxQueueTime and window apply) to override onTime here")
    if problems.errors or parsed is None:
        raise MetadataError("invalid trigger metadata: " + "; ".join(problems.errors))
    return parsed

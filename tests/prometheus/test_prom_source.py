"""PrometheusSource against a tiny local HTTP server: degenerate answers, failures, retries,
batching, auth and TLS, history chunking. Real HTTP; no mocks of the client library.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import random
import ssl
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from scaler.core.config import Settings, parse_settings
from scaler.core.errors import ConfigError, SourceError
from scaler.edges.prometheus import promql
from scaler.edges.prometheus.checks import config_problems, validate_settings
from scaler.edges.prometheus.source import MAX_POINTS_PER_QUERY, OBSERVE_WORKERS, PrometheusSource
from tests.prometheus.fakeprom import FakePrometheus, Reply, Request, matrix, untimed, vector

NOW = 1_767_225_600.0
A, B = "llama", "qwen/qwen2.5-7b"


def make_settings(url: str, *, models: Sequence[Mapping[str, Any]] | None = None,
                  defaults: Mapping[str, Any] | None = None, **prometheus: Any) -> Settings:
    raw = {
        "prometheus": {"url": url, "timeout": "2s", "retries": 2, **prometheus},
        "defaults": dict(defaults or {}),
        "models": list(models or [
            {"name": "a", "servedModelName": A, "capacityPerReplica": 10},
            {"name": "b", "servedModelName": B, "capacityPerReplica": 10},
        ]),
    }
    return parse_settings(raw).settings


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def open_source(settings: Settings, sleeps: Sleeps | None = None, **kwargs: Any) -> PrometheusSource:
    assert settings.prometheus is not None
    return PrometheusSource(settings.prometheus, settings.defaults, sleep=Sleeps() if sleeps is None else sleeps,
                            rng=random.Random(7), **kwargs)


def per_signal(demand: Reply, other: Reply | None = None) -> Any:
    """Handler: ``demand`` for the concurrency query, ``other`` (default empty) for the rest."""

    def handle(request: Request) -> Reply:
        q = request.query
        is_demand = "num_requests_running" in q and "num_requests_waiting" in q and "deriv" not in q
        return demand if is_demand else (other or Reply())

    return untimed(handle)


@pytest.fixture
def fake() -> Iterator[FakePrometheus]:
    with FakePrometheus() as server:
        yield server


# --- degenerate answers, as a table ---------------------------------------------------------------


@pytest.mark.parametrize(("answer", "demand_a", "rejected"), [
    pytest.param(vector(), None, None, id="empty-result"),
    pytest.param(vector(({"model_name": A}, "12", NOW)), 12.0, None, id="one-series"),
    pytest.param(vector(({"model_name": A, "engine": "0"}, "3", NOW),
                        ({"model_name": A, "engine": "1"}, "4", NOW)), None, "ambiguous",
                 id="several-series"),
    pytest.param(vector(({"model_name": A}, "NaN", NOW)), None, "nan", id="nan"),
    pytest.param(vector(({"model_name": A}, "+Inf", NOW)), None, "inf", id="plus-inf"),
    pytest.param(vector(({"model_name": A}, "-Inf", NOW)), None, "inf", id="minus-inf"),
    pytest.param(vector(({"model_name": A}, "-2", NOW)), None, "negative", id="negative"),
    pytest.param(vector(({"model_name": A}, "7", NOW - 600)), None, "stale", id="stale-timestamp"),
    pytest.param(vector(({"model_name": A}, "7", NOW + 600)), None, "stale", id="future-timestamp"),
    pytest.param(vector(({"model_name": A}, "7", NOW - 60)), 7.0, None, id="within-2-steps"),
    pytest.param(vector(({"model_name": "other"}, "7", NOW)), None, "unexpected_series",
                 id="unknown-model"),
    pytest.param(vector(({}, "7", NOW)), None, "unexpected_series", id="no-model-label"),
])
def test_degenerate_values_leave_the_model_unknown(
    fake: FakePrometheus, answer: dict[str, Any], demand_a: float | None, rejected: str | None
) -> None:
    fake.handler = per_signal(Reply(body=answer))
    with open_source(make_settings(fake.url)) as source:
        observed = source.observe(make_settings(fake.url).models, now=NOW)
        assert observed["a"].demand == demand_a
        assert observed["b"].demand is None  # missing from the answer: unknown, never zero
        assert observed["a"].at == NOW
        assert sum(source.errors_total.values()) == 0
        assert source.last_success == NOW
        if rejected:
            assert source.rejected_samples_total[rejected] == 1
        else:
            assert sum(source.rejected_samples_total.values()) == 0


GARBAGE = [
    pytest.param(Reply(body="<html>502 bad gateway</html>"), "bad_response", 3, id="html"),
    pytest.param(Reply(body='{"status":"success","data":'), "bad_response", 3, id="truncated-json"),
    pytest.param(Reply(body={"status": "success"}), "bad_response", 3, id="no-data"),
    pytest.param(Reply(body={"status": "success", "data": {"resultType": "scalar",
                                                             "result": [NOW, "1"]}}),
                 "bad_response", 3, id="scalar-result"),
    pytest.param(Reply(body={"status": "success", "data": {"result": [{"metric": {"model_name": A},
                                                                        "value": [NOW, 5]}]}}),
                 "bad_response", 3, id="number-not-string"),
    pytest.param(Reply(body={"status": "success", "data": {"result": [{"metric": {"model_name": A},
                                                                        "value": [NOW, "five"]}]}}),
                 "bad_response", 3, id="unparseable-value"),
    pytest.param(Reply(body={"data": {"result": [{"metric": {"model_name": A}}]}}),
                 "bad_response", 3, id="series-without-value"),
    pytest.param(Reply(503, "overloaded"), "http_5xx", 3, id="503"),
    pytest.param(Reply(500, {"status": "error", "error": "boom"}), "http_5xx", 3, id="500"),
    pytest.param(Reply(429, "slow down"), "throttled", 3, id="429"),
    pytest.param(Reply(400, {"status": "error", "errorType": "bad_data", "error": "parse error"}),
                 "http_4xx", 1, id="400-not-retried"),
    pytest.param(Reply(401, "unauthorized"), "http_4xx", 1, id="401-not-retried"),
]


@pytest.mark.parametrize(("reply", "reason", "attempts"), GARBAGE)
def test_failing_demand_query_fails_the_source(
    fake: FakePrometheus, reply: Reply, reason: str, attempts: int
) -> None:
    fake.handler = lambda request: reply
    sleeps = Sleeps()
    settings = make_settings(fake.url)
    with open_source(settings, sleeps) as source:
        with pytest.raises(SourceError) as raised:
            source.observe(settings.models, now=NOW)
        assert raised.value.reason == reason
        assert len(fake.requests) == attempts  # retries=2 -> 3 attempts when retryable
        assert len(sleeps) == attempts - 1
        assert source.errors_total[reason] == 1
        assert source.requests_total["instant"] == attempts
        assert source.retries_total == attempts - 1
        assert source.last_success is None


def test_slow_server_times_out_after_retries(fake: FakePrometheus) -> None:
    fake.handler = lambda request: Reply(delay=5.0)
    settings = make_settings(fake.url, timeout="200ms", retries=1)
    sleeps = Sleeps()
    with open_source(settings, sleeps) as source:
        with pytest.raises(SourceError) as raised:
            source.observe(settings.models, now=NOW)
        assert raised.value.reason == "timeout"
        assert len(fake.requests) == 2
        assert len(sleeps) == 1
        assert source.errors_total["timeout"] == 1
        assert 0.4 <= source.request_seconds_total["instant"] < 2.0


def test_unreachable_server() -> None:
    with FakePrometheus() as closed:
        url = closed.url
    settings = make_settings(url, retries=1)
    with open_source(settings) as source:
        with pytest.raises(SourceError) as raised:
            source.observe(settings.models, now=NOW)
        assert raised.value.reason == "unreachable"
        assert source.errors_total["unreachable"] == 1


def test_backoff_is_exponential_with_jitter(fake: FakePrometheus) -> None:
    fake.handler = lambda request: Reply(503)
    settings = make_settings(fake.url, retries=5)
    sleeps = Sleeps()
    source = open_source(settings, sleeps, backoff_base_seconds=0.25, backoff_max_seconds=2.0)
    with source, pytest.raises(SourceError):
        source.observe(settings.models, now=NOW)
    bounds = [min(2.0, 0.25 * 2**i) for i in range(5)]
    assert len(sleeps) == 5
    for slept, bound in zip(sleeps, bounds, strict=True):
        assert bound / 2 <= slept <= bound
    assert len(set(round(s / b, 6) for s, b in zip(sleeps, bounds, strict=True))) > 1  # jittered


def test_recovers_after_transient_failures(fake: FakePrometheus) -> None:
    answers = iter([Reply(503), Reply(body="garbage")])
    good = Reply(body=vector(({"model_name": A}, "9", NOW)))
    fake.handler = untimed(lambda request: next(answers, good))
    settings = make_settings(fake.url)
    with open_source(settings) as source:
        observed = source.observe(settings.models, now=NOW)
    assert observed["a"].demand == 9.0
    assert source.retries_total == 2
    assert sum(source.errors_total.values()) == 0


def test_auxiliary_failure_drops_only_that_signal(fake: FakePrometheus) -> None:
    demand = Reply(body=vector(({"model_name": A}, "5", NOW)))
    fake.handler = per_signal(demand, Reply(500))
    settings = make_settings(fake.url, retries=0)
    with open_source(settings) as source:
        observed = source.observe(settings.models, now=NOW)
        assert observed["a"].demand == 5.0
        assert observed["a"].replicas is None and observed["a"].signals == {}
        # an auxiliary signal failed at source level: those not sent yet are not tried this
        # refresh (at most the workers' worth were already in flight)
        # (a worker may take one more before the first failure is seen)
        assert 2 <= len(fake.requests) <= 1 + 2 * OBSERVE_WORKERS < 1 + len(promql.AUX_SIGNALS)
        assert 1 <= source.errors_total["http_5xx"] <= 2 * OBSERVE_WORKERS


# --- batching --------------------------------------------------------------------------------------


def echo_handler(values: Mapping[str, float]) -> Any:
    """Answers every instant query with one series per model named in the query's matcher."""

    def handle(request: Request) -> Reply:
        at = float(request.params["time"])
        timed = "timestamp(" in request.query  # scrape times: scraped at the query's time
        series = [({"model_name": name}, repr(at if timed else v), at)
                  for name, v in values.items()
                  if promql.quote(promql.regex_escape(name))[1:-1] in request.query
                  or promql.quote(name) in request.query]
        return Reply(body=vector(*series))

    return handle


def test_one_query_per_signal_for_all_models(fake: FakePrometheus) -> None:
    fake.handler = echo_handler({A: 4.0, B: 6.0})
    settings = make_settings(fake.url)
    with open_source(settings) as source:
        observed = source.observe(settings.models, now=NOW)
    queries = fake.queries()
    assert len(queries) == 1 + len(promql.AUX_SIGNALS)  # concurrency + every auxiliary signal
    matcher = f"model_name=~{promql.quote(promql.regex_escape(A) + '|' + promql.regex_escape(B))}"
    assert all(matcher in q for q in queries)
    assert all(r.params["time"] == repr(NOW) and r.params["timeout"] == "2.0" for r in fake.requests)
    assert observed["a"].demand == 4.0 and observed["b"].demand == 6.0
    assert observed["a"].replicas == 4 and observed["b"].signals["kv_cache_usage"] == 6.0
    assert set(observed["a"].signals) == set(promql.AUX_SIGNALS) - {"replicas", promql.SAMPLED_SIGNAL}
    assert observed["a"].sampled_at == NOW


def test_models_with_different_labels_and_overrides_still_one_query_per_signal(
    fake: FakePrometheus,
) -> None:
    models = [
        {"name": "a", "servedModelName": A, "capacityPerReplica": 1, "labels": {"namespace": "x"}},
        {"name": "b", "servedModelName": B, "capacityPerReplica": 1, "labels": {"namespace": "y"}},
        {"name": "c", "capacityPerReplica": 1,
         "queries": {"concurrency": 'sum(gateway_inflight{route="/c"})'}},
    ]

    def handle(request: Request) -> Reply:
        q = request.query
        if "gateway_inflight" not in q:
            return Reply(body=vector())
        return Reply(body=vector(({"model_name": A, "prewarm_group": "0"}, "1", NOW),
                                 ({"model_name": B, "prewarm_group": "1"}, "2", NOW),
                                 ({"prewarm_group": "2"}, "3", NOW)))

    fake.handler = handle
    settings = make_settings(fake.url, models=models)
    with open_source(settings) as source:
        observed = source.observe(settings.models, now=NOW)
    assert {k: o.demand for k, o in observed.items()} == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert len(fake.queries()) == 1 + len(promql.AUX_SIGNALS)
    demand_query = fake.queries()[0]
    assert demand_query.count("label_replace(") == 3
    assert 'namespace="x"' in demand_query and 'namespace="y"' in demand_query


def test_a_bad_per_model_override_only_blinds_its_own_model(fake: FakePrometheus) -> None:
    models = [
        {"name": "a", "servedModelName": A, "capacityPerReplica": 1},
        # valid PromQL that this Prometheus refuses (e.g. a function it does not have yet)
        {"name": "c", "capacityPerReplica": 1, "queries": {"concurrency": "sum(nonsense)"}},
        {"name": "d", "capacityPerReplica": 1, "queries": {"concurrency": "sum(unbalanced[)"}},
    ]

    def handle(request: Request) -> Reply:
        if "nonsense" in request.query:
            return Reply(400, {"status": "error", "errorType": "bad_data", "error": "parse error"})
        return Reply(body=vector(({"model_name": A}, "8", NOW)))

    fake.handler = untimed(handle)
    settings = make_settings(fake.url, models=models)
    with open_source(settings) as source:
        observed = source.observe(settings.models, now=NOW)
    assert observed["a"].demand == 8.0
    assert observed["c"].demand is None
    assert observed["d"].demand is None  # refused before sending: never reaches Prometheus
    assert source.errors_total["http_4xx"] == 1 + 1  # the combined query, then c's own group
    assert not any("unbalanced" in q for q in fake.queries())


def test_demand_kind_per_model(fake: FakePrometheus) -> None:
    models = [
        {"name": "a", "servedModelName": A, "capacityPerReplica": 1},
        {"name": "b", "servedModelName": B, "capacityPerReplica": 1, "demand": "arrivals"},
    ]
    fake.handler = echo_handler({A: 3.0, B: 2.5})
    settings = make_settings(fake.url, models=models)
    with open_source(settings) as source:
        observed = source.observe(settings.models, now=NOW)
    # The two demand queries run concurrently: their order at the server is not fixed.
    first = fake.queries()[:2]
    arrivals = next(q for q in first if "deriv(" in q)
    concurrency = next(q for q in first if q is not arrivals)
    assert A in concurrency and B not in concurrency and B in arrivals
    assert (observed["a"].demand, observed["b"].demand) == (3.0, 2.5)


def test_invalid_defaults_queries_are_refused() -> None:
    settings = make_settings("http://127.0.0.1:1",
                             defaults={"queries": {"runing": "x{{{matchers}}}", "waiting": "x"}})
    with pytest.raises(ConfigError) as raised:
        open_source(settings)
    text = str(raised.value)
    assert "runing: unknown signal 'runing'" in text
    assert "waiting: must use {{matchers}}" in text


def test_config_problems_name_the_key() -> None:
    settings = make_settings(
        "http://127.0.0.1:1", bearerTokenFile="/t", basicAuth={"username": "u", "passwordFile": "/p"},
        defaults={"queries": {"running": "sum(x)"}},
        models=[{"name": "a", "capacityPerReplica": 1, "labels": {"bad-key": "v"},
                 "queries": {"waitng": "x", "waiting": "x{{{matchers}}"}}],
    )
    assert config_problems(settings) == [
        "defaults.queries.running: must use {{matchers}} (a defaults query is sent for all "
        "models at once)",
        "models[0].queries.waitng: unknown signal 'waitng' (known: "
        + ", ".join(promql.SIGNALS) + ")",
        "models[0].queries.waiting: unclosed '{'",
        "models[0].labels.bad-key: not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)",
        "prometheus.bearerTokenFile: set either bearerTokenFile or basicAuth, not both",
    ]
    assert config_problems(make_settings("http://127.0.0.1:1")) == []


def test_all_models_with_invalid_overrides_send_nothing(fake: FakePrometheus) -> None:
    settings = make_settings(fake.url, models=[
        {"name": "a", "capacityPerReplica": 1, "queries": {"concurrency": "sum(x"}}])
    with open_source(settings) as source:
        assert source.observe(settings.models, now=NOW)["a"].demand is None
    assert not any("sum(x" in q for q in fake.queries())


# --- history ---------------------------------------------------------------------------------------


def range_handler(value_at: Any, *, skip: set[float] | None = None) -> Any:
    def handle(request: Request) -> Reply:
        start, end, step = (float(request.params[k]) for k in ("start", "end", "step"))
        n = round((end - start) / step) + 1
        points = [(start + i * step, value_at(start + i * step)) for i in range(n)]
        points = [(t, v) for t, v in points if t not in (skip or set())]
        return Reply(body=matrix(({"model_name": A}, points)))

    return handle


def test_history_is_chunked_under_the_points_limit(fake: FakePrometheus) -> None:
    step, n = 60, 2 * MAX_POINTS_PER_QUERY + 500
    start = NOW - n * step + 0.5  # not on a whole second: bounds must stay exact
    gap = {start + 100 * step, start + 101 * step}
    fake.handler = range_handler(lambda t: repr((t - start) / step), skip=gap)
    settings = make_settings(fake.url)
    with open_source(settings) as source:
        series = source.history(settings.models[0], start=start, end=NOW + 0.5, step_seconds=step)
    ranges = [r for r in fake.requests if r.path == "/api/v1/query_range"]
    assert len(ranges) == 3
    points = [round((float(r.params["end"]) - float(r.params["start"])) / step) + 1 for r in ranges]
    assert points == [MAX_POINTS_PER_QUERY, MAX_POINTS_PER_QUERY, 500]
    assert all(p < 11_000 for p in points)
    assert float(ranges[0].params["start"]) == start and ranges[0].params["step"] == "60"
    assert series.start == start and series.step_seconds == step and len(series) == n
    expected = np.arange(n, dtype=float)
    expected[[100, 101]] = np.nan  # gaps stay NaN, never 0
    np.testing.assert_array_equal(series.values, expected)
    assert "[2m]" in ranges[0].query or "rate(" not in ranges[0].query


@pytest.mark.parametrize(("raw", "expected"), [
    pytest.param("NaN", math.nan, id="nan"),
    pytest.param("+Inf", math.nan, id="inf"),
    pytest.param("-3", math.nan, id="negative"),
    pytest.param("2.5", 2.5, id="ok"),
])
def test_history_hygiene(fake: FakePrometheus, raw: str, expected: float) -> None:
    fake.handler = range_handler(lambda t: raw)
    settings = make_settings(fake.url)
    with open_source(settings) as source:
        series = source.history(settings.models[0], start=NOW - 600, end=NOW, step_seconds=60)
    np.testing.assert_array_equal(series.values, np.full(10, expected))


def test_history_with_several_series_is_unknown(fake: FakePrometheus) -> None:
    pts = [(NOW - 120.0, "1"), (NOW - 60.0, "1")]
    fake.handler = lambda r: Reply(body=matrix(({"model_name": A, "engine": "0"}, pts),
                                               ({"model_name": A, "engine": "1"}, pts)))
    settings = make_settings(fake.url)
    with open_source(settings) as source:
        series = source.history(settings.models[0], start=NOW - 120, end=NOW, step_seconds=60)
        assert np.isnan(series.values).all()
        assert source.rejected_samples_total["ambiguous"] == 1


def test_history_failure_raises(fake: FakePrometheus) -> None:
    fake.handler = lambda r: Reply(502)
    settings = make_settings(fake.url, retries=0)
    with open_source(settings) as source, pytest.raises(SourceError) as raised:
        source.history(settings.models[0], start=NOW - 600, end=NOW, step_seconds=60)
    assert raised.value.reason == "http_5xx"


# --- auth, headers, TLS ----------------------------------------------------------------------------


def test_bearer_token_file_is_reread_and_headers_sent(fake: FakePrometheus, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    settings = make_settings(fake.url, bearerTokenFile=str(token),
                             headers={"X-Scope-OrgID": "tenant-1"})
    with open_source(settings) as source:
        source.observe(settings.models[:1], now=NOW)
        token.write_text("rotated")
        source.observe(settings.models[:1], now=NOW)
    auth = [r.headers.get("Authorization") for r in fake.requests]
    assert auth[0] == "Bearer first" and auth[-1] == "Bearer rotated"
    assert {r.headers.get("X-Scope-OrgID") for r in fake.requests} == {"tenant-1"}


def test_basic_auth_from_password_file(fake: FakePrometheus, tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    settings = make_settings(fake.url, basicAuth={"username": "prewarm",
                                                  "passwordFile": str(password)})
    with open_source(settings) as source:
        source.observe(settings.models[:1], now=NOW)
    assert fake.requests[0].headers["Authorization"] == "Basic cHJld2FybTpzM2NyZXQ="


def test_missing_token_file_fails_without_retrying(fake: FakePrometheus, tmp_path: Path) -> None:
    settings = make_settings(fake.url, bearerTokenFile=str(tmp_path / "absent"))
    with open_source(settings) as source, pytest.raises(SourceError) as raised:
        source.observe(settings.models, now=NOW)
    assert raised.value.reason == "credentials"
    assert fake.requests == []


def test_conflicting_auth_settings_are_reported() -> None:
    settings = make_settings("https://p:9090", bearerTokenFile="/t", insecureSkipVerify=True,
                             caFile="/ca.pem", basicAuth={"username": "u", "passwordFile": "/p"},
                             headers={"authorization": "x"})
    assert settings.prometheus is not None
    problems = validate_settings(settings.prometheus)
    assert [p.split(":")[0] for p in problems] == ["bearerTokenFile", "insecureSkipVerify", "headers"]
    with pytest.raises(ConfigError):
        open_source(settings)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    directory = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "prewarm test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
                ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@pytest.fixture
def tls_fake(tls_files: tuple[Path, Path, Path]) -> Iterator[FakePrometheus]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files[1], tls_files[2])
    with FakePrometheus(untimed(lambda r: Reply(body=vector(({"model_name": A}, "3", NOW)))),
                        tls=context) as server:
        yield server


@pytest.mark.parametrize(("options", "demand", "reason"), [
    pytest.param({"ca": True}, 3.0, None, id="ca-file"),
    pytest.param({"insecureSkipVerify": True}, 3.0, None, id="insecure-skip-verify"),
    pytest.param({}, None, "tls", id="unknown-ca"),
])
def test_tls(tls_fake: FakePrometheus, tls_files: tuple[Path, Path, Path],
             options: dict[str, Any], demand: float | None, reason: str | None) -> None:
    extra = {"caFile": str(tls_files[0])} if options.pop("ca", False) else options
    settings = make_settings(tls_fake.url, retries=0, **extra)
    with open_source(settings) as source:
        if reason is None:
            assert source.observe(settings.models, now=NOW)["a"].demand == demand
        else:
            with pytest.raises(SourceError) as raised:
                source.observe(settings.models, now=NOW)
            assert raised.value.reason == reason

"""deploy/prometheus: the alert rules load (`promtool check rules`) and behave (`promtool test rules`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*_test.yaml"))
ALERTS = {"PrewarmForecastDemoted", "PrewarmForecastUnderCoverage", "PrewarmDataStale", "PrewarmMetricsSourceErrors",
          "PrewarmGetMetricsFailing", "PrewarmColdStartRegression", "PrewarmBalloonsPendingTooLong",
          "PrewarmConfigRejected", "PrewarmRefreshStalled", "PrewarmAbsent", "PrewarmSloBelowTarget",
          "PrewarmFitWorkerDied", "PrewarmTaskFailed", "PrewarmBalloonDeploymentMissing",
          "PrewarmBalloonTemplateDrift"}


def run(cmd: list[str], cwd: Path) -> str:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_promtool_check_rules(promtool: str) -> None:
    out = run([promtool, "check", "rules", str(RULES)], ROOT)
    assert f"SUCCESS: {len(ALERTS)} rules found" in out


def test_promtool_unit_tests(promtool: str) -> None:
    out = run([promtool, "test", "rules", *(p.name for p in TESTS)], TESTS[0].parent)
    assert out.count("SUCCESS") == len(TESTS)


def test_every_alert_has_a_firing_unit_test_and_a_runbook() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == ALERTS
    tested: set[str] = set()
    for path in TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested |= {t["alertname"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert tested == ALERTS
    runbooks = (ROOT / "docs" / "OPERATIONS.md").read_text().lower()
    for rule in rules:
        anchor = rule["annotations"]["runbook"].split("#")[1]
        assert f"### {anchor}" in runbooks, f"docs/OPERATIONS.md has no section for {rule['alert']}"

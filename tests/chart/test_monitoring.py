"""The chart's monitoring objects: the Grafana dashboard and the Prometheus alert rules.

- `monitoring.dashboard` and `monitoring.rules` render a ConfigMap and a PrometheusRule that
  carry charts/gatehouse/monitoring/{dashboard.json,rules.yaml} unchanged, validated like
  every other manifest (Kubernetes' schemas; the PrometheusRule against the schema below);
- the rules pass `promtool check rules`, and `promtool test rules` runs a unit test for each
  alert (tests/monitoring/alerts.test.yaml); every alert has one;
- every dashboard query parses as PromQL (promtool checks them as recording rules).

That every series the dashboard and the rules name exists in what gatehouse exports is
checked by the Rust test tests/monitoring.rs, which starts gatehouse and scrapes it.
promtool comes from Debian's `prometheus` package, installed by .ci/setup.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from test_chart import KUBE_VERSION, NAMESPACE, RELEASE, helm, render

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "gatehouse"
RULES = CHART / "monitoring" / "rules.yaml"
DASHBOARD = CHART / "monitoring" / "dashboard.json"
RULE_TESTS = REPO / "tests" / "monitoring" / "alerts.test.yaml"

MONITORING_ON = {
    "metrics": {"serviceMonitor": {"enabled": True}},
    "monitoring": {
        "dashboard": {"enabled": True, "annotations": {"grafana_folder": "Edge"}},
        "rules": {"enabled": True, "labels": {"release": "kube-prometheus"}},
    },
}

_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}

# monitoring.coreos.com/v1 PrometheusRule, from the Prometheus Operator's API reference: the
# fields the chart writes; unknown fields fail.
PROMETHEUS_RULE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "record": {"type": "string"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h|d|w|y))+$"},
                                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


def promtool() -> str | None:
    """promtool, or None outside CI (skip); under CI=true a missing promtool fails."""
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail("CI=true and promtool is missing: `bash .ci/setup` installs Debian's prometheus package")
    pytest.skip("promtool is missing; `bash .ci/setup` installs it (Debian's prometheus package)")


def alerts() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


# --- the chart --------------------------------------------------------------------------------


def test_default_values_render_no_monitoring_objects():
    docs = render({})
    assert not by_kind(docs, "PrometheusRule")
    assert not [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]


def test_lint_strict_with_monitoring_on():
    report = helm.lint(CHART, copy.deepcopy(MONITORING_ON), strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


def test_the_rules_object_carries_the_rule_file_unchanged():
    docs = render(copy.deepcopy(MONITORING_ON))
    (rule,) = by_kind(docs, "PrometheusRule")
    jsonschema.validate(rule, PROMETHEUS_RULE)
    assert rule["metadata"]["name"] == f"{RELEASE}-gatehouse"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    # Prometheus' own templates reach the object as written, not eaten by Helm's.
    assert "{{ $labels.route }}" in json.dumps(rule)


def test_the_dashboard_configmap_carries_the_dashboard_unchanged():
    docs = render(copy.deepcopy(MONITORING_ON))
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == f"{RELEASE}-gatehouse-dashboard"]
    kubernetes_validate.validate(cm, KUBE_VERSION, strict=True)
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Edge"}
    assert json.loads(cm["data"]["gatehouse.json"]) == json.loads(DASHBOARD.read_text())


def test_objects_go_to_the_namespace_asked_for():
    values = copy.deepcopy(MONITORING_ON)
    values["monitoring"]["dashboard"]["namespace"] = "grafana"
    values["monitoring"]["rules"]["namespace"] = "monitoring"
    docs = render(values)
    assert by_kind(docs, "PrometheusRule")[0]["metadata"]["namespace"] == "monitoring"
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["namespace"] == "grafana"


def test_the_schema_refuses_unknown_monitoring_keys():
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(Exception, match="(?i)additional properties|not allowed|schema"):
            chart.render({"monitoring": {"rules": {"enable": True}}}, name=RELEASE, namespace=NAMESPACE)


# --- the dashboard ------------------------------------------------------------------------------


def test_dashboard_panels_are_well_formed():
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert variables == {"datasource", "job"}
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and panel.get("description"), panel["title"]
        for target in panel["targets"]:
            assert 'job=~"$job"' in target["expr"], f"{panel['title']}: {target['expr']}"


def test_every_dashboard_query_parses_as_promql(tmp_path):
    tool = promtool()
    rules = [
        {"record": f"dashboard:query_{i}", "expr": q.replace("$__rate_interval", "5m").replace("$job", ".+")}
        for i, q in enumerate(dashboard_queries())
    ]
    assert len(rules) >= 25
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


# --- the rules --------------------------------------------------------------------------------


def test_promtool_check_rules():
    tool = promtool()
    run = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in run.stdout


def test_promtool_unit_tests_pass_and_cover_every_alert():
    tool = promtool()
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert tested == {a["alert"] for a in alerts()}, "every alert needs a unit test where it fires"
    run = subprocess.run([tool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_every_alert_says_what_and_how_bad():
    for alert in alerts():
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], alert["alert"]
        assert alert.get("for"), f"{alert['alert']} would fire on one bad scrape"

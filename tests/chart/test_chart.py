"""The Helm chart in charts/gatehouse, checked without a cluster or a helm binary.

For the default values, every worked example under charts/gatehouse/examples/, a values set
with every optional object on (all-on.yaml), a quick start with secrets from values, and the
rawConfig escape hatch, these tests:

- lint the chart with Helm's own SDK (helm-python-sdk), strict, against a current Kubernetes;
- render it and validate every manifest against that Kubernetes version's schemas
  (kubernetes-validate, strict: unknown fields fail); the two custom resources are checked
  against crd_schemas.py;
- rebuild the pod's view of its files and environment from the rendered objects (ConfigMaps,
  Secrets, volume mounts, env) and run the real `gatehouse check` on the rendered
  gatehouse.toml, expecting exit 0 and the listeners, drain and stores the chart promised.
"""

from __future__ import annotations

import base64
import copy
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import pytest
import yaml

from crd_schemas import BY_KIND as CRD_SCHEMAS

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "gatehouse"
HERE = Path(__file__).resolve().parent
EXAMPLE_FILES = REPO / "config" / "example"

RELEASE = "edge"
NAMESPACE = "gatehouse"
# The newest Kubernetes version kubernetes-validate has schemas for (1.37 with the pinned
# release); the chart must validate there.
KUBE_VERSION = kv_utils.latest_version()

WORKED_EXAMPLES = sorted(p.stem for p in (CHART / "examples").glob("*.yaml"))


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def _all_on() -> dict[str, Any]:
    values = _load(HERE / "all-on.yaml")
    values["extraFiles"]["internal-rs256.pub.pem"] = (EXAMPLE_FILES / "rs256.pub.pem").read_text()
    values["extraFiles"]["upstream-ca.crt"] = (EXAMPLE_FILES / "upstream-ca.crt").read_text()
    return values


def _quick_start() -> dict[str, Any]:
    """Everything from values: the TLS pair, an HMAC issuer's secret, the admin token, Redis."""
    return {
        "config": {
            "issuer": [
                {
                    "name": "dev",
                    "issuer": "https://dev.example.com/",
                    "audiences": ["api"],
                    "hmac_secret_env": "GATEHOUSE_HS_SECRET",
                }
            ],
            "tickets": {},
            "route": [
                {
                    "path": "/ws",
                    "upstream": "http://ws:8080",
                    "websocket": True,
                    "tokens": ["ticket", "header"],
                }
            ],
        },
        "tls": {
            "enabled": True,
            "cert": (EXAMPLE_FILES / "tls.crt").read_text(),
            "key": (EXAMPLE_FILES / "tls.key").read_text(),
        },
        "secrets": {
            "adminToken": {"value": "quick-start-admin-token"},
            "hmacSecret": {"value": "quick-start-hmac-secret-0123456789abcdef"},
        },
        "redis": {"url": "redis://redis:6379/0"},
    }


CASES: dict[str, Any] = {
    "default": lambda: {},
    **{f"example:{name}": (lambda n=name: _load(CHART / "examples" / f"{n}.yaml")) for name in WORKED_EXAMPLES},
    "all-on": _all_on,
    "quick-start": _quick_start,
    "raw-config": lambda: _load(HERE / "raw-config.yaml"),
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    docs = []
    for name, text in sorted(out.items()):
        if name.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    values = CASES[request.param]()
    return request.param, values, render(copy.deepcopy(values))


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


# --- the worked examples exist -------------------------------------------------------------


def test_the_worked_examples_are_there():
    assert set(WORKED_EXAMPLES) >= {
        "signalr-single-replica",
        "three-replicas-redis",
        "cert-manager-tls",
        "signalr-scaled-hubs",
    }
    readme = (CHART / "README.md").read_text()
    for name in WORKED_EXAMPLES:
        assert f"examples/{name}.yaml" in readme, f"chart README does not describe {name}"


# --- lint ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_lint_strict(name):
    report = helm.lint(CHART, CASES[name](), strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
    # Severity 1 is "info" (Helm's only one here: "icon is recommended"); warnings and errors fail.
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


# --- Kubernetes schemas ----------------------------------------------------------------------


def test_every_manifest_validates_against_kubernetes(case):
    name, _, docs = case
    assert docs, name
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        label = f"{name}: {doc['kind']}/{doc['metadata']['name']}"
        if key in CRD_SCHEMAS:
            try:
                jsonschema.validate(doc, CRD_SCHEMAS[key])
            except jsonschema.ValidationError as e:
                pytest.fail(f"{label}: {'.'.join(map(str, e.path))}: {e.message}")
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{label} against Kubernetes {KUBE_VERSION}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            pytest.fail(f"{label}: {e.message}")
        assert doc["metadata"].get("namespace") == NAMESPACE or doc["kind"] == "ServiceMonitor", label


def test_all_on_renders_every_optional_object():
    docs = render(_all_on())
    assert kinds(docs) == sorted(
        [
            "Certificate",  # cert-manager
            "ConfigMap",  # gatehouse.toml
            "ConfigMap",  # extraFiles
            "Deployment",
            "HorizontalPodAutoscaler",
            "Ingress",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Secret",  # secrets and the Redis URL from values
            "Service",
            "Service",  # -metrics
            "ServiceAccount",
            "ServiceMonitor",
        ]
    )
    assert "replicas" not in one(docs, "Deployment")["spec"], "the HPA owns the replica count"
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert one(docs, "Certificate")["spec"]["secretName"] == volumes["tls"]["secret"]["secretName"]


def test_scaled_hubs_get_a_headless_service_and_a_discovering_affinity_route():
    values = _load(CHART / "examples" / "signalr-scaled-hubs.yaml")
    docs = render(values)
    hub = one(docs, "Service", "chat-hub-pods")
    assert hub["spec"]["clusterIP"] == "None", "DNS must answer every pod, not a virtual IP"
    assert hub["spec"]["selector"] == {"app": "chat-hub"}
    assert hub["spec"]["ports"][0]["port"] == 5000
    toml = tomllib.loads(one(docs, "ConfigMap")["data"]["gatehouse.toml"])
    route = toml["route"][0]
    assert route["upstream"] == "http://chat-hub-pods.chat.svc.cluster.local:5000"
    assert route["upstream_discovery"] == {"resolve_every": "10s"}
    assert route["affinity"] == "signalr"
    # Every replica mounts the same ConfigMap, so every replica derives the same seal key.
    assert one(docs, "Deployment")["spec"]["replicas"] == 2


def test_quick_start_creates_the_tls_secret_from_values():
    docs = render(_quick_start())
    tls = one(docs, "Secret", f"{RELEASE}-gatehouse-tls")
    assert tls["type"] == "kubernetes.io/tls"
    assert base64.b64decode(tls["data"]["tls.crt"]).decode() == (EXAMPLE_FILES / "tls.crt").read_text()
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == f"{RELEASE}-gatehouse-tls"


def test_default_values_render_only_the_core_objects():
    assert kinds(render({})) == ["ConfigMap", "Deployment", "Service", "Service", "ServiceAccount"]


# --- what the pods get -------------------------------------------------------------------------


def test_deployment_shape(case):
    name, values, docs = case
    dep = one(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]

    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])

    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["securityContext"]["runAsNonRoot"] is True

    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert set(ports) == {"http", "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert "resources" in c

    # The admin listener is never on the public Service; the metrics Service is cluster-internal.
    public = one(docs, "Service", f"{RELEASE}-gatehouse")
    assert [p["targetPort"] for p in public["spec"]["ports"]] == ["http"]
    metrics = one(docs, "Service", f"{RELEASE}-gatehouse-metrics")
    assert metrics["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["targetPort"]) for p in metrics["spec"]["ports"]] == [("metrics", "admin")]


def test_a_config_change_rolls_the_pods_and_nothing_else_does():
    def checksum(values):
        dep = one(render(values), "Deployment")
        return dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = checksum({})
    assert checksum({"replicaCount": 4}) == base
    assert checksum({"config": {"log": {"format": "text"}}}) != base
    assert checksum({"extraFiles": {"ca.crt": "x"}}) != base


# --- gatehouse check on the rendered config ------------------------------------------------------


class Pod:
    """The files and environment the gatehouse container would see, rebuilt under `root`."""

    def __init__(self, docs: list[dict[str, Any]], root: Path):
        self.root = root
        self.docs = docs
        dep = one(docs, "Deployment")
        self.spec = dep["spec"]["template"]["spec"]
        (self.container,) = self.spec["containers"]
        self.mounts = sorted(self.container.get("volumeMounts", []), key=lambda m: -len(m["mountPath"]))
        volumes = {v["name"]: v for v in self.spec["volumes"]}
        for mount in self.mounts:
            self._materialize(volumes[mount["name"]], root / mount["mountPath"].lstrip("/"))
        self.env = {"PATH": "/usr/bin:/bin"}
        for e in self.container.get("env", []):
            if "value" in e:
                self.env[e["name"]] = self.path(e["value"])
            else:
                ref = e["valueFrom"]["secretKeyRef"]
                self.env[e["name"]] = self._secret_value(ref["name"], ref["key"], e["name"])

    def _rendered(self, kind: str, name: str) -> dict[str, Any] | None:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        return found[0] if found else None

    def _materialize(self, volume: dict[str, Any], dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            cm = self._rendered("ConfigMap", volume["configMap"]["name"])
            assert cm is not None, f"the pod mounts ConfigMap {volume['configMap']['name']}, which the chart does not render"
            for key, text in cm["data"].items():
                (dest / key).write_text(text)
        elif "secret" in volume:
            secret = self._rendered("Secret", volume["secret"]["secretName"])
            if secret is not None:
                for key, b64 in secret["data"].items():
                    (dest / key).write_bytes(base64.b64decode(b64))
            else:
                # A Secret made outside the chart (existingSecret, cert-manager): a TLS pair.
                (dest / "tls.crt").write_text((EXAMPLE_FILES / "tls.crt").read_text())
                (dest / "tls.key").write_text((EXAMPLE_FILES / "tls.key").read_text())
        else:
            assert "emptyDir" in volume, volume

    def _secret_value(self, secret_name: str, key: str, env_name: str) -> str:
        secret = self._rendered("Secret", secret_name)
        if secret is not None:
            assert key in secret["data"], f"{env_name}: the chart's Secret {secret_name} has no key {key}"
            return base64.b64decode(secret["data"][key]).decode()
        # A Secret made outside the chart: a dummy of the right shape.
        if env_name.endswith("__STORE"):
            return "redis://:dummy@redis.invalid:6379/0"
        return "dummy-secret-value-for-gatehouse-check-0123456789"

    def path(self, pod_path: str) -> str:
        """A path inside the pod, as it is under `root`."""
        for m in self.mounts:
            if pod_path == m["mountPath"] or pod_path.startswith(m["mountPath"].rstrip("/") + "/"):
                return str(self.root) + pod_path
        return pod_path

    def config_file(self) -> Path:
        args = self.container["args"]
        assert args[:2] == ["run", "--config"], args
        return Path(self.path(args[2]))


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    assert m, duration
    return int(m.group(1)) * units[m.group(2)]


def test_gatehouse_check_accepts_the_rendered_config(case, tmp_path, gatehouse_bin):
    name, values, docs = case
    pod = Pod(docs, tmp_path / "pod")
    config = pod.config_file()
    assert config.is_file(), f"{name}: --config points at {config}, which no mount provides"

    # Absolute paths in gatehouse.toml are read where the pod's mounts put them.
    text = config.read_text()
    text = re.sub(r'"(/[^"]*)"', lambda m: '"' + pod.path(m.group(1)) + '"', text)
    config.write_text(text)

    result = subprocess.run(
        [str(gatehouse_bin), "check", "--config", str(config)],
        env=pod.env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, (
        f"{name}: gatehouse check exited {result.returncode}\n--- stderr\n{result.stderr}\n"
        f"--- gatehouse.toml\n{config.read_text()}\n--- env\n{sorted(pod.env)}"
    )
    effective = tomllib.loads(result.stdout)

    # The listeners bind where the pod's ports and probes expect them.
    ports = {p["name"]: p["containerPort"] for p in pod.container["ports"]}
    assert effective["listen"]["addr"] == f"0.0.0.0:{ports['http']}"
    assert effective["admin"]["addr"] == f"0.0.0.0:{ports['admin']}", "probes need the admin listener on 0.0.0.0"

    # The kubelet waits longer than the preStop sleep plus the drain.
    grace = _seconds(effective["shutdown"]["grace"])
    sleep = int(pod.container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod.spec["terminationGracePeriodSeconds"] > grace + sleep
    assert grace == values.get("shutdown", {}).get("graceSeconds", 10)

    # TLS is on exactly when the chart mounts a pair.
    tls_on = values.get("tls", {}).get("enabled", False)
    assert bool(effective["listen"].get("tls", {}).get("cert")) == tls_on

    # The Redis URL comes from its Secret, masked in the output when it holds a password.
    redis_on = bool(values.get("redis", {}).get("existingSecret") or values.get("redis", {}).get("url"))
    assert effective["revocation"]["store"].startswith("redis://") == redis_on
    assert "dummy" not in result.stdout and "test-password" not in result.stdout
    if "tickets" in effective:
        assert effective["tickets"]["store"].startswith("redis://") == redis_on

    # The admin bearer is wired when a secret for it is given.
    admin = values.get("secrets", {}).get("adminToken", {})
    if admin.get("existingSecret") or admin.get("value"):
        assert effective["admin"]["token_env"] == "GATEHOUSE_ADMIN_TOKEN"
        assert pod.env["GATEHOUSE_ADMIN_TOKEN"]


# --- the chart refuses what would not run ----------------------------------------------------------


@pytest.mark.parametrize(
    "values, message",
    [
        ({"config": {"listen": {"addr": "0.0.0.0:1"}}}, "config.listen.addr is set by the chart"),
        ({"config": {"shutdown": {"grace": "5s"}}}, "config.shutdown.grace is set by the chart"),
        (
            {"shutdown": {"graceSeconds": 30, "preStopSleepSeconds": 5, "terminationGracePeriodSeconds": 30}},
            "must be above",
        ),
        (
            {"config": {"issuer": [{"name": "h", "issuer": "https://h/", "audiences": ["a"], "hmac_secret_env": "GATEHOUSE_HS_SECRET"}]}},
            "names GATEHOUSE_HS_SECRET, but no secret provides it",
        ),
        ({"secrets": {"extra": {"GATEHOUSE_LOG__FORMAT": {"value": "x"}}}}, "would be read by gatehouse as an override"),
        ({"tls": {"enabled": True}}, "tls.enabled needs exactly one of"),
        ({"redis": {"url": "redis://r:6379", "revocation": True}, "config": {"revocation": {"store": "memory"}}}, "comes from the Redis Secret"),
        ({"podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1}}, "not both"),
        (
            {"secrets": {"adminToken": {"value": "a"}, "hmacSecret": {"value": "b" * 32, "key": "admin-token"}}},
            'the key "admin-token" of the chart-made Secret already holds another value',
        ),
    ],
)
def test_render_refuses(values, message):
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(values)


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCount": "three"},
        {"replicas": 3},  # a typo of replicaCount
        {"config": {"route": [{"path": "no-slash", "upstream": "http://x:1"}]}},
        {"config": {"log": {"format": "xml"}}},
        {"service": {"type": "ExternalName"}},
        {"redis": {"url": "http://not-redis"}},
    ],
)
def test_schema_refuses(values):
    with pytest.raises(helm.HelmValuesError):
        render(values)


def test_tickets_store_is_only_wired_when_tickets_are_configured():
    def env_names(values):
        c = one(render(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
        return {e["name"] for e in c.get("env", [])}

    redis = {"redis": {"url": "redis://r:6379/0"}}
    # Setting GATEHOUSE_TICKETS__STORE would create [tickets] and so turn the endpoint on.
    assert env_names(redis) == {"GATEHOUSE_REVOCATION__STORE"}
    with_tickets = {**redis, "config": {"tickets": {}}}
    assert env_names(with_tickets) == {"GATEHOUSE_REVOCATION__STORE", "GATEHOUSE_TICKETS__STORE"}


# --- the chart README documents every value -------------------------------------------------------

# Values whose insides are free-form (passed through to Kubernetes or to gatehouse.toml).
OPAQUE = {
    "config",
    "livenessProbe",
    "readinessProbe",
    "resources",
    "podSecurityContext",
    "securityContext",
    "tls.certManager.privateKey",
    "ingress.hosts",
}


def _leaves(values: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in OPAQUE:
            out.extend(_leaves(value, path + "."))
        else:
            out.append(path)
    return out


def test_chart_readme_lists_every_value():
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
    missing = [k for k in _leaves(_load(CHART / "values.yaml")) if k not in documented]
    assert not missing, f"charts/gatehouse/README.md has no row for: {missing}"

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
import os
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
    "quick-start-env": lambda: {**_quick_start(), "secrets": {**_quick_start()["secrets"], "mode": "env"}},
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
            "ConfigMap",  # extraObjects, as a map
            "ConfigMap",  # extraObjects, as a string
            "Deployment",
            "HTTPRoute",
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
    # The image has no shell and no sleep binary: the preStop hook is the kubelet's own
    # sleep action, and no probe or hook execs anything.
    sleep = values.get("shutdown", {}).get("preStopSleepSeconds", 5)
    if sleep:
        assert c["lifecycle"]["preStop"] == {"sleep": {"seconds": sleep}}
    else:
        assert "lifecycle" not in c
    for hook in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert "exec" not in c.get(hook, {}), f"{hook} would need a shell-less exec"
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
    assert checksum({"replicaCount": 4, "redis": {"perPodStores": True}}) == base
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
            elif volume["secret"].get("items"):
                # The session-ticket key Secret made outside the chart: one key of the documented shape.
                for item in volume["secret"]["items"]:
                    (dest / item["path"]).write_text(base64.b64encode(os.urandom(48)).decode() + "\n")
            else:
                # A Secret made outside the chart (existingSecret, cert-manager): a TLS pair.
                (dest / "tls.crt").write_text((EXAMPLE_FILES / "tls.crt").read_text())
                (dest / "tls.key").write_text((EXAMPLE_FILES / "tls.key").read_text())
        elif "projected" in volume:
            for source in volume["projected"]["sources"]:
                name = source["secret"]["name"]
                secret = self._rendered("Secret", name)
                for item in source["secret"]["items"]:
                    if secret is not None:
                        assert item["key"] in secret["data"], f"the chart's Secret {name} has no key {item['key']}"
                        value = base64.b64decode(secret["data"][item["key"]])
                    else:
                        # A Secret made outside the chart: a dummy of the right shape.
                        value = b"dummy-secret-value-for-gatehouse-check-0123456789"
                    (dest / item["path"]).write_bytes(value)
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
    sleep = pod.container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod.spec["terminationGracePeriodSeconds"] > grace + sleep
    assert grace == values.get("shutdown", {}).get("graceSeconds", 10)

    # TLS is on exactly when the chart mounts a pair.
    tls_on = values.get("tls", {}).get("enabled", False)
    assert bool(effective["listen"].get("tls", {}).get("cert")) == tls_on

    # The shared session-ticket keys are read from the mounted Secret exactly when one is named.
    ticket_secret = values.get("tls", {}).get("sessionTicketKeys", {}).get("existingSecret")
    keys_file = effective["listen"].get("tls", {}).get("session_ticket_keys_file")
    if ticket_secret:
        assert keys_file == pod.path("/etc/gatehouse/tls-tickets/ticket.keys")
        volume = next(v for v in pod.spec["volumes"] if v["name"] == "tls-tickets")
        assert volume["secret"]["secretName"] == ticket_secret
        mount = next(m for m in pod.container["volumeMounts"] if m["name"] == "tls-tickets")
        assert "subPath" not in mount, "a subPath mount never sees a rotated Secret"
    else:
        assert keys_file is None

    # The Redis URL comes from its Secret, masked in the output when it holds a password.
    redis_on = bool(values.get("redis", {}).get("existingSecret") or values.get("redis", {}).get("url"))
    assert effective["revocation"]["store"].startswith("redis://") == redis_on
    assert "dummy" not in result.stdout and "test-password" not in result.stdout
    if "tickets" in effective:
        assert effective["tickets"]["store"].startswith("redis://") == redis_on

    # The client trust is what trustedProxies and proxyProtocol say.
    trust = values.get("trustedProxies", {})
    pod_network = _load(CHART / "values.yaml")["trustedProxies"]["podNetwork"]
    expected = (trust.get("cidrs") or pod_network) if trust.get("enabled") else []
    assert effective["listen"]["trusted_proxies"] == expected
    assert effective["listen"]["proxy_protocol"] == values.get("proxyProtocol", False)

    # The admin bearer is wired when a secret for it is given: by default as a mounted file
    # (rotation without a rollout), with secrets.mode "env" as an environment variable.
    admin = values.get("secrets", {}).get("adminToken", {})
    if admin.get("existingSecret") or admin.get("value"):
        if values.get("secrets", {}).get("mode", "file") == "file":
            path = effective["admin"]["token_file"]
            assert path == pod.path("/etc/gatehouse/secrets/" + admin.get("key", "admin-token"))
            assert Path(path).read_text() == admin.get("value", "dummy-secret-value-for-gatehouse-check-0123456789")
            assert "token_env" not in effective["admin"] and "GATEHOUSE_ADMIN_TOKEN" not in pod.env
        else:
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
        ({"secrets": {"extra": {"GATEHOUSE_TRACE__SERVICE_NAME": {"value": "x"}}}}, "would be read by gatehouse as an override"),
        ({"tls": {"enabled": True}}, "tls.enabled needs exactly one of"),
        ({"tls": {"sessionTicketKeys": {"existingSecret": "keys"}}}, "tls.sessionTicketKeys.existingSecret needs tls.enabled"),
        (
            {
                "tls": {"enabled": True, "existingSecret": "t", "sessionTicketKeys": {"existingSecret": "keys"}},
                "config": {"listen": {"tls": {"session_ticket_keys_file": "/x"}}},
            },
            "config.listen.tls.session_ticket_keys_file is set by the chart",
        ),
        ({"redis": {"url": "redis://r:6379", "revocation": True}, "config": {"revocation": {"store": "memory"}}}, "comes from the Redis Secret"),
        ({"podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1}}, "not both"),
        ({"proxyProtocol": True}, "proxyProtocol needs trustedProxies.enabled"),
        (
            {"config": {"listen": {"trusted_proxies": ["0.0.0.0/0"]}}},
            "config.listen.trusted_proxies is set by the chart from trustedProxies",
        ),
        (
            {"secrets": {"adminToken": {"existingSecret": "a", "key": "token"}, "hmacSecret": {"existingSecret": "b", "key": "token"}}},
            "secrets.adminToken and secrets.hmacSecret would both be mounted at /etc/gatehouse/secrets/token",
        ),
        ({"httpRoute": {"enabled": True}}, "httpRoute.enabled needs httpRoute.parentRefs"),
        (
            {"networkPolicy": {"enabled": True}, "metrics": {"serviceMonitor": {"enabled": True}}},
            "networkPolicy.enabled with metrics.serviceMonitor.enabled needs networkPolicy.metricsFrom",
        ),
        (
            {"secrets": {"adminToken": {"value": "a"}, "hmacSecret": {"value": "b" * 32, "key": "admin-token"}}},
            'the key "admin-token" of the chart-made Secret already holds another value',
        ),
        (
            {"replicaCount": 2},
            "several pods (replicaCount > 1 or autoscaling.enabled) need Redis for revocations and tickets",
        ),
        (
            {"autoscaling": {"enabled": True}},
            "several pods (replicaCount > 1 or autoscaling.enabled) need Redis for revocations and tickets",
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
        {"secrets": {"mode": "volume"}},
        {"podDisruptionBudget": {"enabled": "auto"}},
        {"topologySpread": {"whenUnsatisfiable": "Sometimes"}},
        {"httpRoute": {"enabled": True, "parentRefs": [{"namespace": "x"}]}},
        {"extraObjects": [3]},
        {"trustedProxies": {"enabled": "yes"}},
        {"trustedProxies": {"podNetwork": []}},
        {"proxyProtocol": "true"},
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


def _rendered_listen(values: dict[str, Any]) -> dict[str, Any]:
    config_map = one(render(values), "ConfigMap", f"{RELEASE}-gatehouse")
    return tomllib.loads(config_map["data"]["gatehouse.toml"])["listen"]


def test_trusted_proxies_default_to_the_pod_network_when_enabled():
    assert "trusted_proxies" not in _rendered_listen({})
    pod_network = _load(CHART / "values.yaml")["trustedProxies"]["podNetwork"]
    listen = _rendered_listen({"trustedProxies": {"enabled": True}})
    assert listen["trusted_proxies"] == pod_network
    assert "proxy_protocol" not in listen
    own = {"trustedProxies": {"enabled": True, "cidrs": ["10.42.0.0/16"]}, "proxyProtocol": True}
    listen = _rendered_listen(own)
    assert listen["trusted_proxies"] == ["10.42.0.0/16"]
    assert listen["proxy_protocol"] is True


def test_raw_config_gets_the_client_trust_from_the_environment():
    values = {**_load(HERE / "raw-config.yaml"), "trustedProxies": {"enabled": True}, "proxyProtocol": True}
    container = one(render(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    pod_network = _load(CHART / "values.yaml")["trustedProxies"]["podNetwork"]
    assert yaml.safe_load(env["GATEHOUSE_LISTEN__TRUSTED_PROXIES"]) == pod_network
    assert env["GATEHOUSE_LISTEN__PROXY_PROTOCOL"] == "true"


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCount": 2, "redis": {"url": "redis://redis:6379/0"}},
        {"replicaCount": 2, "config": {"revocation": {"store": "redis://redis:6379/0"}}},
        {"autoscaling": {"enabled": True}, "redis": {"perPodStores": True}},
    ],
)
def test_several_pods_render_with_shared_or_acknowledged_per_pod_stores(values):
    """Pass 20: two pods without Redis each kept their own revocations and tickets."""
    assert one(render(values), "Deployment")


def test_raw_config_gets_the_client_trust_without_an_admin_token():
    """Pass 20: the trust overrides sat inside the admin token's `if`."""
    values = {**_load(HERE / "raw-config.yaml"), "trustedProxies": {"enabled": True}, "proxyProtocol": True}
    values["secrets"] = {**values.get("secrets", {}), "adminToken": {"existingSecret": ""}}
    container = one(render(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert "GATEHOUSE_ADMIN__TOKEN_ENV" not in env and "GATEHOUSE_ADMIN__TOKEN_FILE" not in env
    assert env["GATEHOUSE_LISTEN__PROXY_PROTOCOL"] == "true"
    assert "GATEHOUSE_LISTEN__TRUSTED_PROXIES" in env


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


# --- releases: the chart follows the crate -------------------------------------------------------


def _cargo_version() -> str:
    return tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]


def test_app_version_and_default_image_tag_follow_the_crate_version():
    chart = _load(CHART / "Chart.yaml")
    assert chart["appVersion"] == _cargo_version(), "Chart.yaml appVersion must be the crate version"
    assert chart["version"] == _cargo_version(), "the chart is released with the crate, under its version"
    (c,) = one(render({}), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert c["image"] == f"gatehouse:{_cargo_version()}"
    assert one(render({}), "Deployment")["metadata"]["labels"]["app.kubernetes.io/version"] == _cargo_version()


def _oldest_kubernetes() -> str:
    constraint = _load(CHART / "Chart.yaml")["kubeVersion"]
    m = re.fullmatch(r">=\s*(\d+)\.(\d+)\.0-0", constraint)
    assert m, constraint
    return f"{m.group(1)}.{m.group(2)}.0"


def test_the_oldest_kubernetes_the_chart_allows_has_every_field_it_uses(case):
    """kubeVersion is >= 1.30: the preStop sleep action is on by default from 1.30 (beta)."""
    name, _, docs = case
    oldest = _oldest_kubernetes()
    assert oldest == "1.30.0"
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
            continue
        try:
            kubernetes_validate.validate(doc, oldest, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{name}: {doc['kind']} against Kubernetes {oldest}: {'.'.join(map(str, e.path))}: {e.message}")


# --- production: secrets as files ----------------------------------------------------------------


def _container(docs):
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def _toml(docs) -> dict[str, Any]:
    return tomllib.loads(one(docs, "ConfigMap", f"{RELEASE}-gatehouse")["data"]["gatehouse.toml"])


def test_secrets_are_mounted_files_named_by_the_file_keys_by_default():
    docs = render(_quick_start())
    config = _toml(docs)
    assert config["admin"] == {"addr": "0.0.0.0:9090", "token_file": "/etc/gatehouse/secrets/admin-token"}
    assert config["issuer"][0]["hmac_secret_file"] == "/etc/gatehouse/secrets/hmac-secret"
    assert "hmac_secret_env" not in config["issuer"][0]

    c = _container(docs)
    env = {e["name"] for e in c.get("env", [])}
    assert env == {"GATEHOUSE_REVOCATION__STORE", "GATEHOUSE_TICKETS__STORE"}, "only the Redis URL stays an env var"
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "secrets"]
    # A directory mount: with subPath the kubelet would never update the file.
    assert mount == {"name": "secrets", "mountPath": "/etc/gatehouse/secrets", "readOnly": True}
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    projected = volumes["secrets"]["projected"]
    assert projected["defaultMode"] == 0o440
    items = [(s["secret"]["name"], i["key"], i["path"]) for s in projected["sources"] for i in s["secret"]["items"]]
    assert items == [(f"{RELEASE}-gatehouse", "admin-token", "admin-token"), (f"{RELEASE}-gatehouse", "hmac-secret", "hmac-secret")]


def test_a_network_policy_next_to_a_service_monitor_lets_prometheus_scrape():
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    docs = render({"networkPolicy": {"enabled": True, "metricsFrom": monitoring}, "metrics": {"serviceMonitor": {"enabled": True}}})
    rules = one(docs, "NetworkPolicy")["spec"]["ingress"]
    admin = [r for r in rules if r["ports"] == [{"port": "admin", "protocol": "TCP"}]]
    assert [r["from"] for r in admin] == [monitoring]
    # Without a ServiceMonitor an empty list stays what it says: no pod on the admin port.
    docs = render({"networkPolicy": {"enabled": True}})
    assert [r["ports"][0]["port"] for r in one(docs, "NetworkPolicy")["spec"]["ingress"]] == ["http"]


def test_the_tls_and_ticket_key_secrets_are_mounted_0440():
    values = {
        "tls": {"enabled": True, "existingSecret": "edge-tls", "sessionTicketKeys": {"existingSecret": "edge-ticket-keys"}},
    }
    volumes = {v["name"]: v for v in one(render(values), "Deployment")["spec"]["template"]["spec"]["volumes"]}
    for name in ("tls", "tls-tickets"):
        assert volumes[name]["secret"]["defaultMode"] == 0o440, name
    # 0440 is readable by the process only through the pod's fsGroup (the files' group).
    pod = one(render(values), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["fsGroup"] == pod["containers"][0]["securityContext"]["runAsGroup"] == 10001


def test_every_kind_of_secret_key_is_rewritten_to_its_file():
    values = _all_on()
    docs = render(copy.deepcopy(values))
    config = _toml(docs)
    by_name = {i["name"]: i for i in config["issuer"]}
    assert by_name["legacy"]["hmac_secret_file"] == "/etc/gatehouse/secrets/hmac-secret"
    # secrets.extra from an existing Secret: its key names the file.
    assert by_name["partner"]["hmac_secret_file"] == "/etc/gatehouse/secrets/secret"
    assert config["introspection"][0]["client_secret_file"] == "/etc/gatehouse/secrets/introspection-client-secret"
    assert not [k for t in config["issuer"] + config["introspection"] for k in t if k.endswith("_env")]
    sources = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    names = {s["secret"]["name"] for v in sources if "projected" in v for s in v["projected"]["sources"]}
    assert names == {f"{RELEASE}-gatehouse", "partner-hmac"}


def test_env_mode_keeps_environment_variables():
    values = _quick_start()
    values["secrets"]["mode"] = "env"
    docs = render(values)
    config = _toml(docs)
    assert config["admin"]["token_env"] == "GATEHOUSE_ADMIN_TOKEN"
    assert config["issuer"][0]["hmac_secret_env"] == "GATEHOUSE_HS_SECRET"
    env = {e["name"] for e in _container(docs)["env"]}
    assert {"GATEHOUSE_ADMIN_TOKEN", "GATEHOUSE_HS_SECRET"} <= env
    assert "secrets" not in {v["name"] for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}


def test_raw_config_gets_the_admin_token_file_by_override():
    values = {**_load(HERE / "raw-config.yaml"), "secrets": {"adminToken": {"existingSecret": "admin"}}}
    env = {e["name"]: e.get("value") for e in _container(render(values))["env"]}
    assert env["GATEHOUSE_ADMIN__TOKEN_FILE"] == "/etc/gatehouse/secrets/admin-token"
    assert "GATEHOUSE_ADMIN__TOKEN_ENV" not in env


def _pod_template(values):
    return one(render(values), "Deployment")["spec"]["template"]


def test_rotating_a_file_secret_does_not_roll_the_pods_and_an_env_secret_does():
    base = _quick_start()
    rotated = copy.deepcopy(base)
    rotated["secrets"]["adminToken"]["value"] = "rotated-admin-token"
    rotated["secrets"]["hmacSecret"]["value"] = "rotated-hmac-secret-0123456789abcdef"
    assert _pod_template(copy.deepcopy(base)) == _pod_template(rotated), "a file secret's rotation must not roll the pods"

    as_env = {**copy.deepcopy(base), "secrets": {**base["secrets"], "mode": "env"}}
    as_env_rotated = {**copy.deepcopy(rotated), "secrets": {**rotated["secrets"], "mode": "env"}}
    assert _pod_template(as_env) != _pod_template(as_env_rotated), "env secrets are read at start: the pods must roll"

    redis_moved = copy.deepcopy(base)
    redis_moved["redis"]["url"] = "redis://other:6379/0"
    assert _pod_template(copy.deepcopy(base)) != _pod_template(redis_moved), "the Redis URL is an env var"


# --- production: disruption budget, spread, extras, Gateway API ---------------------------------

# Several pods need shared stores (the chart refuses them otherwise).
SHARED = {"url": "redis://redis:6379/0"}


@pytest.mark.parametrize(
    "values, budget",
    [
        ({}, None),
        ({"replicaCount": 2}, {"maxUnavailable": 1}),
        ({"autoscaling": {"enabled": True, "minReplicas": 2}}, {"maxUnavailable": 1}),
        ({"replicaCount": 5, "autoscaling": {"enabled": True, "minReplicas": 1}}, None),
        ({"replicaCount": 3, "podDisruptionBudget": {"enabled": False}}, None),
        ({"podDisruptionBudget": {"enabled": True}}, {"maxUnavailable": 1}),
        ({"replicaCount": 3, "podDisruptionBudget": {"minAvailable": 2}}, {"minAvailable": 2}),
        ({"replicaCount": 3, "podDisruptionBudget": {"maxUnavailable": 0}}, {"maxUnavailable": 0}),
        ({"replicaCount": 4, "podDisruptionBudget": {"maxUnavailable": "25%"}}, {"maxUnavailable": "25%"}),
    ],
)
def test_disruption_budget_is_on_when_more_than_one_pod_may_run(values, budget):
    found = [d for d in render({**values, "redis": SHARED}) if d["kind"] == "PodDisruptionBudget"]
    if budget is None:
        assert not found
    else:
        (pdb,) = found
        assert {k: v for k, v in pdb["spec"].items() if k != "selector"} == budget
        assert pdb["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "gatehouse", "app.kubernetes.io/instance": RELEASE}


def test_pods_spread_over_zones_and_nodes_by_default():
    spec = one(render({"replicaCount": 3, "redis": SHARED}), "Deployment")["spec"]["template"]["spec"]
    constraints = spec["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in constraints] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    for c in constraints:
        assert c["maxSkew"] == 1 and c["whenUnsatisfiable"] == "ScheduleAnyway"
        assert c["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": "gatehouse", "app.kubernetes.io/instance": RELEASE}
        assert c["matchLabelKeys"] == ["pod-template-hash"]

    strict = one(render({"topologySpread": {"whenUnsatisfiable": "DoNotSchedule", "topologyKeys": ["kubernetes.io/hostname"]}}), "Deployment")
    (c,) = strict["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert (c["topologyKey"], c["whenUnsatisfiable"]) == ("kubernetes.io/hostname", "DoNotSchedule")

    assert "topologySpreadConstraints" not in one(render({"topologySpread": {"enabled": False}}), "Deployment")["spec"]["template"]["spec"]
    # Written constraints replace the default ones.
    own = one(render(_all_on()), "Deployment")["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert own == [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": RELEASE}}}]


def test_extra_objects_are_rendered_through_tpl():
    docs = render(_all_on())
    extra = one(docs, "ConfigMap", f"{RELEASE}-gatehouse-extra")
    assert extra["metadata"]["namespace"] == NAMESPACE and extra["data"] == {"version": _cargo_version()}
    text = one(docs, "ConfigMap", f"{RELEASE}-gatehouse-extra-text")
    assert text["data"] == {"release": RELEASE}


def test_http_route_sends_every_rule_to_the_public_service():
    for values in (_all_on(), _load(CHART / "examples" / "gateway-api.yaml")):
        docs = render(values)
        route = one(docs, "HTTPRoute")
        service = one(docs, "Service", f"{RELEASE}-gatehouse")
        (port,) = [p["port"] for p in service["spec"]["ports"]]
        assert route["spec"]["parentRefs"] == values["httpRoute"]["parentRefs"]
        assert len(route["spec"]["rules"]) == len(values["httpRoute"]["rules"])
        for rule in route["spec"]["rules"]:
            assert rule["backendRefs"] == [{"name": f"{RELEASE}-gatehouse", "port": port}]
    # The example's WebSocket rule has no request timeout.
    example = one(render(_load(CHART / "examples" / "gateway-api.yaml")), "HTTPRoute")
    assert example["spec"]["rules"][0]["timeouts"] == {"request": "0s"}
    assert not [d for d in render({}) if d["kind"] == "HTTPRoute"]

"""deploy/ checked with no cluster running: every Kubernetes manifest deserializes into the `kubernetes` package's
own typed model (unknown fields and missing required ones are errors), the pieces agree with each other and with
the gateway's settings, and the Compose file has the services, health checks and shutdown grace it promises."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import kubernetes.client
import pydantic
import pytest
import yaml

from edge_proxy.settings import Settings
from edge_proxy.store.redis_client import parse_redis_url

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
K8S = DEPLOY / "k8s"
GRACE = Settings().shutdown_grace


def model_for(doc: dict) -> type[pydantic.BaseModel]:
    """apps/v1 Deployment -> V1Deployment, autoscaling/v2 HorizontalPodAutoscaler -> V2HorizontalPodAutoscaler."""
    version = doc["apiVersion"].rsplit("/", 1)[-1]
    return getattr(kubernetes.client, version[0].upper() + version[1:] + doc["kind"])


def validate(doc: dict) -> pydantic.BaseModel:
    return model_for(doc).model_validate(doc)


def manifests() -> dict[str, dict]:
    """Every document under deploy/k8s that Kubernetes would take, by kind (a file may hold several)."""
    out: dict[str, list[dict]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            out.setdefault(doc["kind"], []).append(doc)
    return out


DOCS = [(kind, i, doc) for kind, docs in manifests().items() for i, doc in enumerate(docs)]


@pytest.mark.parametrize("kind, i, doc", DOCS, ids=[f"{k} {d['metadata']['name']}" for k, _, d in DOCS])
def test_each_manifest_is_a_valid_typed_kubernetes_object(kind, i, doc):
    obj = validate(doc)
    assert type(obj).__name__.endswith(kind)


BROKEN = [
    ("an unknown field in a container", ["spec", "template", "spec", "containers", 0], "readinesProbe", {}),
    ("a missing container name", ["spec", "template", "spec", "containers", 0], "name", None),
    ("a port that is not a number", ["spec", "template", "spec", "containers", 0, "ports", 0], "containerPort", "x"),
    ("an unknown field at the top", [], "specs", {}),
]


@pytest.mark.parametrize("why, where, field, value", BROKEN, ids=[b[0] for b in BROKEN])
def test_the_validator_refuses_a_broken_deployment(why, where, field, value):
    doc = copy.deepcopy(manifests()["Deployment"][0])
    node = doc
    for step in where:
        node = node[step]
    if value is None:
        del node[field]
    else:
        node[field] = value
    with pytest.raises(pydantic.ValidationError):
        validate(doc)


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def test_the_deployment_probes_healthz_and_outlasts_the_shutdown_grace():
    k = manifests()
    deployment = k["Deployment"][0]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
        assert container[probe]["httpGet"]["port"] in {p["name"] for p in container["ports"]}
    env = env_of(container)
    grace = float(env["EDGE_PROXY_SHUTDOWN_GRACE"]["value"])
    assert grace == GRACE
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pause + grace
    assert env["EDGE_PROXY_REGION"]["value"]
    target = parse_redis_url(env["EDGE_PROXY_REDIS_URL"]["value"])
    assert target is not None and target.kind == "cluster"
    secrets = {d["metadata"]["name"]: d for d in k["Secret"]}
    for name in ("EDGE_PROXY_DATABASE_URL", "EDGE_PROXY_ADMIN_TOKEN"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["key"] in secrets[ref["name"]]["stringData"]
    assert secrets["edge-proxy"]["stringData"]["database-url"].startswith("postgresql://")
    [keys] = container["envFrom"]
    assert all(name.startswith("EDGE_PROXY_PROVIDER_KEY_")
               for name in secrets[keys["secretRef"]["name"]]["stringData"])


def test_the_service_hpa_and_pdb_point_at_the_deployments_pods():
    k = manifests()
    deployment = k["Deployment"][0]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = k["Service"][0]
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    hpa = k["HorizontalPodAutoscaler"][0]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    pdb = k["PodDisruptionBudget"][0]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"]


def test_kustomization_applies_every_manifest_but_the_example_secrets():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == present


# -- Compose --------------------------------------------------------------------------------------------------------
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


REDIS_NODES = [f"redis-{i}" for i in range(1, 7)]


def test_compose_has_a_six_node_redis_cluster_made_by_a_one_shot_init():
    services = compose()["services"]
    for node in REDIS_NODES:
        command = services[node]["command"]
        assert command[command.index("--cluster-enabled") + 1] == "yes"
        assert services[node]["healthcheck"]["test"][-1] == "ping"
    init = services["redis-cluster-init"]
    assert init["restart"] == "no"
    assert {n: d["condition"] for n, d in init["depends_on"].items()} == dict.fromkeys(REDIS_NODES,
                                                                                     "service_healthy")
    script = init["command"][0]
    assert "redis-cli --cluster create $$nodes --cluster-replicas 1 --cluster-yes" in script
    assert "for n in " + " ".join(REDIS_NODES) + ";" in script


def test_compose_runs_a_gateway_fleet_on_the_cluster_and_postgresql():
    services = compose()["services"]
    gateway = services["gateway"]
    assert gateway["deploy"]["replicas"] >= 2
    env = gateway["environment"]
    target = parse_redis_url(env["EDGE_PROXY_REDIS_URL"])
    assert target.kind == "cluster" and [h for h, _ in target.nodes] == REDIS_NODES
    assert env["EDGE_PROXY_DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env[
        "EDGE_PROXY_DATABASE_URL"]
    assert env["EDGE_PROXY_REGION"]
    grace = float(env["EDGE_PROXY_SHUTDOWN_GRACE"])
    assert float(gateway["stop_grace_period"].rstrip("s")) > grace
    assert "/healthz" in " ".join(gateway["healthcheck"]["test"])
    assert gateway["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                     "redis-cluster-init": {"condition": "service_completed_successfully"}}
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"


def test_compose_puts_haproxy_in_front_checking_each_gateway_on_healthz():
    services = compose()["services"]
    haproxy = services["haproxy"]
    assert "/healthz" in " ".join(haproxy["healthcheck"]["test"])
    assert haproxy["depends_on"] == {"gateway": {"condition": "service_healthy"}}
    mount = haproxy["volumes"][0].split(":")
    assert (DEPLOY / mount[0]).resolve() == DEPLOY / "haproxy.cfg"
    cfg = (DEPLOY / "haproxy.cfg").read_text()
    assert re.search(r"^\s*option httpchk GET /healthz$", cfg, re.MULTILINE)
    assert re.search(r"^\s*server-template \S+ \d+ gateway:8080$", cfg, re.MULTILINE)
    assert re.search(r"^\s*default-server check .*resolvers docker", cfg, re.MULTILINE)
    timeouts = {m[0]: int(m[1]) for m in re.findall(r"timeout (client|server) (\d+)s", cfg)}
    assert min(timeouts.values()) > Settings().read_timeout     # a stream is the gateway's to time out


def test_every_long_running_compose_service_has_a_health_check():
    services = compose()["services"]
    assert {name for name, s in services.items() if "healthcheck" not in s} == {"redis-cluster-init"}


def test_haproxy_itself_accepts_the_config_and_refuses_a_broken_one(tmp_path):
    import shutil
    import subprocess
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"   # scripts/bootstrap.sh --test installs it
    ok = subprocess.run([haproxy, "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True,
                        timeout=30, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / "haproxy.cfg"
    broken.write_text((DEPLOY / "haproxy.cfg").read_text().replace("balance leastconn", "balance fastest"))
    bad = subprocess.run([haproxy, "-c", "-f", str(broken)], capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode != 0

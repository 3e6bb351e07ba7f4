"""deploy/: the compose file and the Kubernetes manifests parse, and every command, port, env var and probe
path they name exists in the code (plus kubectl kustomize / kubeconform when installed)."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import shutil
import subprocess
from typing import Any

import httpx
import pytest

from plugwatch import keys
from plugwatch.settings import ProcessSettings, ReceiverSettings, Settings
from tests.conftest import TEST_SECRET
from tests.support import manifests as m
from tests.support.servers import free_port

ENV = {"REDIS_URL": "redis://redis.example:6379/0"}
RQ_APART = {"RQ_REDIS_URL": "redis://rq-redis.example:6379/0"}  # RQ on a Redis of its own


def _receiver_routes(*paths: str) -> set[str]:
    """Which of `paths` the receiver app serves on GET (anything but 404; no Redis behind it, so /readyz is 503)."""
    from receiver.app import create_app

    process = ProcessSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_seconds=0.2)
    settings = Settings(process=process, receiver=ReceiverSettings(enode_webhook_secrets=(TEST_SECRET,)))
    transport = httpx.ASGITransport(app=create_app(settings))

    async def statuses() -> dict[str, int]:
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            return {path: (await client.get(path)).status_code for path in ("/no-such-route", *paths)}

    found = asyncio.run(statuses())
    assert found.pop("/no-such-route") == 404
    return {path for path, status in found.items() if status != 404}


def _job_timeouts() -> dict[str, int]:
    """The RQ job timeouts the code enqueues with (a worker's grace period must exceed the longest)."""
    found = {}
    for module, name in [("plugwatch.ingest_arming", "DRAIN_JOB_TIMEOUT_SECONDS"),
                         ("plugwatch.delivery_arming", "DRAIN_JOB_TIMEOUT"),
                         ("plugwatch.dead_letters", "REPLAY_JOB_TIMEOUT")]:
        found[f"{module}.{name}"] = getattr(importlib.import_module(module), name)
    return found


def _assert_command_exists(words: list[str]) -> None:
    venv_bin = m.ROOT / ".venv" / "bin"
    program = words[0]
    assert (venv_bin / program).exists() or shutil.which(program), f"no program {program!r}"
    if program in {"python", "python3"} and words[1] == "-m":
        assert importlib.util.find_spec(words[2] + ".__main__") is not None, f"no module {words[2]}.__main__"
    if program == "uvicorn":
        target = next(word for word in words[1:] if ":" in word and not word.startswith("-"))
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), target


# --- Procfile ------------------------------------------------------------------------------------------

def test_procfile_has_web_worker_and_dashboard_commands_that_exist() -> None:
    entries = m.procfile()
    assert set(entries) >= {"web", "worker", "dashboard"}
    for name in entries:
        _assert_command_exists(m.procfile_argv(name, {**ENV, "PORT": "5000"}))


def test_procfile_web_listens_on_port_and_drains_within_heroku_grace() -> None:
    words = m.procfile_argv("web", {**ENV, "PORT": "5000"})
    assert words[:4] == ["python", "-m", "receiver", "--host"]  # uvicorn with the slow-client limits
    assert words[words.index("--port") + 1] == "5000"
    assert int(words[words.index("--timeout-graceful-shutdown") + 1]) < 30  # Heroku: SIGKILL 30 s after SIGTERM


# --- docker-compose ------------------------------------------------------------------------------------

def _compose_plugwatch_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = m.compose()["services"]
    return {name: svc for name, svc in services.items() if "build" in svc}


def test_compose_runs_redis_with_aof_and_noeviction() -> None:
    command = " ".join(m.compose()["services"]["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command


@pytest.mark.parametrize("extra", [{}, RQ_APART], ids=["one-redis", "rq-apart"])
@pytest.mark.parametrize(("service", "process"), [("receiver", "web"), ("worker", "worker"),
                                                  ("dashboard", "dashboard")])
def test_compose_service_runs_the_procfile_command(service: str, process: str, extra: dict[str, str]) -> None:
    svc = _compose_plugwatch_services()[service]
    ports = [str(port).rsplit(":", 1)[-1] for port in svc.get("ports", [])]
    env = {**ENV, **extra, **({"PORT": ports[0]} if ports else {})}
    assert m.argv(svc["command"], env, compose=True) == m.procfile_argv(process, env)


def test_the_dashboard_is_given_rqs_redis() -> None:
    """rq-dashboard reads RQ's keys: RQ_REDIS_URL when set, else REDIS_URL (the Procfile's command)."""
    assert "redis://rq-redis.example:6379/0" in m.procfile_argv("dashboard", {**ENV, **RQ_APART})
    assert "redis://redis.example:6379/0" in m.procfile_argv("dashboard", ENV)


def test_compose_environment_is_read_by_the_code() -> None:
    for name, svc in _compose_plugwatch_services().items():
        for variable in svc["environment"]:
            assert m.read_by_code(variable), f"{name}: {variable} is not read by plugwatch"


def test_compose_receiver_healthcheck_and_prometheus_ports_match_the_processes() -> None:
    services = _compose_plugwatch_services()
    assert "/readyz" in " ".join(services["receiver"]["healthcheck"]["test"])
    assert _receiver_routes("/readyz") == {"/readyz"}
    scrape = {job["job_name"]: job["dns_sd_configs"][0] for job in m.yaml.safe_load(
        (m.DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]}
    assert scrape["plugwatch-receiver"]["names"] == ["receiver"]
    assert str(scrape["plugwatch-receiver"]["port"]) == services["receiver"]["environment"]["PORT"]
    assert scrape["plugwatch-worker"]["names"] == ["worker"]
    assert str(scrape["plugwatch-worker"]["port"]) == services["worker"]["environment"]["PLUGWATCH_METRICS_PORT"]


def test_compose_worker_grace_period_exceeds_every_job_timeout() -> None:
    grace = int(_compose_plugwatch_services()["worker"]["stop_grace_period"].removesuffix("s"))
    assert grace > max(_job_timeouts().values()), _job_timeouts()


# --- Kubernetes ----------------------------------------------------------------------------------------

def test_every_kubernetes_document_parses_and_names_its_kind() -> None:
    documents = m.kubernetes_documents()
    assert documents
    for path, doc in documents:
        assert {"apiVersion", "kind"} <= set(doc), path
        assert doc.get("metadata", {}).get("name") or doc["kind"] == "Kustomization", path


@pytest.mark.parametrize(("deployment", "process"), [("plugwatch-receiver", "web"),
                                                     ("plugwatch-worker", "worker"),
                                                     ("plugwatch-dashboard", "dashboard")])
@pytest.mark.parametrize("extra", [{}, RQ_APART], ids=["one-redis", "rq-apart"])
def test_kubernetes_deployment_runs_the_procfile_command(deployment: str, process: str, extra: dict[str, str]) -> None:
    (container,) = m.containers(m.kubernetes("Deployment")[deployment])
    assert container["image"] == m.PLUGWATCH_IMAGE
    http = [port["containerPort"] for port in container.get("ports", []) if port["name"] == "http"]
    env = {**ENV, **extra, **({"PORT": str(http[0])} if http else {})}
    words = m.argv([*container["command"], *container.get("args", [])], env)
    assert words == m.procfile_argv(process, env)
    _assert_command_exists(words)


def test_kubernetes_environment_is_read_by_the_code() -> None:
    configmap = m.kubernetes("ConfigMap")["plugwatch"]["data"]
    secret = m.yaml.safe_load_all((m.KUBERNETES / "secret.example.yaml").read_text())
    plugwatch_secret = next(doc for doc in secret if doc["metadata"]["name"] == "plugwatch")["stringData"]
    names = set(configmap) | set(plugwatch_secret)
    for deployment in m.kubernetes("Deployment").values():
        for container in m.containers(deployment):
            names |= {variable["name"] for variable in container.get("env", [])}
            refs = {ref.get("secretRef", ref.get("configMapRef", {}))["name"] for ref in container.get("envFrom", [])}
            assert refs <= {"plugwatch"}
    for variable in sorted(names):
        assert m.read_by_code(variable), f"{variable} is not read by plugwatch"


def test_receiver_probes_are_receiver_routes_and_ports_match() -> None:
    (container,) = m.containers(m.kubernetes("Deployment")["plugwatch-receiver"])
    probes = {kind: container[kind]["httpGet"]["path"] for kind in ("livenessProbe", "readinessProbe")}
    assert probes == {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    paths = {*probes.values(), container["startupProbe"]["httpGet"]["path"]}
    assert _receiver_routes(*paths) == paths
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    assert env["PORT"] == str(container["ports"][0]["containerPort"])


def test_worker_metrics_port_matches_its_env_and_service() -> None:
    (container,) = m.containers(m.kubernetes("Deployment")["plugwatch-worker"])
    port = {env["name"]: env["value"] for env in container["env"]}["PLUGWATCH_METRICS_PORT"]
    assert container["ports"][0]["containerPort"] == int(port)
    service = m.kubernetes("Service")["plugwatch-worker-metrics"]
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


def test_grace_periods_exceed_job_timeouts_and_uvicorn_drain() -> None:
    deployments = m.kubernetes("Deployment")
    worker = deployments["plugwatch-worker"]["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > max(_job_timeouts().values())
    receiver = deployments["plugwatch-receiver"]["spec"]["template"]["spec"]
    (container,) = receiver["containers"]
    drain = int(container["command"][container["command"].index("--timeout-graceful-shutdown") + 1])
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert receiver["terminationGracePeriodSeconds"] > drain + pre_stop


def test_services_hpa_pdbs_and_scaledobject_point_at_real_deployments() -> None:
    deployments = m.kubernetes("Deployment")
    labels = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()}
    for name, service in m.kubernetes("Service").items():
        selector = service["spec"]["selector"]
        matches = [d for d, lab in labels.items() if selector.items() <= lab.items()]
        assert matches, name
        port_names = {p["name"] for d in matches for c in m.containers(deployments[d]) for p in c["ports"]}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names, name
    for name, pdb in m.kubernetes("PodDisruptionBudget").items():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= lab.items() for lab in labels.values()), name
    (hpa,) = m.kubernetes("HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "plugwatch-receiver"
    (scaled,) = m.kubernetes("ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] == "plugwatch-worker"
    assert scaled["spec"]["minReplicaCount"] >= 1


def test_keda_scales_on_the_ingest_stream_and_exported_metrics() -> None:
    (scaled,) = m.kubernetes("ScaledObject").values()
    triggers = {trigger["type"]: trigger for trigger in scaled["spec"]["triggers"]}
    stream = triggers["redis-streams"]["metadata"]
    assert (stream["stream"], stream["consumerGroup"]) == (keys.INGEST_STREAM, keys.INGEST_GROUP)
    assert "lagCount" in stream
    auth = triggers["redis-streams"]["authenticationRef"]["name"]
    assert auth in m.kubernetes("TriggerAuthentication")
    query = triggers["prometheus"]["metadata"]["query"]
    assert m.metric_names(query) <= m.CONTRACT_METRICS
    queues = query.split('queue=~"', 1)[1].split('"', 1)[0].split("|")
    assert set(queues) == set(keys.ALL_QUEUES)  # the RQ queues workers serve, not the outboxes


def test_kubectl_kustomize_renders_the_manifests() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (the structural checks above still ran)")
    rendered = subprocess.run(["kubectl", "kustomize", str(m.KUBERNETES)], capture_output=True, text=True,
                              timeout=60, check=False)
    assert rendered.returncode == 0, rendered.stderr
    kinds = {doc["kind"] for doc in m.yaml.safe_load_all(rendered.stdout) if doc}
    assert kinds >= {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ScaledObject"}


def test_kubeconform_validates_the_manifests() -> None:
    if shutil.which("kubeconform") is None:
        pytest.skip("kubeconform is not installed (no offline package); structural checks above still ran")
    result = subprocess.run(
        ["kubeconform", "-strict", "-summary", "-ignore-missing-schemas", "-skip", "Kustomization",
         *[str(path) for path in sorted(m.KUBERNETES.glob("*.yaml"))]],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- Prometheus and Grafana (static) -------------------------------------------------------------------

def test_alert_rules_and_dashboard_use_only_contract_and_documented_metrics() -> None:
    used = set()
    for rule in m.alert_rules():
        used |= m.metric_names(rule["expr"])
    for expression in m.dashboard_expressions():
        used |= m.metric_names(expression)
    allowed = m.CONTRACT_METRICS | m.EXTRA_METRICS
    assert used <= allowed, used - allowed


def test_alert_rules_cover_the_issue() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in m.alert_rules()}
    wanted = {
        "plugwatch_receiver_signature_failures_total", "plugwatch_enode_heartbeat_age_seconds",
        "plugwatch_enode_pending_events", "plugwatch_queue_oldest_age_seconds", "plugwatch_dead_letters",
        "plugwatch_downstream_paused_urls", "plugwatch_downstream_disabled_urls",
        "plugwatch_quarantine_entries",
    }
    assert wanted <= set().union(*(m.metric_names(expr) for expr in exprs.values()))
    for rule in m.alert_rules():
        assert rule["annotations"]["runbook"].startswith("deploy/README.md#"), rule["alert"]


def test_runbook_anchors_named_by_alerts_exist() -> None:
    readme = (m.DEPLOY / "README.md").read_text()
    anchors = {_anchor(line) for line in readme.splitlines() if line.startswith("#")}
    for rule in m.alert_rules():
        assert rule["annotations"]["runbook"].split("#", 1)[1] in anchors, rule["alert"]


def _anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.lstrip("#").strip().lower()
    return "".join(ch for ch in text if ch.isalnum() or ch in " -_").replace(" ", "-")


def _promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed (apt-get install prometheus); YAML checks above still ran")
    return binary


def test_promtool_checks_the_prometheus_config_and_rules() -> None:
    promtool = _promtool()
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"]):
        result = subprocess.run([promtool, *args], cwd=m.DEPLOY / "prometheus", capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_fire_each_alert_on_its_condition() -> None:
    """deploy/prometheus/alerts_test.yml feeds series to the rules and states which alerts fire when."""
    result = subprocess.run([_promtool(), "test", "rules", "alerts_test.yml"], cwd=m.DEPLOY / "prometheus",
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_dashboard_is_valid_and_provisioned() -> None:
    board = m.dashboard()
    assert board["uid"] == "plugwatch"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]
    provider = m.yaml.safe_load((m.DEPLOY / "grafana/provisioning/dashboards/plugwatch.yml").read_text())
    mount = next(volume for volume in m.compose()["services"]["grafana"]["volumes"]
                 if volume.startswith("./grafana/dashboards:"))
    assert provider["providers"][0]["options"]["path"] == mount.split(":")[1]


# --- Dockerfile ----------------------------------------------------------------------------------------

def test_dockerfile_copies_every_package_and_defaults_to_the_procfile_web_command() -> None:
    import json
    import tomllib

    dockerfile = (m.DEPLOY / "Dockerfile").read_text()
    packages = tomllib.loads((m.ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    for package in packages["packages"]:
        assert f"COPY {package} ./{package}" in dockerfile, package
    assert "uv sync --frozen --no-dev" in dockerfile
    cmd = json.loads(dockerfile.split("\nCMD ", 1)[1].replace("\\\n", ""))
    assert cmd == m.procfile_argv("web", {**ENV, "PORT": "8000"})
    exposed = {word for line in dockerfile.splitlines() if line.startswith("EXPOSE") for word in line.split()[1:]}
    assert exposed == {"8000", "9100", "9181"}

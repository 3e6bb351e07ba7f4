"""Reading the deploy files (Procfile, docker-compose, Kubernetes, Prometheus, Grafana) the way tests need them.

Commands are compared as argv lists after the shell expansions each platform does: Heroku-style `${VAR:-x}`
and `$VAR`, docker-compose's `$$` (a literal `$`), Kubernetes' `$(VAR)`; a leading `sh -c "exec ..."` is
unwrapped. So "the compose receiver runs what the Procfile's `web` runs" is one equality.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.support.servers import ROOT

DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
CODE_DIRS = ("plugwatch", "receiver", "worker")
PLUGWATCH_IMAGE = "plugwatch"  # the image name in the Kubernetes manifests (kustomize rewrites it)

# The metric names of the contract (helper brief, "Metric names"): dashboards and alerts may use these.
CONTRACT_METRICS = frozenset({
    "plugwatch_receiver_requests_total", "plugwatch_receiver_signature_failures_total",
    "plugwatch_receiver_enqueue_seconds", "plugwatch_enode_heartbeat_age_seconds",
    "plugwatch_enode_pending_events", "plugwatch_worker_events_total", "plugwatch_emitted_events_total",
    "plugwatch_worker_deliveries_total", "plugwatch_worker_batch_seconds",
    "plugwatch_worker_store_conflicts_total", "plugwatch_downstream_attempts_total",
    "plugwatch_downstream_latency_seconds", "plugwatch_downstream_paused_urls",
    "plugwatch_downstream_disabled_urls", "plugwatch_dead_letters", "plugwatch_queue_depth",
    "plugwatch_queue_oldest_age_seconds", "plugwatch_quarantine_entries",
})
# Exported beyond the contract and used by the dashboard/alerts (documented where they are defined).
EXTRA_METRICS = frozenset({
    "plugwatch_redis_up",  # plugwatch/redis_collector.py
    "plugwatch_reconcile_suggested",  # worker/enode/suggest.py
    "plugwatch_downstream_slow_urls",  # plugwatch/redis_collector.py
    "plugwatch_receiver_connections_cut_total",  # receiver/connections.py
    "plugwatch_receiver_open_connections",  # receiver/connections.py
    "plugwatch_receiver_max_connections",  # receiver/connections.py
    "plugwatch_redis_health",  # plugwatch/redis_health.py
    "plugwatch_redis_evicted_keys",  # plugwatch/redis_health.py
    "plugwatch_redis_used_memory_bytes",  # plugwatch/redis_health.py
    "plugwatch_redis_maxmemory_bytes",  # plugwatch/redis_health.py
    "plugwatch_state_lost_unreconciled",  # plugwatch/epoch.py
})
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_METRIC = re.compile(r"\bplugwatch_[a-z0-9_]+\b")


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def expand(text: str, env: Mapping[str, str]) -> str:
    """Shell-style `${VAR:-default}`, `${VAR}`, `$VAR` and Kubernetes' `$(VAR)` expansion."""
    text = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text)
    innermost = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^{}]*))?\}")  # nested: `${A:-${B:-x}}`
    while (expanded := innermost.sub(lambda m: env.get(m.group(1)) or expand(m.group(2) or "", env), text)) != text:
        text = expanded
    return re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", lambda m: env.get(m.group(1), ""), text)


def argv(command: str | list[str], env: Mapping[str, str], *, compose: bool = False) -> list[str]:
    """The argv a command runs after the platform's expansions, with `sh -c "exec ..."` unwrapped."""
    words = shlex.split(command) if isinstance(command, str) else list(command)
    if compose:
        words = [word.replace("$$", "$") for word in words]
    if words[:2] in (["sh", "-c"], ["bash", "-c"]) and len(words) == 3:
        return argv(words[2], env)
    if words and words[0] == "exec":
        words = words[1:]
    return [expand(word, env) for word in words]


def procfile_argv(name: str, env: Mapping[str, str]) -> list[str]:
    return argv(expand(procfile()[name], env), {})


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return loaded


def kubernetes_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        docs += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def kubernetes(kind: str) -> dict[str, dict[str, Any]]:
    """Documents of `kind` by metadata.name."""
    return {doc["metadata"]["name"]: doc for _, doc in kubernetes_documents() if doc.get("kind") == kind}


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return found


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DEPLOY / "grafana" / "dashboards" / "plugwatch.json").read_text())
    return loaded


def dashboard_expressions() -> Iterator[str]:
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]


def metric_names(expression: str) -> set[str]:
    """plugwatch metric names in a PromQL expression, histogram series reduced to the histogram's name."""
    names = set()
    for found in _METRIC.findall(expression):
        name = found
        for suffix in _HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix).endswith("_seconds"):
                name = name.removesuffix(suffix)
        names.add(name)
    return names


@cache
def code_text() -> str:
    return "\n".join(path.read_text() for d in CODE_DIRS for path in sorted((ROOT / d).rglob("*.py")))


def read_by_code(variable: str) -> bool:
    """Whether plugwatch's own code names the environment variable (as a string literal)."""
    return f'"{variable}"' in code_text() or f"'{variable}'" in code_text()


def exported_names(exposition: str) -> set[str]:
    """Metric names a /metrics page declares (# TYPE lines), histograms and counters as written in PromQL."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name + "_total" if kind == "counter" and not name.endswith("_total") else name)
    return names

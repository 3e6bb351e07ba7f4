"""A real Prometheus (Debian's `prometheus` package) for end-to-end tests of the deploy/ assets.

    config = scrape_config({"plugwatch-receiver": ["127.0.0.1:8000"], ...}, workdir, for_seconds=2)
    with PrometheusServer(config, workdir) as prom:      # on a free 127.0.0.1 port
        prom.query("max(plugwatch_dead_letters)")         # the API's `data` (raises on 400/422)
        prom.firing()                                     # names of the alerts firing now

The configuration is generated from deploy/prometheus/prometheus.yml and alerts.yml: every scrape job is
kept by name with its service discovery replaced by the test's own target, the intervals are one second,
and every alert's `for:` is shortened in the generated copy of the rules (the deployed files are untouched).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.manifests import DEPLOY
from tests.support.servers import free_port, wait_until

PROMETHEUS_DIR = DEPLOY / "prometheus"
INTERVAL = "1s"
# Grafana's own variables in panel queries, replaced as Grafana would (with a window several scrapes long).
_GRAFANA_VARIABLE = re.compile(r"\$__(rate_interval|interval|range)\b")


def find_prometheus() -> str | None:
    return shutil.which("prometheus")


def shortened_rules(for_seconds: float) -> dict[str, Any]:
    """alerts.yml with every `for:` set to `for_seconds` (so a test sees an alert fire within seconds)."""
    rules: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{for_seconds:g}s"
    return rules


def scrape_config(targets: Mapping[str, list[str]], workdir: Path, *, for_seconds: float) -> Path:
    """prometheus.yml with `targets` (job name -> host:port list) instead of its service discovery; returns its path.

    Every job of the deployed file must be given a target, so a job added there is not silently unscraped."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == set(targets), f"deploy/prometheus/prometheus.yml scrapes {sorted(jobs)}, the test {sorted(targets)}"
    config["global"] = {"scrape_interval": INTERVAL, "scrape_timeout": INTERVAL, "evaluation_interval": INTERVAL}
    workdir.mkdir(parents=True, exist_ok=True)
    rule_files = []
    for name in config.get("rule_files", []):
        assert name == "alerts.yml", f"unexpected rule file {name} in prometheus.yml"
        generated = workdir / name
        generated.write_text(yaml.safe_dump(shortened_rules(for_seconds), sort_keys=False))
        rule_files.append(str(generated))
    config["rule_files"] = rule_files
    for job in config["scrape_configs"]:
        for key in [key for key in job if key.endswith("_sd_configs")]:
            del job[key]
        job["static_configs"] = [{"targets": list(targets[job["job_name"]])}]
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def as_grafana_runs(expression: str, window: str) -> str:
    """A dashboard panel's query as Grafana sends it: its `$__…` variables replaced by `window`."""
    return _GRAFANA_VARIABLE.sub(window, expression)


class PromQLError(Exception):
    """Prometheus refused a query (400: it does not parse; 422: it cannot be evaluated)."""


class PrometheusServer:
    def __init__(self, config: Path, workdir: Path) -> None:
        binary = find_prometheus()
        if binary is None:
            raise RuntimeError("no prometheus binary: install Debian's 'prometheus' (./scripts/test does)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self._args = [
            binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
        ]
        self._process: subprocess.Popen[bytes] | None = None
        self._client = httpx.Client(base_url=self.url, timeout=10)

    def __enter__(self) -> PrometheusServer:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(self._args, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._ready, timeout=30, interval=0.1, message=f"prometheus did not start:\n{self.output()}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _ready(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.output()}")
        try:
            return self._client.get("/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def api(self, path: str, **params: str) -> Any:
        response = self._client.get("/api/v1/" + path, params=params)
        body = response.json()
        if response.status_code in (400, 422):
            raise PromQLError(f"{params}: {body.get('errorType')}: {body.get('error')}")
        response.raise_for_status()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expression: str) -> list[dict[str, Any]]:
        """An instant query's result vector (a scalar or string result is wrapped as one sample)."""
        data = self.api("query", query=expression)
        result = data["result"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": result}]
        return list(result)

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.api("targets", state="active")["activeTargets"]
        return active

    def rules(self) -> list[dict[str, Any]]:
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def firing(self) -> set[str]:
        return {alert["labels"]["alertname"] for alert in self.alerts() if alert["state"] == "firing"}

    def active(self) -> set[str]:
        """Alerts pending or firing."""
        return {alert["labels"]["alertname"] for alert in self.alerts()}

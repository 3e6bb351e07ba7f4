"""The Grafana dashboard and the alert rules reference only metrics a running receiver and worker export."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import TEST_DOWNSTREAM_SECRET, TEST_SECRET, emptied
from tests.support import manifests as m
from tests.support.platform import platform_env, start_process_type, wait_for_http
from tests.support.servers import RedisServer, free_port, start_receiver
from tests.support.sinks import Sink, SinkServer

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> set[str]:
    """Metric names declared on the /metrics pages of a real receiver and a real worker (one downstream URL)."""
    logs = tmp_path_factory.mktemp("scrape")
    redis_url = emptied(redis_server)  # (module-scoped: `redis_url` would not empty it first)
    with SinkServer(Sink()) as sink:
        receiver, receiver_url = start_receiver(
            platform_env(REDIS_URL=redis_url, ENODE_WEBHOOK_SECRET=TEST_SECRET), logs / "receiver.log")
        metrics_port = free_port()
        worker = start_process_type("worker", platform_env(
            REDIS_URL=redis_url, PLUGWATCH_METRICS_PORT=str(metrics_port),
            DOWNSTREAM_WEBHOOK_URLS=sink.url + "/hook", DOWNSTREAM_WEBHOOK_SECRET=TEST_DOWNSTREAM_SECRET,
        ), logs / "worker.log")
        try:
            worker_url = f"http://127.0.0.1:{metrics_port}"
            wait_for_http(worker, worker_url + "/metrics")
            pages = [httpx.get(url + "/metrics", timeout=10).text for url in (receiver_url, worker_url)]
        finally:
            worker.stop()
            receiver.stop()
    return m.exported_names(pages[0]) | m.exported_names(pages[1])


def test_every_dashboard_panel_queries_exported_metrics(exported: set[str]) -> None:
    for panel in m.dashboard()["panels"]:
        for target in panel.get("targets", []):
            missing = m.metric_names(target["expr"]) - exported
            assert not missing, f"panel {panel['title']!r} queries {sorted(missing)}, which nothing exports"


def test_every_alert_rule_uses_exported_metrics(exported: set[str]) -> None:
    for rule in m.alert_rules():
        missing = m.metric_names(rule["expr"]) - exported
        assert not missing, f"alert {rule['alert']} uses {sorted(missing)}, which nothing exports"


def test_every_contract_metric_is_exported(exported: set[str]) -> None:
    """The brief's metric contract: if one is missing, a dashboard panel or an alert stays empty."""
    assert exported >= m.CONTRACT_METRICS, sorted(m.CONTRACT_METRICS - exported)


def test_the_dashboard_shows_every_contract_metric() -> None:
    shown = set().union(*(m.metric_names(expr) for expr in m.dashboard_expressions()))
    assert shown >= m.CONTRACT_METRICS, sorted(m.CONTRACT_METRICS - shown)


def test_exported_names_reads_counters_and_histograms_as_promql_names() -> None:
    page = ("# TYPE plugwatch_a counter\nplugwatch_a_total 1\n# TYPE plugwatch_b_seconds histogram\n"
            "# TYPE plugwatch_c gauge\n")
    assert m.exported_names(page) == {"plugwatch_a_total", "plugwatch_b_seconds", "plugwatch_c"}
    assert m.metric_names("rate(plugwatch_b_seconds_bucket[5m]) + plugwatch_c") == {"plugwatch_b_seconds",
                                                                                   "plugwatch_c"}



"""Worker wiring: a context built without touching Redis."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from plugwatch.settings import IngestSettings, ProcessSettings, Settings
from tests.support.servers import free_port
from worker.bootstrap import bootstrap


def test_bootstrap_does_no_io() -> None:
    """Nothing listens on the port: building the context must not try to connect."""
    settings = Settings(process=ProcessSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))

    context = bootstrap(settings, registry=CollectorRegistry(), consumer="c1")

    assert context.consumer == "c1"
    assert context.options == IngestSettings()
    context.close()

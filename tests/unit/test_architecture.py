"""The architecture of the README, checked from the code's own imports (ast), so that it cannot regress.

The rules and the checker are in `tests/support/architecture.py`; each rule also has a test here that feeds
the checker a small synthetic graph or module, so a checker that stopped noticing violations would fail.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from tests.support import architecture as arch

# File names that appear in more than one folder, allowed because they are the same role in two wings.
SAME_ROLE_IN_TWO_WINGS = {
    "metrics.py": {"receiver", "worker"},  # the Prometheus metrics each process counts itself
    "sender.py": {"simulator", "worker.delivery"},  # a signed webhook POST: Enode's (simulated), plugwatch's
}
# The composition roots: the only modules that touch the environment, and only to hand it on whole.
COMPOSITION_ROOTS = {"receiver.__main__", "receiver.app", "worker.__main__", "cli"}


def test_the_package_graph_follows_the_architecture() -> None:
    assert arch.violations(arch.package_graph()) == []


def test_the_graph_has_the_packages_of_the_readme() -> None:
    graph = arch.package_graph()
    assert {"plugwatch", "plugwatch.enode_api", "receiver", "worker", "worker.core", "worker.ingest",
            "worker.delivery", "worker.enode", "ops", "simulator", "cli"} <= set(graph)
    assert "worker.ingest" in graph["worker"], "the graph sees real imports"
    assert graph["receiver"] == {"plugwatch"}


def test_every_top_level_folder_of_python_code_is_a_product_package_or_tooling() -> None:
    folders = {path.parent.name for path in arch.ROOT.glob("*/__init__.py")}
    assert folders - {"tests", "bench"} == set(arch.product_packages())
    assert set(arch.product_packages()) == {arch.FOUNDATION, arch.COMPOSITION_ROOT, *arch.WINGS}


@pytest.mark.parametrize(("graph", "expected"), [
    ({"plugwatch": {"worker.ingest"}}, "plugwatch -> worker.ingest: the foundation imports no wing"),
    ({"plugwatch.enode_api": {"ops"}}, "plugwatch.enode_api -> ops: the foundation imports no wing"),
    ({"receiver": {"worker"}}, "receiver -> worker: a wing imports only the foundation and itself"),
    ({"worker.enode": {"receiver"}}, "worker.enode -> receiver: a wing imports only the foundation and itself"),
    ({"ops": {"simulator"}}, "ops -> simulator: a wing imports only the foundation and itself"),
    ({"worker.core": {"plugwatch"}}, "worker.core -> plugwatch: worker/core imports nothing of the project"),
    ({"worker.core": {"worker.ingest"}}, "worker.core -> worker.ingest: worker/core imports nothing"),
    ({"ops": {"cli"}}, "ops -> cli: nothing imports the cli composition root"),
    ({"worker": {"worker.ingest"}, "worker.ingest": {"worker"}}, "cycle: worker -> worker.ingest -> worker"),
    ({"plugwatch": {"plugwatch.enode_api"}, "plugwatch.enode_api": {"plugwatch"}},
     "cycle: plugwatch -> plugwatch.enode_api -> plugwatch"),
    ({"tools": {"plugwatch"}}, "tools -> plugwatch: tools is neither the foundation, a wing nor the composition root"),
])
def test_the_checker_reports_each_kind_of_violation(graph: dict[str, set[str]], expected: str) -> None:
    assert any(found.startswith(expected) for found in arch.violations(graph)), arch.violations(graph)


def test_the_checker_accepts_a_graph_that_follows_the_rules() -> None:
    graph = {"cli": {"ops", "worker.enode", "plugwatch"}, "ops": {"plugwatch", "plugwatch.enode_api"},
             "worker": {"worker.ingest", "worker.core", "plugwatch"}, "worker.ingest": {"worker.core"},
             "plugwatch.enode_api": {"plugwatch"}, "worker.core": set()}
    assert arch.violations(graph) == []


def test_imports_are_found_wherever_they_are_written() -> None:
    """Inside functions and under TYPE_CHECKING too; `from pkg import module` counts as that module."""
    source = (
        "from typing import TYPE_CHECKING\nimport redis\nfrom plugwatch import keys\n"
        "if TYPE_CHECKING:\n    from worker.bootstrap import WorkerContext\n"
        "def late():\n    import receiver.app\n    from worker.ingest.store import Store, Ack\n"
    )
    modules = arch.product_modules()
    found = set(arch.imported_modules(ast.parse(source), modules))
    assert found == {"plugwatch.keys", "worker.bootstrap", "receiver.app", "worker.ingest.store"}


def test_no_two_modules_share_a_file_name_unless_the_same_role_in_two_wings() -> None:
    folders: defaultdict[str, set[str]] = defaultdict(set)
    for module, path in arch.product_modules().items():
        if not (path.name.startswith("__") and path.name.endswith("__.py")):  # __init__, __main__: Python's
            folders[path.name].add(arch.package_of(module, arch.product_modules()))
    shared = {name: places for name, places in folders.items() if len(places) > 1}
    assert shared == SAME_ROLE_IN_TWO_WINGS


def test_only_the_composition_roots_touch_the_environment_and_only_to_hand_it_on() -> None:
    """Settings.from_env (plugwatch/settings.py) parses whatever mapping it is given; nothing else reads it."""
    touches = {module: arch.environment_uses(ast.parse(path.read_text()))
               for module, path in arch.product_modules().items()}
    touching = {module: uses for module, uses in touches.items() if uses}
    assert set(touching) == COMPOSITION_ROOTS
    assert {how for uses in touching.values() for _, how in uses} == {"os.environ handed on"}


@pytest.mark.parametrize(("source", "how"), [
    ("import os\nport = os.environ.get('PORT')", "os.environ read"),
    ("import os\nport = os.environ['PORT']", "os.environ read"),
    ("import os\nport = os.getenv('PORT')", "os.getenv"),
    ("from os import environ", "from os import environ"),
    ("import os\nsettings = Settings.from_env(os.environ)", "os.environ handed on"),
])
def test_the_environment_checker_tells_reading_from_handing_on(source: str, how: str) -> None:
    assert [found for _, found in arch.environment_uses(ast.parse(source))] == [how]


def test_the_only_process_wide_state_is_the_worker_context() -> None:
    """One `current()` per process: worker.bootstrap's installed context; nothing else is written after import."""
    written = {module: names for module, path in arch.product_modules().items()
               if (names := arch.process_state(ast.parse(path.read_text())))}
    assert written == {"worker.bootstrap": {"_installed"}}
    currents = [module for module, path in arch.product_modules().items()
                if any(isinstance(node, ast.FunctionDef) and node.name == "current"
                       for node in ast.parse(path.read_text()).body)]
    assert currents == ["worker.bootstrap"]


@pytest.mark.parametrize("source", [
    "_cache = {}\ndef put(k, v):\n    _cache[k] = v",
    "_seen = []\ndef note(x):\n    _seen.append(x)",
    "_client = None\ndef get():\n    global _client\n    _client = object()",
])
def test_the_state_checker_notices_a_module_level_singleton(source: str) -> None:
    assert arch.process_state(ast.parse(source))


def test_a_lookup_table_is_not_state() -> None:
    assert arch.process_state(ast.parse("_CODES = {1: 'a'}\ndef code(n):\n    return _CODES[n]")) == set()


def test_the_checked_modules_are_the_shipped_ones() -> None:
    modules = arch.product_modules()
    assert modules["worker.core"] == arch.ROOT / "worker" / "core" / "__init__.py"
    assert all(Path(path).is_relative_to(arch.ROOT / name.split(".")[0]) for name, path in modules.items())
    assert "tests.support.architecture" not in modules


def test_every_redis_client_is_built_by_plugwatch_redis_clients() -> None:
    """Timeouts, keepalive, health checks and the retry policy are decided in one module, for every process."""
    building = {module: uses for module, path in arch.product_modules().items()
                if (uses := arch.redis_client_constructions(ast.parse(path.read_text())))}
    assert set(building) == {arch.REDIS_CLIENT_MODULE}, building


@pytest.mark.parametrize("source", [
    "import redis\nclient = redis.Redis.from_url(url)",
    "import redis.asyncio\nclient = redis.asyncio.Redis.from_url(url, socket_timeout=1)",
    "from redis import Redis\nclient = Redis(host='h')",
    "import redis\nclient = redis.StrictRedis(host='h')",
    "import redis\nclient = redis.from_url(url)",
    "from redis.asyncio import Redis\ndef late():\n    return Redis.from_url(url)",
])
def test_the_client_checker_notices_a_redis_client_built_elsewhere(source: str) -> None:
    assert arch.redis_client_constructions(ast.parse(source))


def test_the_client_checker_leaves_other_calls_alone() -> None:
    source = "import httpx\nclient = httpx.Client()\nurl = URL.from_url('x')\nconnection.ping()"
    assert arch.redis_client_constructions(ast.parse(source)) == []

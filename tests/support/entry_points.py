"""Run one of plugwatch's real entry points many times, each in a process of its own, cheaply.

    python -m tests.support.entry_points worker < cases.json > results.json

`cases.json` is a list of environments; for each, a child forked from this (already warm) process runs the
entry point exactly as its command does (`python -m worker` / `python -m receiver` through `runpy`, the
`plugwatch` console script through its installed entry point), with that environment and its stderr in a
file, and this process prints `[{"code": exit status or null (still running after the deadline), "stderr":
...}, ...]`. Forking after the imports keeps a walk over every setting at a few milliseconds per process
instead of ~2 s of imports each.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import runpy
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable

import orjson

DEADLINE_SECONDS = 20.0


def _module(name: str, args: list[str]) -> Callable[[], object]:
    def run() -> object:
        sys.argv = [f"python -m {name}", *args]
        return runpy.run_module(name, run_name="__main__", alter_sys=True)

    importlib.import_module(f"{name}.__main__")  # warm: its imports (`if __name__ == "__main__"` does not run)
    del sys.modules[f"{name}.__main__"]  # runpy runs the module itself afresh, as `python -m` does
    return run


def _console_script(name: str, args: list[str]) -> Callable[[], object]:
    (script,) = importlib.metadata.entry_points(group="console_scripts", name=name)
    main = script.load()

    def run() -> object:
        sys.argv = [name, *args]
        return sys.exit(main())  # what the installed script does

    return run


ENTRY_POINTS: dict[str, Callable[[], Callable[[], object]]] = {
    "python -m receiver": lambda: _module("receiver", ["--port", "0"]),
    "python -m worker": lambda: _module("worker", []),
    "plugwatch status": lambda: _console_script("plugwatch", ["status"]),
}


def run_each(entry: str, environments: list[dict[str, str]]) -> list[dict[str, object]]:
    run = ENTRY_POINTS[entry]()
    return [_run_child(run, environment) for environment in environments]


def _run_child(run: Callable[[], object], environment: dict[str, str]) -> dict[str, object]:
    with tempfile.TemporaryFile() as stderr:
        pid = os.fork()
        if pid == 0:  # the child: never returns into the parent's code
            os.dup2(stderr.fileno(), 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # this process's stdout carries the results
            os.environ.clear()
            os.environ.update(environment)
            os._exit(_exit_status(run))
        code = _wait(pid)
        stderr.seek(0)
        return {"code": code, "stderr": stderr.read().decode(errors="replace")}


def _exit_status(run: Callable[[], object]) -> int:
    """As the interpreter ends a process: SystemExit's code, or a traceback and 1."""
    try:
        run()
        status = 0
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if isinstance(stop.code, str):
            sys.stderr.write(stop.code + "\n")
    except BaseException:  # report it as Python would
        traceback.print_exc()
        status = 1
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    return status


def _wait(pid: int) -> int | None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


if __name__ == "__main__":
    results = run_each(sys.argv[1], orjson.loads(sys.stdin.buffer.read()))
    sys.stdout.buffer.write(orjson.dumps(results))

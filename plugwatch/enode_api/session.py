"""One Enode API session for a `plugwatch enode ...` command (the operator's and the worker wing's reconcile).

Without ENODE_CLIENT_ID / ENODE_CLIENT_SECRET (or with an unusable setting) a command prints one line saying
so and exits with status 2; an Enode API error prints one line and exits with status 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NoReturn

import click

from plugwatch import command
from plugwatch.enode_api.client import EnodeClient
from plugwatch.enode_api.errors import EnodeError, EnodeNotConfigured
from plugwatch.settings import Settings, SettingsError

NOT_CONFIGURED_EXIT = 2


def load_settings() -> Settings:
    try:
        return command.settings()
    except SettingsError as exc:
        fail(str(exc), NOT_CONFIGURED_EXIT)


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"plugwatch enode: {message}", err=True)
    raise click.exceptions.Exit(code)


@contextlib.contextmanager
def enode_api(settings: Settings | None = None) -> Iterator[EnodeClient]:
    """An Enode client for one command; not configured -> exit 2, an API error -> exit 1 (one line each)."""
    try:
        with EnodeClient.from_settings(settings or load_settings()) as client:
            yield client
    except EnodeNotConfigured as exc:
        fail(str(exc), NOT_CONFIGURED_EXIT)
    except EnodeError as exc:
        fail(str(exc), 1)

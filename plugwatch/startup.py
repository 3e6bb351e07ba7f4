"""What a plugwatch process does with configuration it cannot use: one line on stderr, exit status 2.

    with exit_on_bad_settings("python -m worker"):
        settings = Settings.from_env(os.environ)
        ...                                        # anything else that reads settings

A `SettingsError` names the variable and says what is wrong; a traceback would only bury that line (and a
process manager restarting the process would print it again and again).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from plugwatch.settings import SettingsError

BAD_SETTINGS_EXIT = 2


@contextlib.contextmanager
def exit_on_bad_settings(program: str) -> Iterator[None]:
    """Turn a `SettingsError` raised inside the block into `program: <message>` on stderr and exit 2."""
    try:
        yield
    except SettingsError as error:
        sys.stderr.write(f"{program}: {error}\n")
        sys.stderr.flush()
        raise SystemExit(BAD_SETTINGS_EXIT) from None

"""The README's configuration table names exactly the variables `Settings.from_env` reads, each with its field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plugwatch.settings import SECTIONS, VARIABLES, Settings

README = Path(__file__).resolve().parents[2] / "README.md"
_ROW = re.compile(r"^\| `(?P<variable>[A-Z][A-Z0-9_]*)` \| `(?P<setting>[a-z_]+\.[a-z_]+)` \|", re.M)


def readme_table(text: str) -> dict[str, str]:
    """variable -> `section.field`, from the table of the README's *Configuration* section."""
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    found = {match["variable"]: match["setting"] for match in map(_ROW.match, rows) if match}
    assert len(found) == len(rows), "every row starts with one `VARIABLE` and its `section.field`"
    return found


def test_the_readme_table_and_settings_name_the_same_variables_and_fields() -> None:
    declared = {variable.name: f"{variable.section}.{variable.field}" for variable in VARIABLES}
    assert readme_table(README.read_text()) == declared


def test_every_variable_sets_a_field_of_its_section_and_each_field_has_one_variable() -> None:
    targets = [(variable.section, variable.field) for variable in VARIABLES]
    assert len(set(targets)) == len(targets) == len({variable.name for variable in VARIABLES})
    for section, field in targets:
        assert hasattr(SECTIONS[section](), field), f"{section}.{field}"
        assert isinstance(getattr(Settings(), section), SECTIONS[section])


def test_the_table_reader_reads_only_the_configuration_table_and_refuses_a_row_it_cannot_read() -> None:
    header = "# x\n\n## Configuration\n\n| variable | setting | meaning | default |\n|---|---|---|---|\n"
    other = "\n## Next\n\n| `REDIS_URL` | `process.redis_url` | another table | x |\n"
    assert readme_table(header + "| `PORT` | `receiver.port` | port | `8000` |\n" + other) == {"PORT": "receiver.port"}
    with pytest.raises(AssertionError, match="every row"):
        readme_table(header + "| `ENODE_CLIENT_ID`, `ENODE_CLIENT_SECRET` | `enode.client_id` | two at once | x |\n")

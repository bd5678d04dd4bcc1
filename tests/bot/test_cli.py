"""The `ourcambridge` command line, run as a process the way a deploy step runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env={**clean, "MicrosoftAppId": "", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_explains_every_verb() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for verb in ("serve", "db", "seed"):
        assert verb in result.stdout
    db_help = _run("db", "--help")
    assert "upgrade" in db_help.stdout and "schema" in db_help.stdout
    serve_help = _run("serve", "--help")
    assert "--host" in serve_help.stdout and "--port" in serve_help.stdout


def test_upgrade_then_seed_twice_changes_nothing_the_second_time(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    assert _run("db", "upgrade", DATABASE_URL=url).returncode == 0
    first = _run("seed", DATABASE_URL=url)
    second = _run("seed", DATABASE_URL=url)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "0 rows created, 0 updated" not in first.stderr
    assert "0 rows created, 0 updated" in second.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3"])
def test_serve_refuses_the_network_without_authentication(host: str) -> None:
    result = _run("serve", "--host", host, "--port", "1")
    assert result.returncode == 2
    assert "authentication OFF" in result.stderr


def test_a_configuration_error_is_reported_plainly() -> None:
    result = _run("seed", TIMEZONE="Europe/Cambridge")
    assert result.returncode == 2
    assert "configuration error" in result.stderr

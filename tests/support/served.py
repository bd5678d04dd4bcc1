"""`ourcambridge serve` in a process of its own, as production runs it, with its JSON log
read back line by line.

The fuzz uses it so that the bot and the test that drives it each have a core (in one
process they share one), and so that what the bot logs is read as an operator reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.log_scan import strings_in


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def setting_variables() -> list[str]:
    """The environment variables the bot reads (DATABASE_URL, GRAPH_ENABLED...)."""
    from pydantic import AliasChoices

    from bot.config import Settings

    names = []
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names += [choice for choice in alias.choices if isinstance(choice, str)]
        elif isinstance(alias, str):
            names.append(alias)
    return names


def _names_the_bot_reads() -> set[str]:
    """Casefolded: Settings matches names in any case, and field names (microsoft_app_id) as
    well as the documented variables (MicrosoftAppId)."""
    from bot.config import Settings

    return {name.casefold() for name in [*setting_variables(), *Settings.model_fields]}


@dataclass(frozen=True)
class LogEntry:
    """One line of the bot's JSON log (bot/logs.py JsonFormatter)."""

    fields: dict[str, Any]

    @property
    def level(self) -> str:
        return str(self.fields.get("level", ""))

    @property
    def logger(self) -> str:
        return str(self.fields.get("logger", ""))

    @property
    def is_failure(self) -> bool:
        """An unhandled exception, or anything logged as an error."""
        return self.level in ("ERROR", "CRITICAL") or "exception" in self.fields

    def written(self) -> str:
        """Every text the line holds apart from its time, level and logger, one a line (those
        inside lists and objects too): what a reader of the log can see."""
        return "\n".join(
            text
            for key, value in self.fields.items()
            if key not in ("time", "level", "logger")
            for text in strings_in(value)
        )


class ServedBot:
    """The bot served by `python -m bot.cli serve` on a free port, with the settings the
    in-process tests use (tests/bot/conftest.py make_settings): authentication off, the
    test officer an admin, no reminders or schedules of its own. Nothing of the caller's
    environment or `.env` that the bot reads is passed on."""

    def __init__(self, database_url: str, workdir: Path, **settings: str) -> None:
        # Here, not at the top: tests.support.teams notes its users with the log scan,
        # which reads setting_variables() from this module.
        from tests.support.teams import ADMIN_AAD_ID

        self.port = free_port()
        self.workdir = workdir  # its `.env` would be read from here: there is none
        self.log_path = workdir / "serve.log"
        read = _names_the_bot_reads()
        inherited = {k: v for k, v in os.environ.items() if k.casefold() not in read}
        self.env = inherited | {
            "DATABASE_URL": database_url,
            "MicrosoftAppId": "",
            "ADMIN_AAD_IDS": ADMIN_AAD_ID,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
            "REMINDERS_AT": "off",
            "SCHEDULER_ENABLED": "false",
            **settings,
        }
        self.process: asyncio.subprocess.Process | None = None
        self._read = 0  # bytes of the log already read

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, *, within: float = 30) -> ServedBot:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot.cli",
                "serve",
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=log,
            )
        try:
            async with aiohttp.ClientSession() as http, asyncio.timeout(within):
                while self.process.returncode is None:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(self.url + "/healthz") as probe:
                            if probe.status == 200:
                                return self
                    await asyncio.sleep(0.1)
        except TimeoutError:
            pass
        await self.kill()
        raise AssertionError(f"the bot did not start:\n{self.log_path.read_text()}")

    async def stop(self, *, within: float = 15) -> int:
        """Stop it as a platform does (SIGTERM); its exit status (killed, if it has not
        ended `within` seconds later: then -9)."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(within):
                return await self.process.wait()
        except TimeoutError:
            return await self.kill()

    async def kill(self) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.kill()
        return await self.process.wait()

    def new_entries(self, *, to_the_end: bool = False) -> Iterator[LogEntry]:
        """The log's whole lines written since the last call (and a last line without its
        end of line, `to_the_end`: once the process has ended)."""
        with self.log_path.open("rb") as log:
            log.seek(self._read)
            text = log.read()
        complete = text if to_the_end else text[: text.rfind(b"\n") + 1]
        self._read += len(complete)
        for line in complete.decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                yield LogEntry(json.loads(line))
            except ValueError:  # the log is JSON only: anything else is a failure to see
                yield LogEntry({"level": "ERROR", "logger": "(not JSON)", "message": line})

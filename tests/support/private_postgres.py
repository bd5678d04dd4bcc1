"""A PostgreSQL server of the test's own: a temporary cluster on a free port, which a test may
stop and start again (a database restart) without touching any other server on the machine.

It needs the server's programs (initdb, pg_ctl), as the postgresql packages install them
under /usr/lib/postgresql/<version>/bin. PostgreSQL refuses to run as root, so as root they
run as the `postgres` user (runuser), in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.served import free_port

SERVER_USER = "postgres"
START_SECONDS = 30


def server_programs() -> tuple[Path | None, str]:
    """The directory holding initdb and pg_ctl, or None and why they cannot be used."""
    found = [Path(p).parent for p in (shutil.which("pg_ctl"),) if p]
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: [int(n) for n in re.findall(r"\d+", path.parent.name)] or [0],
        reverse=True,
    )
    for directory in [*found, *versions]:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            break
    else:
        return None, "the PostgreSQL server programs (initdb, pg_ctl) are not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return None, f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL"
        if shutil.which("runuser") is None:
            return None, "running as root and runuser is missing"
    return directory, ""


class PrivatePostgres:
    """initdb, start, stop and start again, and remove: each call blocks (run it in a thread
    from a test whose event loop serves the bot)."""

    def __init__(self, programs: Path) -> None:
        self.programs = programs
        self.root = Path(tempfile.mkdtemp(prefix="ourcambridge-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *arguments: str) -> None:
        command = [str(self.programs / program), *arguments]
        if self._as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {done.stderr.strip() or done.stdout}"
            )

    def create(self) -> PrivatePostgres:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-locale", "--no-sync",
        )  # fmt: skip
        return self

    def start(self) -> None:
        # fsync off: the test restarts the server cleanly (a fast shutdown writes every
        # committed transaction out); fsync only matters if the machine itself crashes.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
            "-w", "-t", str(START_SECONDS), "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`fast`: sessions are ended and open transactions rolled back, as a service
        restart or a managed database's maintenance does."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

"""The deployment documentation and the container definition, checked against the code.

Docker cannot build here, so the Dockerfile is checked as text (base image, user,
health check, what it copies and what .dockerignore leaves out), and its start command is
run for real, outside Docker, on an empty database: SQLite, and PostgreSQL (two replicas
starting at once) when TEST_DATABASE_URL is set. Links in the README and docs/ must resolve.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import signal
import sys
import time
import tomllib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.config import Settings, async_database_url
from storage import migrate
from storage.db import create_engine
from tests.conftest import BACKENDS, POSTGRES_URL
from tests.support.served import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
CONFIGURATION = ROOT / "docs" / "configuration.md"
ENV_EXAMPLE = ROOT / ".env.example"


# --- settings: docs/configuration.md and .env.example ----------------------------------------


def env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    choices = getattr(alias, "choices", None)
    assert choices, f"Settings.{field} has no environment variable"
    return str(choices[0])


def env_text(value: object) -> str:
    """A default as it is written in the environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, frozenset | set | list | tuple):
        return ",".join(sorted(str(item) for item in value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


SETTINGS = {
    env_name(field): env_text(info.default) for field, info in Settings.model_fields.items()
}


def documented_settings() -> dict[str, str]:
    """Variable -> default cell of every row of the tables in docs/configuration.md."""
    rows: dict[str, str] = {}
    for line in CONFIGURATION.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not re.fullmatch(r"`[A-Za-z_]+`", cells[0]):
            continue
        name, default = cells[0].strip("`"), cells[1]
        assert name not in rows, f"{name} has two rows in docs/configuration.md"
        rows[name] = "" if default == "empty" else default.strip("`")
    return rows


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(ENV_EXAMPLE.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, equals, value = line.partition("=")
        assert equals, f".env.example:{number} is neither a comment nor NAME=value"
        values[name.strip()] = value.strip()
    return values


def test_settings_are_read_from_the_environment_under_distinct_names() -> None:
    assert len(SETTINGS) == len(Settings.model_fields)
    assert "MicrosoftAppId" in SETTINGS and "LOG_FORMAT" in SETTINGS


def test_every_setting_has_a_row_with_its_default_in_the_configuration_table() -> None:
    rows = documented_settings()
    missing = sorted(set(SETTINGS) - set(rows))
    assert not missing, f"not in docs/configuration.md: {missing}"
    unknown = sorted(set(rows) - set(SETTINGS))
    assert not unknown, f"docs/configuration.md documents settings that do not exist: {unknown}"
    wrong = {
        name: (rows[name], SETTINGS[name]) for name in SETTINGS if rows[name] != SETTINGS[name]
    }
    assert not wrong, f"(documented, actual) defaults differ: {wrong}"


def test_every_setting_is_in_env_example_with_its_default() -> None:
    values = env_example()
    missing = sorted(set(SETTINGS) - set(values))
    assert not missing, f"not in .env.example: {missing}"
    unknown = sorted(set(values) - set(SETTINGS))
    assert not unknown, f".env.example sets variables the bot does not read: {unknown}"
    wrong = {
        name: (values[name], SETTINGS[name]) for name in SETTINGS if values[name] != SETTINGS[name]
    }
    assert not wrong, f"(.env.example, actual) defaults differ: {wrong}"


def test_env_example_as_a_dotenv_file_gives_the_defaults(tmp_path: Path) -> None:
    """Copied to .env unchanged, the example configures exactly the defaults."""
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    from_file = Settings(_env_file=env_file)  # type: ignore[call-arg]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert from_file.model_dump() == defaults.model_dump()


# --- the Dockerfile ---------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    arguments: str
    stage: int  # index of the FROM it belongs to


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, arguments = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, arguments.strip(), stage))
    assert not pending, "the Dockerfile ends in a continuation line"
    return instructions


def final_stage() -> list[Instruction]:
    instructions = dockerfile()
    last = max(instruction.stage for instruction in instructions)
    return [instruction for instruction in instructions if instruction.stage == last]


def only(keyword: str) -> Instruction:
    found = [instruction for instruction in final_stage() if instruction.keyword == keyword]
    assert len(found) == 1, f"the runtime stage has {len(found)} {keyword} instructions"
    return found[0]


def exec_form(instruction: Instruction) -> list[str]:
    words = json.loads(instruction.arguments)
    assert isinstance(words, list) and all(isinstance(word, str) for word in words)
    return words


def start_command() -> list[str]:
    return exec_form(only("CMD"))


def health_command() -> list[str]:
    arguments = only("HEALTHCHECK").arguments
    options, cmd, command = arguments.partition("CMD ")
    assert cmd, "HEALTHCHECK has no CMD"
    assert "--timeout" in options and "--interval" in options
    return json.loads(command)


def image_env() -> dict[str, str]:
    """ENV of the runtime stage (KEY=value pairs; ${PATH} left as written)."""
    env: dict[str, str] = {}
    for instruction in final_stage():
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.arguments):
                name, equals, value = pair.partition("=")
                assert equals, f"ENV {pair!r}: use the KEY=value form"
                env[name] = value
    return env


def test_every_stage_builds_on_a_slim_python_3_11_with_a_pinned_debian_release() -> None:
    bases = [i.arguments.split()[0] for i in dockerfile() if i.keyword == "FROM"]
    assert len(bases) >= 2, "a build stage and a runtime stage"
    for base in bases:
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-(bookworm|trixie)", base), base


def test_the_runtime_stage_runs_as_a_numeric_non_root_user() -> None:
    user = only("USER").arguments
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user
    # The user is switched to after everything that needs root.
    stage = final_stage()
    assert all(i.keyword != "RUN" for i in stage[stage.index(only("USER")) :])


def test_the_image_listens_on_3978_on_every_interface_with_json_logs() -> None:
    env = image_env()
    assert env["HOST"] == "0.0.0.0" and env["PORT"] == "3978"
    assert env["LOG_FORMAT"] == "json" and env["PYTHONUNBUFFERED"] == "1"
    assert only("EXPOSE").arguments == env["PORT"]
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_the_health_check_calls_healthz_with_python() -> None:
    command = health_command()
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2] and "timeout=" in command[2]


def test_the_start_command_migrates_then_execs_the_bot() -> None:
    command = start_command()
    assert command[:2] == ["sh", "-c"] and len(command) == 3
    steps = [step.strip() for step in command[2].split("&&")]
    assert steps == ["ourcambridge db upgrade", "exec ourcambridge serve"]


def copy_sources() -> list[str]:
    sources: list[str] = []
    for instruction in dockerfile():
        if instruction.keyword != "COPY" or "--from=" in instruction.arguments:
            continue
        words = [w for w in instruction.arguments.split() if not w.startswith("--")]
        sources.extend(words[:-1])
    return list(dict.fromkeys(sources))


def test_every_path_the_dockerfile_copies_exists() -> None:
    sources = copy_sources()
    assert sources
    missing = [source for source in sources if not (ROOT / source).exists()]
    assert not missing, f"COPY of paths that do not exist: {missing}"


def test_the_image_holds_every_package_and_its_data() -> None:
    """What pyproject.toml installs (the packages and their data: migrations, the
    programme's YAML, the card templates) is all copied into the runtime stage."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = pyproject["tool"]["setuptools"]
    runtime = {
        word.rstrip("/")
        for i in final_stage()
        if i.keyword == "COPY" and "--from=" not in i.arguments
        for word in i.arguments.split()[:-1]
    }
    packages = [pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]]
    assert set(packages) <= runtime, f"packages not copied: {set(packages) - runtime}"
    for package, patterns in setuptools["package-data"].items():
        for pattern in patterns:
            assert list((ROOT / package).glob(pattern)), f"{package}/{pattern} matches nothing"
    for needed in ("appmanifest", "alembic.ini", "pyproject.toml"):
        assert needed in runtime


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, pattern) in file order; Docker's matching: * and ? stay within one path
    segment, ** spans any, and a pattern matching a directory covers what is under it."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        glob = line.lstrip("!").strip("/")
        regex = ""
        index = 0
        while index < len(glob):
            if glob.startswith("**/", index):
                regex += "(?:.*/)?"
                index += 3
            elif glob.startswith("**", index):
                regex += ".*"
                index += 2
            elif glob[index] == "*":
                regex += "[^/]*"
                index += 1
            elif glob[index] == "?":
                regex += "[^/]"
                index += 1
            else:
                regex += re.escape(glob[index])
                index += 1
        rules.append((excludes, re.compile(regex + "(?:/.*)?")))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    result = False
    for excludes, pattern in rules:
        if pattern.fullmatch(path):
            result = excludes
    return result


def test_dockerignore_keeps_secrets_and_clutter_out_of_the_build_context() -> None:
    rules = dockerignore_rules()
    for path in (
        ".env",
        ".git/config",
        ".venv/bin/python",
        "ourcambridge.db",
        "storage/ourcambridge.db",
        "tests/conftest.py",
        "benchmarks/fanout.py",
        "appmanifest/build/ourcambridge.zip",
        "bot/__pycache__/app.cpython-311.pyc",
        ".pytest_cache/v/cache/nodeids",
    ):
        assert ignored(path, rules), f"{path} would be sent to the Docker build"


def test_dockerignore_leaves_in_everything_the_dockerfile_copies() -> None:
    rules = dockerignore_rules()
    build_outputs = re.compile(r"(.*/)?__pycache__/.*|.*\.pyc|appmanifest/build/.*")
    left_out: list[str] = []
    for source in copy_sources():
        path = ROOT / source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if not build_outputs.fullmatch(relative) and ignored(relative, rules):
                left_out.append(relative)
    assert not left_out, f".dockerignore leaves out files the image needs: {left_out[:10]}"


# --- the start command, run for real ----------------------------------------------------------


def container_env(database_url: str, port: int) -> dict[str, str]:
    """The image's environment, on this machine: the project's venv instead of /opt/venv,
    loopback, a free port, a fresh database; nothing of the caller's bot settings."""
    inherited = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "ourcambridge").exists(), f"no ourcambridge script in {venv_bin}"
    env = inherited | image_env()
    env["PATH"] = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    env.pop("PGSSLROOTCERT", None)  # the image's CA bundle path, not this machine's
    return env | {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": database_url,
        "MicrosoftAppId": "",
    }


def read_log(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")


async def wait_for_ok(
    http: aiohttp.ClientSession, url: str, process: asyncio.subprocess.Process, log: Path
) -> dict[str, object]:
    """Poll `url` until it answers 200 (the migrations run first); fail if the process
    exits or a minute passes."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.returncode is not None:
            pytest.fail(f"the start command exited with {process.returncode}:\n{read_log(log)}")
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                if response.status == 200:
                    body: dict[str, object] = await response.json()
                    return body
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.2)
    pytest.fail(f"{url} did not answer 200 within a minute:\n{read_log(log)}")


async def run_health_check(env: dict[str, str]) -> int:
    process = await asyncio.create_subprocess_exec(
        *health_command(),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(15):
        return await process.wait()


class Container:
    """The image's start command in a process of its own, as a replica would run it."""

    def __init__(self, database_url: str, directory: Path) -> None:
        self.port = free_port()
        self.env = container_env(database_url, self.port)
        self.log = directory / f"replica-{self.port}.log"
        self.workdir = directory / "app"  # no .env there: only the environment counts
        self.workdir.mkdir(exist_ok=True)
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> Container:
        with self.log.open("wb") as output:
            # A session of its own, so that whatever the shell leaves behind can be killed.
            self.process = await asyncio.create_subprocess_exec(
                *start_command(),
                env=self.env,
                cwd=self.workdir,
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
        return self

    async def ready(self, http: aiohttp.ClientSession) -> None:
        assert self.process is not None
        base = f"http://127.0.0.1:{self.port}"
        healthz = await wait_for_ok(http, f"{base}/healthz", self.process, self.log)
        assert healthz == {"status": "ok"}
        readyz = await wait_for_ok(http, f"{base}/readyz", self.process, self.log)
        assert readyz == {"status": "ready", "database": "ok"}

    async def terminate(self) -> int:
        """SIGTERM to the process the platform would signal; its exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(45):
            return await self.process.wait()

    async def kill(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.returncode is None:
            await self.process.wait()


async def schema_versions(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
            return [str(row[0]) for row in rows]
    finally:
        await engine.dispose()


@pytest.fixture(params=BACKENDS)
async def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database with no tables at all, as on a first deployment."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'ourcambridge.db'}"
        return
    server = make_url(async_database_url(POSTGRES_URL))
    name = f"ourcambridge_deploy_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server.render_as_string(hide_password=False)).execution_options(
        isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as connection:
        await connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        await admin.dispose()


async def test_the_start_command_migrates_serves_and_stops_cleanly_on_sigterm(
    empty_database_url: str, tmp_path: Path
) -> None:
    """The CMD's shell line, as the container runs it, on an empty database: it is migrated
    to the latest revision, the bot answers /healthz and /readyz, the image's own health
    check passes, and SIGTERM reaches the bot itself (exec), which exits with 0. On
    PostgreSQL two replicas start at the same moment, as after a first deployment with two
    instances: the migration lock lets both come up on one schema."""
    replicas = 1 if empty_database_url.startswith("sqlite") else 2
    containers = [Container(empty_database_url, tmp_path) for _ in range(replicas)]
    try:
        await asyncio.gather(*(container.start() for container in containers))
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(container.ready(http) for container in containers))
        for container in containers:
            assert await run_health_check(container.env) == 0

        config = migrate.alembic_config(empty_database_url)
        head = ScriptDirectory.from_config(config).get_current_head()
        assert await schema_versions(empty_database_url) == [head]

        for container in containers:
            status = await container.terminate()
            assert status == 0, f"exit status {status} after SIGTERM:\n{read_log(container.log)}"
    finally:
        for container in containers:
            await container.kill()

    # The health check is a real check: with the bot gone it fails.
    assert await run_health_check(containers[0].env) != 0


# --- links in the documentation ---------------------------------------------------------------

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose(markdown: str) -> str:
    """The text outside fenced code blocks and inline code."""
    without_blocks = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", without_blocks)


def anchors(markdown: str) -> set[str]:
    """GitHub's ids for a Markdown file's headings (inline code keeps its text)."""
    found: set[str] = set()
    body = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    for line in body.splitlines():
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading is not None:
            text = heading.group(1).strip().lower().replace("`", "")
            found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_local_link_points_at_something_that_exists(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    broken: list[str] = []
    for target in LINK.findall(prose(text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path = (document.parent / path_part).resolve() if path_part else document
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md":
            if anchor not in anchors(path.read_text(encoding="utf-8")):
                broken.append(target)
    assert not broken, f"broken links in {document.relative_to(ROOT)}: {broken}"


def test_the_readme_keeps_two_set_up_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Set up on a new machine", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert [command for command in commands if command] == ["make run", "make test"]
    for document in ("docs/deploy.md", "docs/configuration.md"):
        assert f"]({document})" in readme, f"the README links to {document}"

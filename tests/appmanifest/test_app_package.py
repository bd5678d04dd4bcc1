"""The Teams app package: `ourcambridge manifest build` run as a process, its zip checked
against Microsoft's own schema, and the manifests and icons the build must refuse."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator

from bot.commands import COMMANDS, parse
from bot.config import Settings
from bot.manifest import (
    MANIFEST_DIR,
    MANIFEST_VERSION,
    SCHEMA,
    ManifestInvalid,
    PackageSettings,
    build_package,
    decode_png,
    icon_problems,
    render_manifest,
)
from dialogs import digest as digest_dialogs

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "ourcambridge"
APP_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
OTHER_APP_ID = "9b2d7c1e-5a4f-4e6b-8c3d-2f1a0e9d8c7b"
DOMAIN = "ourcambridge.azurewebsites.net"
# Commands the bot answers only in a channel, and only in a 1:1 chat (bot/handler.py, dialogs/).
CHANNEL_ONLY = (digest_dialogs.COMMANDS - {"digest preview"}) | {"set triage channel"}
PERSONAL_ONLY = {"my ideas", "ideas"}


def run_cli(*args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """The installed command, with no setting from this machine's environment or .env (the
    working directory is a scratch one) but those given."""
    names = {
        alias.lower()
        for field in Settings.model_fields.values()
        for alias in getattr(field.validation_alias, "choices", [])
    }
    environment = {k: v for k, v in os.environ.items() if k.lower() not in names}
    return subprocess.run(
        [str(CLI), *args],
        env={**environment, **settings},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as a deployment builds it: the app id in MicrosoftAppId, no secret."""
    scratch = tmp_path_factory.mktemp("package")
    target = scratch / "out" / "ourcambridge.zip"
    result = run_cli(
        "manifest",
        "build",
        "--output",
        str(target),
        cwd=scratch,
        MicrosoftAppId=APP_ID,
        BOT_DOMAIN=DOMAIN,
        TEAMS_APP_VERSION="1.2.3",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(target)
    return target


def test_a_checkout_builds_the_package_where_the_docs_say(
    tmp_path: Path, official_schema: Callable[[str], bytes]
) -> None:
    # `ourcambridge manifest build` with no --output, as on a fresh clone: the package lands
    # in the checkout's appmanifest/build/ (here a copy of the checkout's code).
    checkout = tmp_path / "checkout"
    for folder in ("bot", "dialogs", "storage", "cards", "appmanifest"):
        shutil.copytree(
            ROOT / folder,
            checkout / folder,
            ignore=shutil.ignore_patterns("build", "__pycache__"),
        )
    python = ROOT / ".venv" / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "bot.cli", "manifest", "build"],
        env={**os.environ, "PYTHONPATH": str(checkout), "MicrosoftAppId": APP_ID},
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    package = checkout / "appmanifest" / "build" / "ourcambridge.zip"
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(package)
    manifest = manifest_of(package)
    schema = json.loads(official_schema(manifest["manifestVersion"]))
    assert list(Draft4Validator(schema).iter_errors(manifest)) == []


def manifest_of(package: Path) -> dict[str, Any]:
    with zipfile.ZipFile(package) as archive:
        manifest: dict[str, Any] = json.loads(archive.read("manifest.json"))
    return manifest


def settings(**overrides: Any) -> PackageSettings:
    values: dict[str, Any] = {"microsoft_app_id": APP_ID, "teams_app_id": "", "bot_domain": ""}
    return PackageSettings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


# --- the package -----------------------------------------------------------------------------


def test_the_package_passes_the_official_schema_of_the_version_it_declares(
    built: Path, official_schema: Callable[[str], bytes]
) -> None:
    manifest = manifest_of(built)
    schema = json.loads(official_schema(manifest["manifestVersion"]))
    errors = [
        f"{'/'.join(map(str, error.path))}: {error.message}"
        for error in Draft4Validator(schema).iter_errors(manifest)
    ]
    assert errors == []
    # Draft 4 ignores `const`: the declared version is compared by hand.
    assert manifest["manifestVersion"] == schema["properties"]["manifestVersion"]["const"]
    assert manifest["$schema"].endswith(
        f"/v{manifest['manifestVersion']}/MicrosoftTeams.schema.json"
    )


def test_the_vendored_schema_is_the_official_one_byte_for_byte(
    official_schema: Callable[[str], bytes],
) -> None:
    assert SCHEMA.read_bytes() == official_schema(MANIFEST_VERSION)


def test_the_package_is_filled_in_from_the_settings(built: Path) -> None:
    manifest = manifest_of(built)
    assert manifest["id"] == APP_ID
    assert manifest["version"] == "1.2.3"
    assert manifest["bots"][0]["botId"] == APP_ID
    assert manifest["composeExtensions"][0]["botId"] == APP_ID
    assert manifest["webApplicationInfo"] == {"id": APP_ID, "resource": f"api://botid-{APP_ID}"}
    assert manifest["validDomains"] == [DOMAIN]
    assert manifest["name"]["short"] == "Our Cambridge"
    assert (
        manifest["developer"]["privacyUrl"]
        == Settings.model_fields["developer_privacy_url"].get_default()
    )


def test_the_zip_is_flat_with_the_manifest_and_the_two_icons(built: Path) -> None:
    with zipfile.ZipFile(built) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        color = decode_png(archive.read("color.png"))
        outline = decode_png(archive.read("outline.png"))
    width, height, channels, rows = color
    assert (width, height) == (192, 192)
    # The colour icon is opaque: no alpha channel, or every pixel's alpha at 255.
    assert channels == 3 or all(row[3::4] == b"\xff" * width for row in rows)
    width, height, channels, rows = outline
    assert (width, height, channels) == (32, 32, 4)
    pixels = [row[i : i + 4] for row in rows for i in range(0, len(row), 4)]
    assert all(pixel[3] == 0 or pixel[:3] == b"\xff\xff\xff" for pixel in pixels)
    assert any(pixel[3] == 0 for pixel in pixels), "the outline icon has no transparency"
    assert any(pixel[3] == 255 for pixel in pixels), "the outline icon draws nothing"


def test_the_committed_icons_are_what_make_icons_draws() -> None:
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", _DRAW_ICONS],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=True,
    )
    color, outline = result.stdout.split(b"\n--\n")
    assert (MANIFEST_DIR / "color.png").read_bytes() == color
    assert (MANIFEST_DIR / "outline.png").read_bytes() == outline


_DRAW_ICONS = """
import sys
sys.path.insert(0, "appmanifest")
import make_icons
sys.stdout.buffer.write(make_icons.color_icon() + b"\\n--\\n" + make_icons.outline_icon())
"""


def test_an_app_id_option_names_the_bot_and_a_directory_takes_the_zip(tmp_path: Path) -> None:
    result = run_cli(
        "manifest",
        "build",
        "--app-id",
        OTHER_APP_ID,
        "--output",
        str(tmp_path),
        cwd=tmp_path,
        MicrosoftAppId=APP_ID,
    )
    assert result.returncode == 0, result.stderr
    manifest = manifest_of(tmp_path / "ourcambridge.zip")
    assert manifest["id"] == manifest["bots"][0]["botId"] == OTHER_APP_ID
    assert manifest["validDomains"] == []


def test_teams_app_id_names_the_app_and_the_bot_keeps_its_own(tmp_path: Path) -> None:
    result = run_cli(
        "manifest",
        "build",
        "--output",
        str(tmp_path),
        cwd=tmp_path,
        MicrosoftAppId=APP_ID,
        TEAMS_APP_ID=OTHER_APP_ID,
    )
    assert result.returncode == 0, result.stderr
    manifest = manifest_of(tmp_path / "ourcambridge.zip")
    assert manifest["id"] == OTHER_APP_ID
    assert manifest["bots"][0]["botId"] == manifest["webApplicationInfo"]["id"] == APP_ID


# --- the commands Teams offers ----------------------------------------------------------------


def test_every_listed_command_is_one_the_bot_understands(built: Path) -> None:
    bot = manifest_of(built)["bots"][0]
    assert {scope for entry in bot["commandLists"] for scope in entry["scopes"]} == {
        "personal",
        "team",
        "groupChat",
    }
    for entry in bot["commandLists"]:
        for command in entry["commands"]:
            parsed = parse(command["title"])
            assert parsed.name in COMMANDS, command["title"]
            assert parsed.argument == "", f"{command['title']!r} is more than a command"


def test_each_scope_lists_only_commands_the_bot_answers_there(built: Path) -> None:
    for entry in manifest_of(built)["bots"][0]["commandLists"]:
        names = {parse(command["title"]).name for command in entry["commands"]}
        if "team" not in entry["scopes"]:
            assert not names & CHANNEL_ONLY, entry["scopes"]
        if entry["scopes"] != ["personal"]:
            assert not names & PERSONAL_ONLY, entry["scopes"]


def test_the_search_extension_keeps_the_command_the_bot_answers(built: Path) -> None:
    (extension,) = manifest_of(built)["composeExtensions"]
    (command,) = extension["commands"]
    assert (command["id"], command["type"]) == ("searchProjects", "query")
    assert [parameter["name"] for parameter in command["parameters"]] == ["searchText"]


# --- what cannot be built --------------------------------------------------------------------


def test_without_an_app_id_the_cli_says_what_to_set(tmp_path: Path) -> None:
    result = run_cli("manifest", "build", "--output", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert "Set MicrosoftAppId (the Azure Bot's app id) or pass --app-id" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_bad_setting_fails_the_cli_naming_the_path_and_writes_nothing(tmp_path: Path) -> None:
    result = run_cli(
        "manifest",
        "build",
        "--output",
        str(tmp_path),
        cwd=tmp_path,
        MicrosoftAppId=APP_ID,
        DEVELOPER_WEBSITE_URL="http://www.cambridge.gov.uk/",
    )
    assert result.returncode == 1
    assert "developer/websiteUrl" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def _with(manifest: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of the manifest with the value at a JSON path ("bots/0/scopes") replaced."""
    changed = json.loads(json.dumps(manifest))
    *parents, last = path.split("/")
    node: Any = changed
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return changed


def _thirteen_commands(manifest: dict[str, Any]) -> list[dict[str, str]]:
    commands: list[dict[str, str]] = manifest["bots"][0]["commandLists"][0]["commands"]
    spare = [
        {"title": name, "description": name}
        for name in COMMANDS
        if name not in {command["title"] for command in commands}
    ]
    return commands + spare[: 13 - len(commands)]


BROKEN: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    # case: (JSON path the message must name, the value put there)
    "13 commands in a list": (
        "bots/0/commandLists/0/commands",
        _thirteen_commands,
    ),
    "a 31-character name": ("name/short", lambda _: "Our Cambridge transformation pr"),
    "a 33-character command title": (
        "bots/0/commandLists/0/commands/0/title",
        lambda _: "status of every project right now",
    ),
    "a 129-character command description": (
        "bots/0/commandLists/2/commands/1/description",
        lambda _: "x" * 129,
    ),
    "another manifest version": ("manifestVersion", lambda _: "1.29"),
    "an app id that is no GUID": ("id", lambda _: "ourcambridge"),
    "the nil GUID as the bot": ("bots/0/botId", lambda _: "00000000-0000-0000-0000-000000000000"),
    "an unfilled placeholder": ("description/short", lambda _: "${{APP_DESCRIPTION}}"),
    "an icon in a folder": ("icons/color", lambda _: "icons/color.png"),
    "a scope Teams does not have": ("bots/0/scopes/0", lambda _: "everyone"),
    "a URL for a domain": ("validDomains", lambda _: ["https://ourcambridge.example"]),
    "an accent colour without #": ("accentColor", lambda _: "00594F"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_malformed_manifest_is_refused_naming_the_path(case: str, tmp_path: Path) -> None:
    path, make_value = BROKEN[case]
    good = render_manifest(settings())
    template = tmp_path / "manifest.json.j2"
    broken = json.dumps(_with(good, path, make_value(good)))
    # Raw: a placeholder is meant to reach the manifest, not to be a Jinja expression.
    template.write_text("{% raw %}" + broken + "{% endraw %}", encoding="utf-8")
    with pytest.raises(ManifestInvalid) as refused:
        build_package(settings(), tmp_path / "out", template=template)
    assert f"\n{path}" in str(refused.value)
    assert not (tmp_path / "out").exists()


def test_the_unchanged_manifest_through_a_template_file_builds(tmp_path: Path) -> None:
    """The counterpart of the cases above: only the change made them fail."""
    template = tmp_path / "manifest.json.j2"
    template.write_text(json.dumps(render_manifest(settings())), encoding="utf-8")
    assert build_package(settings(), tmp_path / "out", template=template).is_file()


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"developer_privacy_url": "http://www.cambridge.gov.uk/privacy"}, "developer/privacyUrl"),
        ({"developer_name": "Cambridge City Council transformation"}, "developer/name"),
        ({"teams_app_version": "1.0"}, "version"),
        ({"bot_domain": "https://ourcambridge.azurewebsites.net"}, "validDomains/0"),
        ({"teams_app_id": "not-a-guid"}, "id"),
        ({"developer_name": "<the publisher>"}, "developer/name"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_path(
    overrides: dict[str, str], path: str, tmp_path: Path
) -> None:
    with pytest.raises(ManifestInvalid) as refused:
        build_package(settings(**overrides), tmp_path)
    assert f"\n{path}: " in str(refused.value)
    assert list(tmp_path.iterdir()) == []


def test_a_template_using_an_unknown_value_is_refused(tmp_path: Path) -> None:
    template = tmp_path / "manifest.json.j2"
    template.write_text('{"id": {{ app_guid|tojson }}}', encoding="utf-8")
    with pytest.raises(ManifestInvalid, match="app_guid"):
        build_package(settings(), tmp_path, template=template)


def test_without_an_app_id_nothing_is_built(tmp_path: Path) -> None:
    with pytest.raises(ManifestInvalid, match=r"Set MicrosoftAppId .* or pass --app-id"):
        build_package(settings(microsoft_app_id="", teams_app_id=APP_ID), tmp_path)


# --- the icon checks -----------------------------------------------------------------------


def png(width: int, height: int, pixels: list[list[tuple[int, ...]]], filters: list[int]) -> bytes:
    """A PNG written independently of bot.manifest, each row with the given filter (0-4)."""
    channels = len(pixels[0][0])
    raw = b""
    previous = bytes(width * channels)
    for row, kind in zip(pixels, filters, strict=True):
        line = bytes(value for pixel in row for value in pixel)
        encoded = bytearray()
        for i, value in enumerate(line):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            predictor = [
                0,
                left,
                up,
                (left + up) // 2,
                min((left, up, up_left), key=lambda p: abs(left + up - up_left - p)),
            ][kind]
            encoded.append((value - predictor) % 256)
        raw += bytes([kind]) + bytes(encoded)
        previous = line

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    color_type = {3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_png_rows_are_read_back_whatever_their_filter() -> None:
    pixels = [
        [
            ((x * 37 + y * 11) % 256, (x * y) % 256, (200 - x) % 256, (x * 90) % 256)
            for x in range(6)
        ]
        for y in range(5)
    ]
    width, height, channels, rows = decode_png(png(6, 5, pixels, filters=[0, 1, 2, 3, 4]))
    assert (width, height, channels) == (6, 5, 4)
    assert rows == [bytes(value for pixel in row for value in pixel) for row in pixels]


def test_an_outline_icon_with_a_grey_pixel_is_refused() -> None:
    white = [[(255, 255, 255, 0)] * 32 for _ in range(32)]
    assert icon_problems("outline", png(32, 32, white, [0] * 32)) == []
    white[5][7] = (128, 128, 128, 255)
    (problem,) = icon_problems("outline", png(32, 32, white, [1] * 32))
    assert problem.startswith("icons/outline: pixel (7, 5)")


@pytest.mark.parametrize(
    ("kind", "size", "channels", "message"),
    [
        ("color", 96, 3, "96x96, it must be 192x192"),
        ("outline", 48, 4, "48x48, it must be 32x32"),
        ("outline", 32, 3, "needs transparency"),
    ],
)
def test_an_icon_of_the_wrong_kind_is_refused(
    kind: str, size: int, channels: int, message: str
) -> None:
    pixels = [[(255,) * channels] * size for _ in range(size)]
    (problem,) = icon_problems(kind, png(size, size, pixels, [0] * size))
    assert problem.startswith(f"icons/{kind}: ") and message in problem


def test_a_file_that_is_not_a_png_is_refused() -> None:
    assert icon_problems("color", b"GIF89a") == ["icons/color: not a PNG file"]

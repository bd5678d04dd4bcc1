"""The Teams app package: appmanifest/manifest.json.j2 filled in from the settings, checked,
and zipped with the two icons (`ourcambridge manifest build`).

Nothing is written unless the manifest passes the vendored v1.30 JSON schema and the rules
the schema cannot express (Teams' own limits, GUIDs, https links, the icons' pixels).
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined, TemplateError, meta
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError

from bot.config import Settings

# The project runs from a checkout (or the image's copy of one): appmanifest/ is beside bot/.
MANIFEST_DIR = Path(__file__).resolve().parents[1] / "appmanifest"
TEMPLATE = MANIFEST_DIR / "manifest.json.j2"
MANIFEST_VERSION = "1.30"
SCHEMA = MANIFEST_DIR / "schema" / f"MicrosoftTeams.schema.v{MANIFEST_VERSION}.json"
BUILD_DIR = MANIFEST_DIR / "build"
PACKAGE_NAME = "ourcambridge.zip"

ICON_SIZES = {"color": 192, "outline": 32}
# Teams' limits for a bot's commands, tighter than the schema's.
COMMAND_TITLE_MAX = 32
COMMAND_DESCRIPTION_MAX = 128
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
NIL_GUID = "00000000-0000-0000-0000-000000000000"
SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
# Jinja's {{ name }}, the Teams Toolkit's ${{NAME}}, the docs' <host>: a value never set.
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{%|%\}|\$\{|<[^<>]*>")
NO_APP_ID = "Set MicrosoftAppId (the Azure Bot's app id) or pass --app-id"


class ManifestInvalid(Exception):
    """The package cannot be built; the message names each problem by its JSON path."""


class PackageSettings(Settings):
    """The settings as the package build reads them. The build uses the app's ids only, so it
    does not ask for the secret and tenant that serving checks for (a build machine should
    not need them)."""

    requires_credentials = False


def build_package(
    settings: Settings,
    out_dir: Path | None = None,
    *,
    filename: str = PACKAGE_NAME,
    template: Path = TEMPLATE,
) -> Path:
    """Render, check and zip the package; return the zip's path (out_dir/filename).

    `template` is another manifest template to build instead (its icons are still the ones
    in appmanifest/).
    """
    manifest = render_manifest(settings, template)
    problems = teams_problems(manifest)
    # One line a path: the checks above say it more plainly than the schema's patterns.
    reported = {problem.split(": ", 1)[0] for problem in problems}
    problems += [p for p in schema_problems(manifest) if p.split(": ", 1)[0] not in reported]
    icons: dict[str, bytes] = {}
    for kind in ICON_SIZES:
        name = str(_dict(manifest.get("icons")).get(kind, ""))
        path = MANIFEST_DIR / Path(name).name
        if name and path.is_file():
            icons[kind] = path.read_bytes()
            problems += icon_problems(kind, icons[kind])
        else:
            problems.append(f"icons/{kind}: {name!r} is not a file in appmanifest/")
    if problems:
        raise ManifestInvalid("the manifest is not valid:\n" + "\n".join(problems))
    target = (out_dir or BUILD_DIR) / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and then moved, so a failed build never leaves half a zip.
    partial = target.with_name(target.name + ".partial")
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as package:
            package.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
            for kind, data in icons.items():
                package.writestr(manifest["icons"][kind], data)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def render_manifest(settings: Settings, template: Path = TEMPLATE) -> dict[str, Any]:
    if not settings.microsoft_app_id:
        raise ManifestInvalid(NO_APP_ID)
    environment = Environment(
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # JSON, not HTML: every value goes through |tojson
    )
    values = {
        "app_id": settings.manifest_app_id,
        "version": settings.teams_app_version,
        "bot_id": settings.microsoft_app_id,
        "developer_name": settings.developer_name,
        "website_url": settings.developer_website_url,
        "privacy_url": settings.developer_privacy_url,
        "terms_url": settings.developer_terms_url,
        "valid_domains": [settings.bot_domain] if settings.bot_domain else [],
    }
    try:
        source = template.read_text(encoding="utf-8")
        # StrictUndefined alone would not do: |tojson fails on an undefined value with a
        # TypeError that does not say which.
        unknown = meta.find_undeclared_variables(environment.parse(source)) - values.keys()
        if unknown:
            raise ManifestInvalid(
                f"{template.name} uses values the build has not: {sorted(unknown)}"
            )
        text = environment.from_string(source).render(values)
    except OSError as error:
        raise ManifestInvalid(f"the manifest template cannot be read: {error}") from error
    except TemplateError as error:
        raise ManifestInvalid(f"{template.name}: {error}") from error
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as error:
        raise ManifestInvalid(f"{template.name} is not JSON once filled in: {error}") from error
    if not isinstance(manifest, dict):
        raise ManifestInvalid(f"{template.name}: the manifest must be a JSON object")
    return manifest


def schema_problems(manifest: dict[str, Any]) -> list[str]:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    errors = sorted(Draft4Validator(schema).iter_errors(manifest), key=lambda e: list(e.path))
    return [f"{_path(error.path)}: {_describe(error)}" for error in errors]


def teams_problems(manifest: dict[str, Any]) -> list[str]:
    """What Teams refuses and the schema lets through (draft 4 ignores `const`, among others)."""
    problems = []
    if manifest.get("manifestVersion") != MANIFEST_VERSION:
        problems.append(f"manifestVersion: must be {MANIFEST_VERSION!r}, the vendored schema's")
    if not SEMVER.match(str(manifest.get("version", ""))):
        problems.append("version: must be MAJOR.MINOR.PATCH, e.g. 1.0.0 (TEAMS_APP_VERSION)")
    for path, value in _guids(manifest):
        if not GUID.match(value) or value == NIL_GUID:
            problems.append(f"{path}: {value!r} is not an app id (a GUID)")
    for key in ("websiteUrl", "privacyUrl", "termsOfUseUrl"):
        url = _dict(manifest.get("developer")).get(key, "")
        if not str(url).lower().startswith("https://"):
            problems.append(f"developer/{key}: {url!r} must be an https:// address")
    for index, domain in enumerate(_list(manifest.get("validDomains"))):
        if "/" in str(domain) or ":" in str(domain):
            problems.append(f"validDomains/{index}: {domain!r} must be a host name only")
    for bot_index, bot in enumerate(_list(manifest.get("bots"))):
        for list_index, command_list in enumerate(_list(_dict(bot).get("commandLists"))):
            prefix = f"bots/{bot_index}/commandLists/{list_index}/commands"
            problems += _command_problems(prefix, _list(_dict(command_list).get("commands")))
    for kind in ICON_SIZES:
        name = str(_dict(manifest.get("icons")).get(kind, ""))
        if Path(name).name != name or not name.endswith(".png"):
            problems.append(f"icons/{kind}: {name!r} must be a .png file at the package's root")
    for path, value in _strings(manifest):
        if PLACEHOLDER.search(value):
            problems.append(f"{path}: {value!r} holds a placeholder never filled in")
    return problems


def icon_problems(kind: str, data: bytes) -> list[str]:
    """Teams' icon rules: colour 192x192; outline 32x32, white on a transparent ground."""
    try:
        width, height, channels, rows = decode_png(data)
    except ValueError as error:
        return [f"icons/{kind}: {error}"]
    size = ICON_SIZES[kind]
    if (width, height) != (size, size):
        return [f"icons/{kind}: the icon is {width}x{height}, it must be {size}x{size}"]
    if kind != "outline":
        return []
    if channels != 4:
        return ["icons/outline: the outline icon needs transparency (an RGBA PNG)"]
    for y, row in enumerate(rows):
        for x in range(width):
            red, green, blue, alpha = row[4 * x : 4 * x + 4]
            if alpha and (red, green, blue) != (255, 255, 255):
                return [
                    f"icons/outline: pixel ({x}, {y}) is neither white nor transparent "
                    f"(RGBA {red}, {green}, {blue}, {alpha})"
                ]
    return []


def decode_png(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """(width, height, channels, rows of pixel bytes) of an 8-bit RGB or RGBA PNG that is
    not interlaced (what Teams' icons are); ValueError for anything else."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("not a PNG file")
    chunks = list(_chunks(data[8:]))
    if not chunks or chunks[0][0] != b"IHDR":
        raise ValueError("the PNG has no header")
    if len(chunks[0][1]) != 13:
        raise ValueError("the PNG's header is damaged")
    width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    channels = {2: 3, 6: 4}.get(color_type)
    if depth != 8 or channels is None or interlace:
        raise ValueError("must be an 8-bit RGB or RGBA PNG, not interlaced")
    try:
        raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    except zlib.error as error:
        raise ValueError(f"the PNG's pixels cannot be read: {error}") from error
    stride = width * channels
    if len(raw) != height * (stride + 1):
        raise ValueError("the PNG's pixel data does not match its size")
    rows: list[bytes] = []
    previous = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        row = _unfilter(raw[start], raw[start + 1 : start + 1 + stride], previous, channels)
        rows.append(row)
        previous = row
    return width, height, channels, rows


def _unfilter(kind: int, line: bytes, previous: bytes, step: int) -> bytes:
    row = bytearray(line)
    for i in range(len(row)):
        left = row[i - step] if i >= step else 0
        up = previous[i]
        up_left = previous[i - step] if i >= step else 0
        if kind == 1:
            row[i] = (row[i] + left) & 0xFF
        elif kind == 2:
            row[i] = (row[i] + up) & 0xFF
        elif kind == 3:
            row[i] = (row[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            row[i] = (row[i] + _paeth(left, up, up_left)) & 0xFF
        elif kind != 0:
            raise ValueError(f"unknown PNG row filter {kind}")
    return bytes(row)


def _paeth(left: int, up: int, up_left: int) -> int:
    estimate = left + up - up_left
    distances = (abs(estimate - left), abs(estimate - up), abs(estimate - up_left))
    if distances[0] <= distances[1] and distances[0] <= distances[2]:
        return left
    return up if distances[1] <= distances[2] else up_left


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    offset = 0
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        yield data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        offset += 12 + length


def _command_problems(prefix: str, commands: list[Any]) -> list[str]:
    problems = []
    titles: set[str] = set()
    for index, command in enumerate(commands):
        title = str(_dict(command).get("title", ""))
        description = str(_dict(command).get("description", ""))
        if len(title) > COMMAND_TITLE_MAX:
            problems.append(f"{prefix}/{index}/title: longer than {COMMAND_TITLE_MAX} characters")
        if len(description) > COMMAND_DESCRIPTION_MAX:
            problems.append(
                f"{prefix}/{index}/description: longer than {COMMAND_DESCRIPTION_MAX} characters"
            )
        if title.casefold() in titles:
            problems.append(f"{prefix}/{index}/title: {title!r} is listed twice")
        titles.add(title.casefold())
    return problems


def _guids(manifest: dict[str, Any]) -> Iterator[tuple[str, str]]:
    yield "id", str(manifest.get("id", ""))
    for index, bot in enumerate(_list(manifest.get("bots"))):
        yield f"bots/{index}/botId", str(_dict(bot).get("botId", ""))
    for index, extension in enumerate(_list(manifest.get("composeExtensions"))):
        yield f"composeExtensions/{index}/botId", str(_dict(extension).get("botId", ""))
    if "webApplicationInfo" in manifest:
        yield "webApplicationInfo/id", str(_dict(manifest["webApplicationInfo"]).get("id", ""))


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path or "(root)", value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}/{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}/{index}" if path else str(index))


def _dict(value: Any) -> dict[str, Any]:
    # A value of the wrong type is the schema's to report; these checks then skip it.
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _path(parts: Any) -> str:
    return "/".join(str(part) for part in parts) or "(root)"


def _describe(error: ValidationError) -> str:
    """The schema's complaint, without repeating a long instance back in full."""
    limit = error.validator_value
    if error.validator == "maxItems":
        return f"{len(error.instance)} items, at most {limit} allowed"
    if error.validator == "maxLength":
        return f"{error.instance!r} is {len(error.instance)} characters, at most {limit} allowed"
    message = error.message
    return message if len(message) <= 300 else message[:297] + "..."

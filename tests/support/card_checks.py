"""Small readers and checks shared by the card tests."""

from __future__ import annotations

import json
from typing import Any

from tests.support.card_schema import TeamsCardValidator
from tests.support.teams import card_nodes

SCHEMA_URL = "http://adaptivecards.io/schemas/adaptive-card.json"


def size(card: dict[str, Any]) -> int:
    """The card's size as sent: UTF-8 JSON bytes."""
    return len(json.dumps(card).encode("utf-8"))


def inputs(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every input by id; ids must be unique across the whole card, ShowCards included."""
    found = [n for n in card_nodes(card) if str(n.get("type", "")).startswith("Input.")]
    assert len({n["id"] for n in found}) == len(found), "input ids are unique"
    return {n["id"]: n for n in found}


def submits(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in card_nodes(card) if n.get("type") == "Action.Submit"]


def buttons(card: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(title, data) of every Action.Submit."""
    return [(n["title"], n["data"]) for n in submits(card)]


def texts(card: dict[str, Any]) -> list[str]:
    """The text of every TextBlock."""
    return [n["text"] for n in card_nodes(card) if n.get("type") == "TextBlock"]


def check_valid_small_and_plain(
    validator: TeamsCardValidator, card: dict[str, Any], *, wide: bool, max_bytes: int
) -> None:
    """Schema-valid 1.5, full width only where meant, under `max_bytes`, every TextBlock
    wrapping, every input labelled and every required one saying why."""
    validator.validate(card)
    assert card["version"] == "1.5"
    assert card["$schema"] == SCHEMA_URL
    assert (card.get("msteams") == {"width": "Full"}) == wide
    assert size(card) < max_bytes, size(card)
    blocks = [n for n in card_nodes(card) if n.get("type") == "TextBlock"]
    assert blocks and all(block.get("wrap") is True for block in blocks)
    for node in card_nodes(card):
        if str(node.get("type", "")).startswith("Input."):
            assert node.get("label"), f"{node['id']} has a label"
            if node.get("isRequired"):
                assert node.get("errorMessage"), f"{node['id']} says why it is required"

"""Parsing what people type into commands."""

from __future__ import annotations

import pytest

from bot.commands import closest_commands, parse


@pytest.mark.parametrize(
    ("text", "name", "argument"),
    [
        ("help", "help", ""),
        ("Hello", "help", ""),
        ("status alloy", "status", "alloy"),
        ("Status   Of  Website", "status", "Website"),
        ("status", "status", ""),
        ("projects", "projects", ""),
        ("projects transforming delivery", "projects", "transforming delivery"),
        ("programme", "programme", ""),
        ("program", "programme", ""),
        ("post update alloy", "post update", "alloy"),
        ("cancel", "cancel", ""),
        ("statusalloy", "unknown", ""),
        ("what is going on", "unknown", ""),
    ],
)
def test_parse(text: str, name: str, argument: str) -> None:
    command = parse(text)
    assert (command.name, command.argument) == (name, argument)


def test_closest_commands_puts_the_misspelt_one_first() -> None:
    assert closest_commands("statsu alloy")[0] == ("status alloy", "status alloy")
    assert closest_commands("projcts")[0][0] == "projects"
    assert len(closest_commands("zzz")) == 3

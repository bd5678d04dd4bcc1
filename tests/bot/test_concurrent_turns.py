"""Two turns of one conversation at once: the dialog state's e-tag decides, nobody's input is
silently lost, and the person whose turn lost is asked to repeat it."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.replies import CONFLICT_TEXT, FAILED_TEXT
from tests.support.connector import FakeConnector
from tests.support.teams import TeamsClient, card_text


async def test_the_turn_that_saves_second_is_asked_to_repeat(
    client: TeamsClient, connector: FakeConnector
) -> None:
    def hold_back_alloy(activity: dict[str, Any]) -> float:
        # The "status" question goes out at once, so its turn saves its state first; the
        # Alloy card is held until then, so that turn saves on a stale e-tag.
        return 0.4 if "Alloy" in str(activity) else 0.05

    await client.say("status")  # a question waits for a project name
    connector.delay = hold_back_alloy
    try:
        answer, restart = await asyncio.gather(client.say("alloy"), client.say("status"))
    finally:
        connector.delay = None

    assert len(restart.texts) == 1 and "Which project" in restart.texts[0], restart.texts
    assert "Alloy" in card_text(answer.cards[0]), "the answer was given before the save failed"
    assert answer.texts[-1] == CONFLICT_TEXT
    assert FAILED_TEXT not in answer.texts + restart.texts

    # The winning turn's state was kept, not wiped: its question is still waiting.
    follow_up = await client.say("orchard")
    assert "Orchard" in card_text(follow_up.card)

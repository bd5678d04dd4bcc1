"""Programme officers post monthly updates from the project card; everyone sees them."""

from __future__ import annotations

from datetime import date

import aiohttp

from tests.bot.conftest import BotServer
from tests.support.connector import FakeConnector
from tests.support.teams import TeamsClient, card_text


def _this_month() -> str:
    return date.today().strftime("%Y-%m")


def _actions(card: dict) -> list[dict]:
    return card.get("actions", [])


def _input(card: dict, input_id: str) -> dict:
    def walk(node):  # type: ignore[no-untyped-def]
        if isinstance(node, dict):
            if node.get("id") == input_id and str(node.get("type", "")).startswith("Input."):
                return node
            for value in node.values():
                found = walk(value)
                if found:
                    return found
        if isinstance(node, list):
            for child in node:
                found = walk(child)
                if found:
                    return found
        return None

    found = walk(card)
    assert found, f"no input {input_id}"
    return found


async def test_officer_sees_post_update_and_posts_one(
    officer: TeamsClient, client: TeamsClient
) -> None:
    card = (await officer.say("status city portrait")).card
    post = next(a for a in _actions(card) if a["title"] == "Post update")
    form = (await officer.submit(post["data"])).card
    assert "City Portrait" in card_text(form)

    text = "Funding approved; procurement route agreed with the partner."
    submitted = await officer.submit(
        {
            "action": "post_update_submit",
            "project": "city-portrait",
            "text": text,
            "rag": "amber",
            "month": _this_month(),
        }
    )
    confirmation = card_text(submitted.card)
    assert "Update posted" in confirmation
    assert text in confirmation

    # Everyone sees it, with the earlier months kept as history.
    seen = card_text((await client.say("status city portrait")).card)
    assert text in seen
    assert "Amber" in seen
    assert "June 2022" in seen, "June's update is kept in the history"


async def test_invalid_form_is_shown_again_with_reasons_and_entries_kept(
    officer: TeamsClient,
) -> None:
    await officer.submit({"action": "post_update", "project": "data-strategy"})
    typed = "Draft strategy shared with the Design Authority."
    again = (
        await officer.submit(
            {
                "action": "post_update_submit",
                "project": "data-strategy",
                "text": typed,
                "rag": "purple",
                "month": "2099-01",
            }
        )
    ).card
    text = card_text(again)
    assert "RAG" in text
    assert "future" in text
    assert _input(again, "text")["value"] == typed, "the officer's words are kept"

    empty = (
        await officer.submit(
            {
                "action": "post_update_submit",
                "project": "data-strategy",
                "text": "   ",
                "rag": "green",
                "month": _this_month(),
            }
        )
    ).card
    assert "can't be empty" in card_text(empty)
    assert _input(empty, "rag")["value"] == "green"

    done = await officer.submit(
        {
            "action": "post_update_submit",
            "project": "data-strategy",
            "text": typed,
            "rag": "green",
            "month": _this_month(),
        }
    )
    assert "Update posted" in card_text(done.card)


async def test_staff_are_refused_even_if_they_send_the_action(client: TeamsClient) -> None:
    refused = await client.submit({"action": "post_update", "project": "alloy"})
    assert "Only the programme team" in refused.texts[0]
    sneaky = await client.submit(
        {
            "action": "post_update_submit",
            "project": "alloy",
            "text": "Cancelled!",
            "rag": "red",
            "month": _this_month(),
        }
    )
    assert "Only the programme team" in sneaky.texts[0]
    still = card_text((await client.say("status alloy")).card)
    assert "Cancelled!" not in still
    assert "Currently in delivery" in still


async def test_cancel_posts_nothing(officer: TeamsClient) -> None:
    await officer.say("post update orchard")
    reply = await officer.submit({"action": "post_update_cancel", "project": "orchard"})
    assert "no update posted" in reply.texts[0]
    assert "Currently in delivery" in card_text((await officer.say("status orchard")).card)


async def test_a_form_started_before_a_restart_is_finished_after_it(
    database_url: str, connector: FakeConnector, http: aiohttp.ClientSession
) -> None:
    from tests.bot.conftest import make_settings
    from tests.support.teams import OFFICER

    first = await BotServer(make_settings(database_url)).start()
    officer = TeamsClient(bot_url=first.url, connector=connector, http=http, user=OFFICER)
    question = await officer.say("status")
    assert "Which project" in question.texts[0]
    await first.stop()

    second = await BotServer(make_settings(database_url)).start()
    try:
        officer.bot_url = second.url
        answer = await officer.say("vaccine champions")
        assert "Vaccine Champions Programme" in card_text(answer.card)
    finally:
        await second.stop()

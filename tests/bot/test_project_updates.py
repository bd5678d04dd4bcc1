"""Programme officers post monthly updates from the project card; everyone sees them."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp

from tests.bot.conftest import BotServer, make_settings
from tests.support.connector import FakeConnector
from tests.support.teams import OFFICER, TeamsClient, card_nodes, card_text, new_conversation_id


def _this_month() -> str:
    """The month the bot counts as current: in its TIMEZONE, not the test machine's."""
    return datetime.now(ZoneInfo("Europe/London")).strftime("%Y-%m")


def _input(card: dict, input_id: str) -> dict:
    return next(
        node
        for node in card_nodes(card)
        if node.get("id") == input_id and str(node.get("type", "")).startswith("Input.")
    )


async def test_officer_sees_post_update_and_posts_one(
    officer: TeamsClient, client: TeamsClient
) -> None:
    card = (await officer.say("status city portrait")).card
    form = (await officer.press(card, "Post update")).card
    assert "City Portrait" in card_text(form)

    text = "Funding approved; procurement route agreed with the partner."
    submitted = await officer.press(form, "Post update", text=text, rag="amber")
    confirmation = card_text(submitted.card)
    assert "Update posted" in confirmation
    assert text in confirmation

    # Everyone sees it, with the earlier months kept as history.
    seen = card_text((await client.say("status city portrait")).card)
    assert text in seen
    assert "Amber" in seen
    assert "June 2022" in seen, "June's update is kept in the history"


async def test_pressing_post_twice_posts_once(officer: TeamsClient, client: TeamsClient) -> None:
    form = (await officer.say("post update heating and health")).card
    text = "Pilot services chosen for the first wave of digital forms."
    first = await officer.press(form, "Post update", text=text, rag="green")
    second = await officer.press(form, "Post update", text=text, rag="green")
    assert "Update posted" in card_text(first.card)
    assert "already posted" in card_text(second.card)
    seen = card_text((await client.say("status heating and health")).card)
    assert seen.count(text) == 1, "the update is stored once, not twice"


async def test_a_second_form_posts_a_second_update(officer: TeamsClient) -> None:
    """The one-off id belongs to a form: a new form for the same project is a new update."""
    first = (await officer.say("post update city portrait")).card
    await officer.press(first, "Post update", text="First of two updates.", rag="green")
    second = (await officer.say("post update city portrait")).card
    reply = await officer.press(second, "Post update", text="Second of two updates.", rag="green")
    seen = card_text(reply.card)
    assert "Update posted" in seen and "Second of two updates." in seen


async def test_post_update_button_only_in_a_personal_chat(
    bot_server: BotServer, connector: FakeConnector, http: aiohttp.ClientSession
) -> None:
    """A card in a channel is seen by everyone, so it carries no officer-only button."""
    channel = TeamsClient(
        bot_url=bot_server.url,
        connector=connector,
        http=http,
        user=OFFICER,
        conversation_id=new_conversation_id("channel"),
        conversation_type="channel",
    )
    card = (await channel.say("status alloy")).card
    assert "Post update" not in [a["title"] for a in card_nodes(card) if "title" in a]
    assert "Currently in delivery" in card_text(card)


async def test_invalid_form_is_shown_again_with_reasons_and_entries_kept(
    officer: TeamsClient,
) -> None:
    form = (await officer.submit({"action": "post_update", "project": "data-strategy"})).card
    typed = "Draft strategy shared with the Design Authority."
    again = (
        await officer.press(form, "Post update", text=typed, rag="purple", month="2099-01")
    ).card
    text = card_text(again)
    assert "RAG" in text
    assert "future" in text
    assert _input(again, "text")["value"] == typed, "the officer's words are kept"

    empty = (
        await officer.press(again, "Post update", text="   ", rag="green", month=_this_month())
    ).card
    assert "can't be empty" in card_text(empty)
    assert _input(empty, "rag")["value"] == "green"

    done = await officer.press(empty, "Post update", text=typed)
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
    form = (await officer.say("post update orchard")).card
    reply = await officer.press(form, "Cancel", text="Not this one.")
    assert "no update posted" in reply.texts[0]
    assert "Currently in delivery" in card_text((await officer.say("status orchard")).card)


async def test_questions_and_forms_started_before_a_restart_are_finished_after_it(
    database_url: str, connector: FakeConnector, http: aiohttp.ClientSession
) -> None:
    """Dialog state lives in SQL: another process (a restart, another replica) carries on."""
    first = await BotServer(make_settings(database_url)).start()
    asker = TeamsClient(bot_url=first.url, connector=connector, http=http, user=OFFICER)
    poster = TeamsClient(bot_url=first.url, connector=connector, http=http, user=OFFICER)
    question = await asker.say("status")
    assert "Which project" in question.texts[0]
    form = (await poster.say("post update vaccine champions")).card
    text = "Champions recruited in every ward; briefings continue."
    refused = (await poster.press(form, "Post update", text=text, rag="")).card
    assert "Choose a RAG status" in card_text(refused)
    await first.stop()

    second = await BotServer(make_settings(database_url)).start()
    try:
        asker.bot_url = poster.bot_url = second.url
        answer = await asker.say("vaccine champions")
        assert "Vaccine Champions Programme" in card_text(answer.card)
        posted = await poster.press(refused, "Post update", rag="amber")
        assert "Update posted" in card_text(posted.card)
        assert text in card_text(posted.card)
        again = await poster.press(refused, "Post update", rag="amber")
        assert "already posted" in card_text(again.card)
    finally:
        await second.stop()


async def test_a_form_pressed_while_a_question_waits_drops_the_question(
    officer: TeamsClient,
) -> None:
    form = (await officer.say("post update early opportunities")).card
    assert "Which project" in (await officer.say("status")).texts[0]
    posted = await officer.press(form, "Post update", text="Closing report agreed.", rag="green")
    assert "Update posted" in card_text(posted.card)
    after = await officer.say("orchard")
    assert "didn't understand" in card_text(after.card), "the old question no longer waits"

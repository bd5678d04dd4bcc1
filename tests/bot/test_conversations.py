"""Council officers talking to the bot in Teams, over HTTP, with replies read at the connector."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tests.support.teams import TeamsClient, card_text

JUNE_PROJECTS = [
    "Shared Vision for Cambridge",
    "Financial Baselining",
    "Planning Transformation",
    "Organisational Design",
    "Making it Real",
    "Partnership By Default",
    "Community Wealth Building",
    "Community Engagement Working Group",
    "Place Based Social Impact",
    "City Portrait",
    "Vaccine Champions Programme",
    "Heating and Health",
    "Office Accommodation",
    "Tascomi",
    "Alloy",
    "Orchard",
    "Early Opportunities",
    "Website and Portals Review",
    "Data Strategy",
    "Robotic Process Automation",
]


def _labelled(card: dict, label: str) -> str:
    """The text shown under a small label in a card (the value beside "Latest status")."""

    def walk(node: Any) -> str | None:
        if isinstance(node, dict):
            items = node.get("items")
            if isinstance(items, list) and len(items) >= 2 and items[0].get("text") == label:
                return str(items[1].get("text"))
            return next((found for v in node.values() if (found := walk(v))), None)
        if isinstance(node, list):
            return next((found for v in node if (found := walk(v))), None)
        return None

    found = walk(card)
    assert found is not None, f"no {label!r} in the card"
    return found


def _title(card: dict) -> str:
    return next(b["text"] for b in card["body"] if b.get("type") == "TextBlock")


async def test_install_personally_sends_the_welcome_card(client: TeamsClient) -> None:
    reply = await client.install()
    assert reply.status in (200, 201)
    assert "Welcome to Our Cambridge" in card_text(reply.card)


async def test_install_in_a_team_sends_the_welcome_card(client: TeamsClient) -> None:
    client.conversation_type = "channel"
    reply = await client.install()
    text = card_text(reply.card)
    assert "Welcome to Our Cambridge" in text
    assert "@" in text  # tells the team to mention the bot


async def test_help_lists_commands_with_buttons(client: TeamsClient) -> None:
    reply = await client.say("help")
    text = card_text(reply.card)
    for command in ("status", "projects", "programme"):
        assert command in text
    assert reply.card.get("actions"), "help has buttons"


async def test_status_alloy_shows_junes_status(client: TeamsClient) -> None:
    reply = await client.say("status alloy")
    card = reply.card
    text = card_text(card)
    assert "Alloy" in text
    assert "Transforming Delivery" in text
    assert _labelled(card, "Latest status") == "June 2022", "June is the newest of four months"
    assert "Currently in delivery" in text
    assert "Show earlier updates (3)" in text, "March, April and May are kept as history"
    assert "Sign-off of business cases" in text, "April's update is in the history"
    assert "Post update" not in text, "staff do not see the officers' button"


async def test_status_finds_misspellings_and_aliases(client: TeamsClient) -> None:
    for query, expected in [
        ("tascommi", "Tascomi"),
        ("org design", "Organisational Design"),
        ("website", "Website and Portals Review"),
        ("ALLOY", "Alloy"),
        ("mir", "Making it Real"),
    ]:
        reply = await client.say(f"status {query}")
        assert expected in card_text(reply.card), query
        assert "Which project did you mean" not in card_text(reply.card), query


async def test_two_close_matches_ask_which(client: TeamsClient) -> None:
    reply = await client.say("status community")
    text = card_text(reply.card)
    assert "Which project did you mean" in text
    assert "Community Wealth Building" in text
    assert "Community Engagement Working Group" in text


async def test_no_match_says_so_and_offers_the_nearest_and_all(client: TeamsClient) -> None:
    reply = await client.say("status xylophone quartet")
    text = card_text(reply.card)
    assert 'couldn\'t find a project called "xylophone quartet"' in text
    titles = [a["title"] for a in reply.card["actions"]]
    assert len(titles) == 4 and titles[-1] == "All projects", titles
    assert set(titles[:3]) <= set(JUNE_PROJECTS)


async def test_a_near_miss_suggests_the_project(client: TeamsClient) -> None:
    reply = await client.say("status orchestra")
    text = card_text(reply.card)
    assert "Did you mean" in text
    assert "Orchard" in [a["title"] for a in reply.card["actions"]]


async def test_projects_lists_every_june_project(client: TeamsClient) -> None:
    reply = await client.say("projects")
    text = card_text(reply.card)
    for name in JUNE_PROJECTS:
        assert name in text, name
    for workstream in (
        "Programme level",
        "Organisational Change",
        "Partnerships and Communities",
        "Transforming Delivery",
        "Planning Transformation",
    ):
        assert workstream in text


async def test_projects_of_one_workstream(client: TeamsClient) -> None:
    reply = await client.say("projects transforming delivery")
    text = card_text(reply.card)
    assert "Alloy" in text and "Tascomi" in text
    assert "City Portrait" not in text


async def test_unknown_workstream_names_the_real_ones(client: TeamsClient) -> None:
    reply = await client.say("projects underwater basket weaving")
    assert "Transforming Delivery" in reply.texts[0]


async def test_programme_overview(client: TeamsClient) -> None:
    reply = await client.say("programme")
    text = card_text(reply.card)
    # The reporting month is the newest update's: June 2022 as seeded, or this month once a
    # test has posted one (the database is shared by the session's tests).
    this_month = datetime.now(ZoneInfo("Europe/London")).strftime("%B %Y")
    assert "June 2022" in text or this_month in text
    assert "Transforming Delivery" in text
    assert re.search(r"\b20\b", text), "20 projects in all"


async def test_unknown_text_gets_closest_commands_as_buttons(client: TeamsClient) -> None:
    reply = await client.say("statsu alloy")
    card = reply.card
    assert "didn't understand" in card_text(card)
    commands = [a["data"]["command"] for a in card["actions"] if "command" in a.get("data", {})]
    assert commands[0] == "status alloy", "the misspelt command, with what followed it"


async def test_button_command_without_text_is_understood(client: TeamsClient) -> None:
    reply = await client.submit({"command": "status orchard"})
    assert "Orchard" in card_text(reply.card)


async def test_channel_message_without_mention_is_ignored(client: TeamsClient) -> None:
    client.conversation_type = "channel"
    reply = await client.post(client.activity(text="status alloy"))
    assert reply.status == 201
    assert reply.sent == []


async def test_channel_message_with_mention_is_answered(client: TeamsClient) -> None:
    client.conversation_type = "channel"
    reply = await client.say("status alloy")
    assert "Currently in delivery" in card_text(reply.card)


async def test_status_without_a_name_asks_then_answers(client: TeamsClient) -> None:
    question = await client.say("status")
    assert "Which project" in question.texts[0]
    answer = await client.say("orchard")
    assert "Orchard" in card_text(answer.card)


async def test_a_command_replaces_an_unanswered_question(client: TeamsClient) -> None:
    await client.say("status")
    reply = await client.say("help")
    assert "status" in card_text(reply.card)
    after = await client.say("orchard")
    assert "didn't understand" in card_text(after.card)


async def test_compose_box_search_returns_orchard(client: TeamsClient) -> None:
    reply = await client.invoke(
        "composeExtension/query",
        {
            "commandId": "searchProjects",
            "parameters": [{"name": "searchText", "value": "orch"}],
            "queryOptions": {"skip": 0, "count": 25},
        },
    )
    assert reply.status == 200
    result = reply.body["composeExtension"]
    assert result["type"] == "result"
    titles = [a["preview"]["content"]["title"] for a in result["attachments"]]
    assert titles[0] == "Orchard"
    assert result["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert "Currently in delivery" in card_text(result["attachments"][0]["content"])


async def test_compose_box_initial_run_lists_projects(client: TeamsClient) -> None:
    reply = await client.invoke(
        "composeExtension/query",
        {"commandId": "searchProjects", "parameters": [{"name": "initialRun", "value": "true"}]},
    )
    assert reply.status == 200
    assert len(reply.body["composeExtension"]["attachments"]) == 10


async def test_card_button_in_a_channel_is_answered_without_mention(client: TeamsClient) -> None:
    client.conversation_type = "channel"
    reply = await client.post(client.activity(value={"command": "status alloy"}))
    assert "Currently in delivery" in card_text(reply.card)


async def test_compose_box_search_whatever_the_parameter_is_called(client: TeamsClient) -> None:
    reply = await client.invoke(
        "composeExtension/query",
        {"commandId": "", "parameters": [{"name": "query", "value": "tascomi"}]},
    )
    attachments = reply.body["composeExtension"]["attachments"]
    assert [a["preview"]["content"]["title"] for a in attachments] == ["Tascomi"]

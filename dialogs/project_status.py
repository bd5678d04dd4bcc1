"""`status <project>`: find the project meant and show its card, or ask which one."""

from __future__ import annotations

from collections.abc import Callable

from botbuilder.core import MessageFactory, TurnContext
from botbuilder.dialogs import (
    ComponentDialog,
    DialogTurnResult,
    PromptOptions,
    TextPrompt,
    WaterfallDialog,
    WaterfallStepContext,
)
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from dialogs.common import send_card
from storage import programme

CanPostUpdate = Callable[[TurnContext], bool]


async def show_project_status(
    turn_context: TurnContext,
    *,
    sessions: async_sessionmaker[AsyncSession],
    query: str,
    can_post_update: bool,
) -> None:
    # Read, then reply with the database connection given back: a reply can take as long
    # as Teams takes to answer, and turns holding connections that long would queue on the
    # pool.
    async with sessions() as session:
        match = await programme.find_project(session, query=query)
        if len(match.found) == 1:
            project = await programme.get_project(session, slug=match.found[0])
        elif match.found:
            candidates = await programme.get_projects(session, slugs=match.found)
    if len(match.found) == 1:
        await send_card(
            turn_context, "project", project=project, can_post_update=can_post_update, notice=None
        )
    elif match.found:
        await send_card(turn_context, "project_choice", query=query, candidates=candidates)
    else:
        await send_card(
            turn_context, "project_not_found", query=query, suggestions=list(match.suggestions)
        )


class ProjectStatusDialog(ComponentDialog):
    """`status` with no project named: ask which one, then show it.

    Its state lives in SQL, so the answer is understood even if the bot restarted (or another
    replica took the turn) between the question and the answer.
    """

    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], can_post_update: CanPostUpdate
    ):
        super().__init__(ProjectStatusDialog.__name__)
        self._sessions = sessions
        self._can_post_update = can_post_update
        self.add_dialog(TextPrompt("project_name"))
        self.add_dialog(WaterfallDialog("ask_then_show", [self._ask, self._show]))
        self.initial_dialog_id = "ask_then_show"

    async def _ask(self, step: WaterfallStepContext) -> DialogTurnResult:
        return await step.prompt(
            "project_name",
            PromptOptions(
                prompt=MessageFactory.text(
                    "Which project would you like the status of? "
                    "Type its name (for example Alloy or Website), or **cancel**."
                )
            ),
        )

    async def _show(self, step: WaterfallStepContext) -> DialogTurnResult:
        await show_project_status(
            step.context,
            sessions=self._sessions,
            query=str(step.result or ""),
            can_post_update=self._can_post_update(step.context),
        )
        return await step.end_dialog()

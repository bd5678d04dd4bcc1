"""Programme officers post a project's monthly update from a card form."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from typing import Any

from botbuilder.core import MessageFactory, TurnContext
from botbuilder.dialogs import Dialog, DialogContext, DialogTurnResult
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from dialogs.common import send_card, submitted_values
from storage import programme
from storage.db import transaction
from storage.views import ProjectView

logger = logging.getLogger(__name__)

SUBMIT = "post_update_submit"
CANCEL = "post_update_cancel"
REFUSED_TEXT = (
    "Only the programme team can post project updates. "
    "If you think you should be able to, ask the transformation team to add you."
)


class PostUpdateDialog(Dialog):
    """Shows the form, re-shows it with the reasons and the entries kept until it is valid,
    then stores a new update. Whether the caller may post is checked on the server at the
    start and again at every submission, never taken from the card."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        is_admin: Callable[[TurnContext], bool],
        today: Callable[[], date],
    ):
        super().__init__(PostUpdateDialog.__name__)
        self._sessions = sessions
        self._is_admin = is_admin
        self._today = today

    async def begin_dialog(
        self, dialog_context: DialogContext, options: object = None
    ) -> DialogTurnResult:
        opts: dict[str, Any] = options if isinstance(options, dict) else {}
        if not self._is_admin(dialog_context.context):
            return await self._refuse(dialog_context)
        dialog_context.active_dialog.state["project"] = str(opts.get("project") or "")
        submission = opts.get("submission")
        if isinstance(submission, dict):
            # A form submitted with no dialog waiting for it (an old card, state cleared):
            # handle it as if the dialog had been waiting, so the entries are not lost.
            return await self._on_submission(dialog_context, submission)
        project = await self._load(dialog_context)
        if project is None:
            return await dialog_context.end_dialog()
        months = programme.recent_months(self._today())
        await self._send_form(
            dialog_context.context,
            project,
            values={"text": "", "rag": project.rag or "", "month": months[0].strftime("%Y-%m")},
            errors=[],
        )
        return Dialog.end_of_turn

    async def continue_dialog(self, dialog_context: DialogContext) -> DialogTurnResult:
        values = submitted_values(dialog_context.context)
        if values.get("action") == CANCEL:
            await dialog_context.context.send_activity("OK, no update posted.")
            return await dialog_context.end_dialog()
        if values.get("action") == SUBMIT:
            return await self._on_submission(dialog_context, values)
        await dialog_context.context.send_activity(
            MessageFactory.text(
                "Fill in the update form above and press **Post update**, or type **cancel**."
            )
        )
        return Dialog.end_of_turn

    async def _on_submission(
        self, dialog_context: DialogContext, values: dict[str, Any]
    ) -> DialogTurnResult:
        if not self._is_admin(dialog_context.context):
            return await self._refuse(dialog_context)
        state = dialog_context.active_dialog.state
        # The card names its project; prefer it, so a form from an older card updates the
        # project it was shown for.
        if isinstance(values.get("project"), str) and values["project"]:
            state["project"] = values["project"]
        project = await self._load(dialog_context)
        if project is None:
            return await dialog_context.end_dialog()
        submission, entries, errors = programme.check_update_form(values, today=self._today())
        if submission is None:
            state["attempts"] = int(state.get("attempts", 0)) + 1
            await self._send_form(dialog_context.context, project, values=entries, errors=errors)
            return Dialog.end_of_turn
        author = dialog_context.context.activity.from_property
        async with transaction(self._sessions) as session:
            updated = await programme.add_update(
                session,
                slug=project.slug,
                month=submission.month,
                text=submission.text,
                rag=submission.rag,
                author=(author.name if author and author.name else "Programme team"),
                author_aad_id=author.aad_object_id if author else None,
            )
        logger.info("Update posted for project %s", project.slug)
        await send_card(
            dialog_context.context,
            "project",
            project=updated,
            can_post_update=True,
            notice=f"Update posted for {submission.month:%B %Y}.",
        )
        return await dialog_context.end_dialog()

    async def _load(self, dialog_context: DialogContext) -> ProjectView | None:
        slug = dialog_context.active_dialog.state.get("project", "")
        async with self._sessions() as session:
            try:
                return await programme.get_project(session, slug=slug)
            except programme.ProjectNotFound:
                await dialog_context.context.send_activity(
                    "I can't find that project any more. Type **projects** to see them all."
                )
                return None

    async def _send_form(
        self,
        turn_context: TurnContext,
        project: ProjectView,
        *,
        values: dict[str, str],
        errors: list[str],
    ) -> None:
        months = [
            (m.strftime("%Y-%m"), f"{m:%B %Y}") for m in programme.recent_months(self._today())
        ]
        await send_card(
            turn_context,
            "update_form",
            project=project,
            values=values,
            errors=errors,
            months=months,
        )

    async def _refuse(self, dialog_context: DialogContext) -> DialogTurnResult:
        activity = dialog_context.context.activity
        logger.warning(
            "Refused a project update from a non-admin (aad id %s)",
            activity.from_property.aad_object_id if activity.from_property else None,
        )
        await dialog_context.context.send_activity(MessageFactory.text(REFUSED_TEXT))
        return await dialog_context.end_dialog()

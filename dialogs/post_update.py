"""Programme officers post a project's monthly update from a card form."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from typing import Any

from botbuilder.core import MessageFactory, TurnContext
from botbuilder.dialogs import Dialog, DialogContext, DialogTurnResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from dialogs.common import is_personal_chat, send_card, submitted_values
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
        dialog_context.active_dialog.state["form"] = programme.new_form_id()
        months = programme.recent_months(self._today())
        await self._send_form(
            dialog_context.context,
            project,
            values={"text": "", "rag": project.rag or "", "month": months[0].strftime("%Y-%m")},
            errors=[],
            form_id=dialog_context.active_dialog.state["form"],
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
        # The update is stored under the form's one-off id, so pressing Post twice (or a
        # second press after the first one's reply) posts it once. A form shown again with
        # its errors keeps its id.
        card_form = values.get("form")
        state["form"] = (
            card_form if programme.form_source(card_form) else state.get("form")
        ) or programme.new_form_id()
        source = programme.form_source(state["form"]) or ""
        submission, entries, errors = programme.check_update_form(values, today=self._today())
        if submission is None:
            state["attempts"] = int(state.get("attempts", 0)) + 1
            await self._send_form(
                dialog_context.context,
                project,
                values=entries,
                errors=errors,
                form_id=state["form"],
            )
            return Dialog.end_of_turn
        author = dialog_context.context.activity.from_property
        try:
            async with transaction(self._sessions) as session:
                posted = await programme.add_update(
                    session,
                    slug=project.slug,
                    month=submission.month,
                    text=submission.text,
                    rag=submission.rag,
                    author=(author.name if author and author.name else "Programme team"),
                    author_aad_id=author.aad_object_id if author else None,
                    source=source,
                )
        except IntegrityError:
            # The same form's submission was stored by a concurrent turn (another replica).
            async with self._sessions() as session:
                current = await programme.get_project(session, slug=project.slug)
            posted = programme.PostedUpdate(project=current, created=False)
        if posted.created:
            logger.info("Update posted for project %s", project.slug)
            notice = f"Update posted for {submission.month:%B %Y}."
        else:
            logger.info("Ignored a repeated submission of an update form for %s", project.slug)
            notice = "This update was already posted; it is shown below."
        await send_card(
            dialog_context.context,
            "project",
            project=posted.project,
            can_post_update=is_personal_chat(dialog_context.context),
            notice=notice,
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
        form_id: str,
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
            form_id=form_id,
        )

    async def _refuse(self, dialog_context: DialogContext) -> DialogTurnResult:
        activity = dialog_context.context.activity
        logger.warning("Refused a project update from someone not in ADMIN_AAD_IDS")
        # Who it was is personal data: only at DEBUG, for an administrator checking the list.
        logger.debug(
            "Refused aad id: %s",
            activity.from_property.aad_object_id if activity.from_property else None,
        )
        await dialog_context.context.send_activity(MessageFactory.text(REFUSED_TEXT))
        return await dialog_context.end_dialog()

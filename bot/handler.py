"""The Teams activity handler: who may talk, what they asked for, which dialog answers."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import date, datetime
from http import HTTPStatus
from typing import Any

from botbuilder.core import (
    BotAdapter,
    CardFactory,
    ConversationState,
    InvokeResponse,
    MessageFactory,
    TurnContext,
)
from botbuilder.core.teams import TeamsActivityHandler
from botbuilder.dialogs import DialogContext, DialogSet, DialogTurnStatus
from botbuilder.schema import (
    Activity,
    ActivityTypes,
    AdaptiveCardInvokeResponse,
    AdaptiveCardInvokeValue,
    ChannelAccount,
    ThumbnailCard,
)
from botbuilder.schema.teams import (
    MessagingExtensionAttachment,
    MessagingExtensionQuery,
    MessagingExtensionResponse,
    MessagingExtensionResult,
)
from msrest.exceptions import DeserializationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.commands import Command, closest_commands, parse
from bot.config import Settings
from bot.graph import (
    AppNotInCatalogue,
    GraphClient,
    GraphError,
    GraphPermissionMissing,
    InstallReport,
    department_lookup,
    install_for_change_makers,
)
from bot.identity import IdentityError
from bot.logs import identifier, note_command
from bot.teams_people import (
    identify_caller,
    remember_channel,
    remember_channels,
    send_privately,
    team_and_channel,
    team_channel_ids,
    teams_tenant_id,
)
from cards import render_card
from dialogs import digest as digest_dialogs
from dialogs import ideas as ideas_dialogs
from dialogs import making_it_real
from dialogs.common import (
    Caller,
    is_personal_chat,
    reply_privately,
    send_card,
    submitted_values,
)
from dialogs.digest import DigestSubscriptions
from dialogs.ideas import Ideas
from dialogs.making_it_real import MakingItReal, MirTexts
from dialogs.post_update import CANCEL, SUBMIT, PostUpdateDialog
from dialogs.project_status import ProjectStatusDialog, show_project_status
from storage import activities, outbox, people, programme, subscriptions
from storage.db import transaction
from storage.models import utcnow

logger = logging.getLogger(__name__)

SEARCH_RESULTS = 10
GRAPH_OFF_TEXT = "Microsoft Graph is not set up for this bot (see docs/deploy.md)."
# turn_state key of the identified Caller of this turn.
CALLER = "ourcambridge.caller"


class OurCambridgeBot(TeamsActivityHandler):
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        conversation_state: ConversationState,
        adapter: BotAdapter,
        outbox_changed: Callable[[], None] = lambda: None,
        graph: GraphClient | None = None,
    ):
        self._settings = settings
        self._sessions = sessions
        self._conversation_state = conversation_state
        self._adapter = adapter
        self._graph = graph
        self._outbox_changed = outbox_changed
        # The `install app` run of this process, if one is going (a reference keeps the
        # task from being garbage-collected while it runs).
        self._installing: asyncio.Task[None] | None = None
        department_of = department_lookup(graph)
        self._ideas = Ideas(
            sessions=sessions,
            today=self._today,
            outbox_changed=outbox_changed,
            remember_channel=lambda context: remember_channel(context, sessions=sessions),
            send_privately=self._send_privately,
            department_of=department_of,
        )
        self._mir = MakingItReal(
            sessions=sessions,
            today=self._today,
            send_privately=self._send_privately,
            outbox_changed=outbox_changed,
            texts=MirTexts(contact=settings.mir_contact),
            department_of=department_of,
        )
        self._digest = DigestSubscriptions(
            sessions=sessions,
            remember_channel=lambda context: remember_channel(context, sessions=sessions),
            send_privately=self._send_privately,
            zone_name=settings.timezone,
        )
        self._dialogs = DialogSet(conversation_state.create_property("DialogState"))
        self._dialogs.add(
            ProjectStatusDialog(sessions=sessions, can_post_update=self.can_post_updates_here)
        )
        self._dialogs.add(
            PostUpdateDialog(sessions=sessions, is_admin=self.is_admin, today=self._today)
        )

    def is_admin(self, turn_context: TurnContext) -> bool:
        """ADMIN_AAD_IDS, or the roster's admin role (known once the caller is identified)."""
        caller = turn_context.turn_state.get(CALLER)
        if isinstance(caller, Caller):
            return caller.is_admin
        sender = turn_context.activity.from_property
        return self._settings.is_admin(sender.aad_object_id if sender else None)

    def can_post_updates_here(self, turn_context: TurnContext) -> bool:
        """Officer-only buttons go on cards in a 1:1 chat only: a channel's cards are seen
        (and pressed) by everyone. The server checks the role again when one is pressed."""
        return self.is_admin(turn_context) and is_personal_chat(turn_context)

    def _today(self) -> date:
        return datetime.now(self._settings.zone).date()

    # --- the turn -------------------------------------------------------------------

    async def on_turn(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        if not self._settings.is_tenant_allowed(teams_tenant_id(activity)):
            # Answer nothing and store nothing for a tenant that is not ours.
            logger.warning("Ignored a %s activity from a tenant not allowed", activity.type)
            return
        claim = await self._claim(activity)
        if claim is False:
            logger.info("Ignored a repeated delivery of activity %s", activity.id)
            return
        try:
            await super().on_turn(turn_context)
            await self._conversation_state.save_changes(turn_context)
        except Exception:
            if claim:
                await self._release(activity)
            raise

    async def _claim(self, activity: Activity) -> bool | None:
        """True: first delivery; False: a repeat; None: an activity not deduplicated.

        Invokes are answered synchronously and carry their result in the HTTP response,
        so they are not claimed.
        """
        if activity.type == ActivityTypes.invoke or not activity.id:
            return None
        async with transaction(self._sessions) as session:
            return await activities.claim_activity(session, key=self._activity_key(activity))

    async def _release(self, activity: Activity) -> None:
        try:
            async with transaction(self._sessions) as session:
                await activities.release_activity(session, key=self._activity_key(activity))
        except Exception:
            logger.warning("Could not release the claim on a failed activity", exc_info=True)

    @staticmethod
    def _activity_key(activity: Activity) -> str:
        return activities.activity_key(
            channel_id=activity.channel_id or "",
            conversation_id=activity.conversation.id,
            activity_id=activity.id or "",
        )

    # --- messages -------------------------------------------------------------------

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        values = submitted_values(turn_context)
        # In a channel the bot answers when @mentioned, or when one of its own cards' buttons
        # was pressed (those carry a value and no mention).
        if self._in_channel(activity) and not (values or self._mentions_me(activity)):
            return
        caller = await self._identify(turn_context)
        await self._remember_conversation(turn_context, caller)
        if isinstance(values.get("action"), str):
            # The Making It Real, ideas and digest forms keep no dialog state (their cards
            # carry it), so these turns neither read nor save any: a press racing another
            # turn of the chat cannot overwrite that turn's dialog.
            if values["action"] in making_it_real.ACTIONS and caller is not None:
                await self._mir.on_action(turn_context, caller, values)
                return
            if values["action"] in ideas_dialogs.ACTIONS and caller is not None:
                await self._ideas.on_action(turn_context, caller, values)
                return
            if values["action"] in digest_dialogs.ACTIONS:
                await self._digest.on_action(turn_context, caller, values)
                return
            await self._on_card_action(await self._dialogs.create_context(turn_context), values)
            return
        dialog_context = await self._dialogs.create_context(turn_context)
        text = TurnContext.remove_recipient_mention(activity) if activity.text else ""
        if not (text or "").strip() and isinstance(values.get("command"), str):
            text = values["command"]
        command = parse(text or "")
        note_command(command.name)
        await self._on_text(dialog_context, command)

    async def _on_text(self, dialog_context: DialogContext, command: Command) -> None:
        turn_context = dialog_context.context
        if command.name == "cancel":
            had_dialog = dialog_context.active_dialog is not None
            await dialog_context.cancel_all_dialogs()
            await turn_context.send_activity(
                "Cancelled." if had_dialog else "There was nothing to cancel."
            )
            return
        if command.name == "unknown" and dialog_context.active_dialog is not None:
            result = await dialog_context.continue_dialog()
            if result.status != DialogTurnStatus.Empty:
                return
        if command.name != "unknown":
            # A new command takes over from a question left unanswered.
            await dialog_context.cancel_all_dialogs()
        await self._run_command(dialog_context, command)

    async def _run_command(self, dialog_context: DialogContext, command: Command) -> None:
        turn_context = dialog_context.context
        is_admin = self.is_admin(turn_context)
        if command.name == "help":
            await send_card(
                turn_context,
                "help",
                is_admin=is_admin,
                in_channel=self._in_channel(turn_context.activity),
            )
        elif command.name == "status" and command.argument:
            await show_project_status(
                turn_context,
                sessions=self._sessions,
                query=command.argument,
                can_post_update=self.can_post_updates_here(turn_context),
            )
        elif command.name == "status":
            await dialog_context.begin_dialog(ProjectStatusDialog.__name__)
        elif command.name == "projects":
            await self._send_projects(turn_context, command.argument)
        elif command.name == "programme":
            await self._send_programme(turn_context)
        elif command.name == "post update":
            await self._begin_post_update(dialog_context, command.argument)
        elif command.name in making_it_real.COMMANDS:
            caller = turn_context.turn_state.get(CALLER)
            if isinstance(caller, Caller):
                await self._mir.on_command(turn_context, caller, command.name)
        elif command.name in ideas_dialogs.COMMANDS:
            caller = turn_context.turn_state.get(CALLER)
            if isinstance(caller, Caller):
                await self._ideas.on_command(turn_context, caller, command.name, command.argument)
        elif command.name in digest_dialogs.COMMANDS:
            caller = turn_context.turn_state.get(CALLER)
            await self._digest.on_command(
                turn_context, caller if isinstance(caller, Caller) else None, command.name
            )
        elif command.name == "install app":
            await self._install_app(turn_context)
        elif not command.text:
            await send_card(turn_context, "help", is_admin=is_admin, in_channel=False)
        else:
            await send_card(
                turn_context,
                "unknown_command",
                text=command.text,
                suggestions=closest_commands(command.text),
            )

    async def _on_card_action(self, dialog_context: DialogContext, values: dict[str, Any]) -> None:
        action = values["action"]
        if action == "post_update":
            await dialog_context.cancel_all_dialogs()
            await dialog_context.begin_dialog(
                PostUpdateDialog.__name__, {"project": str(values.get("project") or "")}
            )
        elif action in (SUBMIT, CANCEL):
            active = dialog_context.active_dialog
            if active is not None and active.id == PostUpdateDialog.__name__:
                await dialog_context.continue_dialog()
            elif action == SUBMIT:
                # A form pressed while another question waits: the form wins, and the
                # question is dropped rather than left underneath to catch the next message.
                await dialog_context.cancel_all_dialogs()
                await dialog_context.begin_dialog(
                    PostUpdateDialog.__name__,
                    {"project": str(values.get("project") or ""), "submission": values},
                )
            else:
                await dialog_context.context.send_activity("OK, no update posted.")
        else:
            logger.info("Unknown card action %r", identifier(action))
            await dialog_context.context.send_activity(
                MessageFactory.text(
                    "That button belongs to an older version of this card. "
                    "Type **help** to see what I can do now."
                )
            )

    async def _begin_post_update(self, dialog_context: DialogContext, query: str) -> None:
        turn_context = dialog_context.context
        if not query:
            await turn_context.send_activity(
                "Which project? Type **post update** and the project's name, for example "
                "**post update alloy**, or use the **Post update** button on a project card."
            )
            return
        async with self._sessions() as session:
            match = await programme.find_project(session, query=query)
        if len(match.found) == 1:
            await dialog_context.begin_dialog(
                PostUpdateDialog.__name__, {"project": match.found[0]}
            )
        else:
            await show_project_status(
                turn_context,
                sessions=self._sessions,
                query=query,
                can_post_update=self.can_post_updates_here(turn_context),
            )

    async def _install_app(self, turn_context: TurnContext) -> None:
        """`install app` (admins): install the Teams app for the roster's Change Makers the
        bot cannot reach yet, through Microsoft Graph. That can take minutes for a large
        roster, far longer than Teams waits for a turn: the admin is answered at once, the
        installs run in the background, and the counts reach the admin's 1:1 chat through
        the outbox."""
        caller = turn_context.turn_state.get(CALLER)
        if not isinstance(caller, Caller) or not self.is_admin(turn_context):
            logger.warning("Refused install app from someone not on the team")
            await turn_context.send_activity(
                "Only the transformation team can install the app for Change Makers."
            )
            return
        started: asyncio.Event | None = None
        if self._graph is None:
            answer = GRAPH_OFF_TEXT
        elif self._installing is not None and not self._installing.done():
            answer = (
                "I'm already installing the app for Change Makers; I'll message you the "
                "result when it's done."
            )
        else:
            async with self._sessions() as session:
                waiting = len(await people.change_makers_without_chat(session))
            if not waiting:
                answer = InstallReport().summary()
            else:
                answer = (
                    f"Installing the app for {waiting} Change Maker"
                    f"{'' if waiting == 1 else 's'} the bot cannot reach yet; I'll message "
                    "you the result."
                )
                # Started now, so a second `install app` meanwhile finds it running; it
                # waits for this answer, so the result comes after it.
                started = asyncio.Event()
                tenant_id = self._settings.microsoft_app_tenant_id or teams_tenant_id(
                    turn_context.activity
                )
                self._installing = asyncio.create_task(
                    self._install_in_background(self._graph, caller, tenant_id, started),
                    name="install-app",
                )
        try:
            await reply_privately(
                turn_context,
                caller,
                MessageFactory.text(answer),
                self._send_privately,
                ask_there="type **install app** there",
            )
        finally:
            if started is not None:
                started.set()

    async def _install_in_background(
        self,
        graph: GraphClient,
        caller: Caller,
        tenant_id: str | None,
        started: asyncio.Event,
    ) -> None:
        """The installs of one `install app`, then their result queued to the admin's 1:1
        chat. Errors are logged, never raised: nobody awaits this task."""
        try:
            await started.wait()
            answer = await self._install_result(graph, tenant_id, caller)
            async with transaction(self._sessions) as session:
                conversation_id = await outbox.personal_conversation_id(
                    session, person_id=caller.person_id
                )
                if conversation_id is not None:
                    await outbox.enqueue(
                        session,
                        dedupe_key=f"install-app:{caller.person_id}:{uuid.uuid4().hex}",
                        conversation_id=conversation_id,
                        payload=MessageFactory.text(answer).serialize(),
                        now=utcnow(),
                    )
            if conversation_id is None:
                logger.warning(
                    "Installed the app for Change Makers, but the admin who asked has no 1:1 "
                    "chat with the bot to be told the result in"
                )
                return
            self._outbox_changed()
        except Exception:
            logger.exception("Installing the app for Change Makers stopped with an error")

    async def _install_result(
        self, graph: GraphClient, tenant_id: str | None, caller: Caller
    ) -> str:
        """What the admin is told once the installs are done."""
        try:
            report = await install_for_change_makers(
                graph,
                self._sessions,
                teams_app_id=self._settings.manifest_app_id,
                tenant_id=tenant_id,
                actor="person",
                actor_id=caller.person_id,
            )
        except (GraphPermissionMissing, AppNotInCatalogue) as error:
            # The council's set-up, not a passing fault: an administrator must act.
            logger.error("Installing the app for Change Makers failed: %s", error)
            return f"I couldn't install the app. {error}"
        except (GraphError, IdentityError) as error:
            logger.warning("Installing the app for Change Makers failed: %s", type(error).__name__)
            return "I couldn't reach Microsoft Graph to install the app. Try again later."
        answer = report.summary()
        if report.installed:
            answer += (
                " Teams lets me know as each installation completes; from then on my "
                "reminders reach them."
            )
        return answer

    async def close(self) -> None:
        """Stop an `install app` still running (the service is shutting down): it is not
        resumed; the admin runs it again, and it picks up whoever is still unreachable."""
        task, self._installing = self._installing, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _send_projects(self, turn_context: TurnContext, argument: str) -> None:
        async with self._sessions() as session:
            workstreams = await programme.list_workstreams(session)
            month = await programme.reporting_month(session)
        title = "Our Cambridge projects"
        if argument:
            chosen = programme.match_workstream(argument, workstreams)
            if chosen is None:
                names = ", ".join(f"**{ws.name}**" for ws in workstreams)
                await turn_context.send_activity(
                    MessageFactory.text(
                        f'I don\'t know a workstream called "{argument[:100]}". '
                        f"The workstreams are {names}."
                    )
                )
                return
            workstreams, title = [chosen], f"{chosen.name} projects"
        await send_card(
            turn_context,
            "projects",
            title=title,
            workstreams=workstreams,
            month_label=f"{month:%B %Y}" if month else None,
        )

    async def _send_programme(self, turn_context: TurnContext) -> None:
        async with self._sessions() as session:
            workstreams = await programme.list_workstreams(session)
            month = await programme.reporting_month(session)
            principles = await programme.design_principles(session)
        rows = [
            {
                "name": ws.name,
                "board": ws.board,
                "projects": len(ws.projects),
                "updated_this_month": sum(
                    1 for p in ws.projects if p.latest and month and p.latest.month == month
                ),
            }
            for ws in workstreams
        ]
        await send_card(
            turn_context,
            "programme",
            rows=rows,
            total_projects=sum(r["projects"] for r in rows),
            total_updated=sum(r["updated_this_month"] for r in rows),
            month_label=f"{month:%B %Y}" if month else "this month",
            principles=principles,
        )

    # --- installation and membership ------------------------------------------------

    async def on_installation_update_add(self, turn_context: TurnContext) -> None:
        caller = await self._identify(turn_context)
        await self._remember_conversation(turn_context, caller)
        conversation_type = turn_context.activity.conversation.conversation_type or "personal"
        team_id, _ = team_and_channel(turn_context.activity)
        if team_id and conversation_type == "channel":
            await self._remember_team(turn_context, team_id)
        await send_card(
            turn_context,
            "welcome",
            scope="team" if conversation_type == "channel" else conversation_type,
            is_admin=self.is_admin(turn_context),
        )

    async def on_installation_update_remove(self, turn_context: TurnContext) -> None:
        logger.info(
            "The app was removed from a %s conversation", self._conversation_type(turn_context)
        )
        team_id, _ = team_and_channel(turn_context.activity)
        if team_id and self._conversation_type(turn_context) == "channel":
            await self._leave_team(team_id, reason=subscriptions.BOT_REMOVED)
            return
        # The bot can no longer write there: forget it, so reminders stop and the person
        # shows as unreachable (they are back once they open the app again).
        async with transaction(self._sessions) as session:
            await outbox.forget_conversation(
                session, conversation_id=turn_context.activity.conversation.id
            )

    async def on_teams_members_added_dispatch(
        self, members_added: list[ChannelAccount], team_info: Any, turn_context: TurnContext
    ) -> None:
        # Not the SDK's: it looks every added person up in Teams (GET .../members/{id}) and
        # fails the whole turn when one is not found (a person who left again; only
        # ConversationNotFound is forgiven), so the bot's own addition in the same update
        # would be lost. The bot only asks whether it was added itself: the ids suffice.
        await self.on_teams_members_added(list(members_added or []), team_info, turn_context)

    async def on_teams_members_added(
        self, teams_members_added: list[ChannelAccount], team_info: Any, turn_context: TurnContext
    ) -> None:
        if not self._includes_me(turn_context, teams_members_added):
            return
        await self._remember_conversation(turn_context, None)
        team_id = getattr(team_info, "id", None) or team_and_channel(turn_context.activity)[0]
        if team_id:
            await self._remember_team(turn_context, team_id)

    async def on_teams_members_removed(
        self, teams_members_removed: list[Any], team_info: Any, turn_context: TurnContext
    ) -> None:
        if not self._includes_me(turn_context, teams_members_removed):
            return
        team_id = getattr(team_info, "id", None) or team_and_channel(turn_context.activity)[0]
        if team_id:
            logger.info("The bot was removed from a team")
            await self._leave_team(team_id, reason=subscriptions.BOT_REMOVED)
            return
        logger.info("The bot was removed from a %s", self._conversation_type(turn_context))
        async with transaction(self._sessions) as session:
            await outbox.forget_conversation(
                session, conversation_id=turn_context.activity.conversation.id
            )

    async def on_teams_team_deleted(self, team_info: Any, turn_context: TurnContext) -> None:
        await self._on_team_gone(team_info, turn_context)

    async def on_teams_team_hard_deleted(self, team_info: Any, turn_context: TurnContext) -> None:
        await self._on_team_gone(team_info, turn_context)

    async def _on_team_gone(self, team_info: Any, turn_context: TurnContext) -> None:
        team_id = getattr(team_info, "id", None) or team_and_channel(turn_context.activity)[0]
        if team_id:
            logger.info("A team the bot was in was deleted")
            await self._leave_team(team_id, reason=subscriptions.TEAM_DELETED)

    async def on_teams_channel_created(
        self, channel_info: Any, team_info: Any, turn_context: TurnContext
    ) -> None:
        await self._on_channel_back(channel_info, team_info, turn_context)

    async def on_teams_channel_restored(
        self, channel_info: Any, team_info: Any, turn_context: TurnContext
    ) -> None:
        await self._on_channel_back(channel_info, team_info, turn_context)

    async def _on_channel_back(
        self, channel_info: Any, team_info: Any, turn_context: TurnContext
    ) -> None:
        """A new (or restored) channel in a team the bot is in: the bot can post there."""
        team_id, channel_id = team_and_channel(turn_context.activity)
        channel_id = getattr(channel_info, "id", None) or channel_id
        if not channel_id:
            return
        await remember_channels(
            turn_context.activity,
            sessions=self._sessions,
            team_id=getattr(team_info, "id", None) or team_id,
            channel_ids=[channel_id],
        )

    async def on_teams_channel_deleted(
        self, channel_info: Any, team_info: Any, turn_context: TurnContext
    ) -> None:
        _, channel_id = team_and_channel(turn_context.activity)
        channel_id = getattr(channel_info, "id", None) or channel_id
        if not channel_id:
            return
        async with transaction(self._sessions) as session:
            await subscriptions.forget_channel(session, channel_id=channel_id)
            ended = await subscriptions.end_for_conversation(
                session,
                conversation_id=channel_id,
                now=utcnow(),
                reason=subscriptions.CHANNEL_DELETED,
            )
        logger.info("A channel was deleted; %d digest subscription(s) ended", ended)

    async def _remember_team(self, turn_context: TurnContext, team_id: str) -> None:
        """The bot is in a team: store where it can post, in each of the team's channels."""
        _, channel_id = team_and_channel(turn_context.activity)
        channel_ids = await team_channel_ids(turn_context, team_id)
        await remember_channels(
            turn_context.activity,
            sessions=self._sessions,
            team_id=team_id,
            channel_ids=[*channel_ids, *([channel_id] if channel_id else [])],
        )

    async def _leave_team(self, team_id: str, *, reason: str) -> None:
        """The bot can no longer post in the team: forget its channels, end their digests."""
        async with transaction(self._sessions) as session:
            ended = await subscriptions.end_for_team(
                session, team_id=team_id, now=utcnow(), reason=reason
            )
            forgotten = await subscriptions.forget_team(session, team_id=team_id)
        logger.info(
            "Left a team: %d conversation(s) forgotten, %d digest subscription(s) ended",
            forgotten,
            ended,
        )

    @staticmethod
    def _includes_me(turn_context: TurnContext, members: list[Any]) -> bool:
        bot_id = turn_context.activity.recipient.id if turn_context.activity.recipient else None
        return any(getattr(member, "id", None) == bot_id for member in members)

    # --- messaging extension ----------------------------------------------------------

    async def on_teams_messaging_extension_query(
        self, turn_context: TurnContext, query: MessagingExtensionQuery
    ) -> MessagingExtensionResponse:
        # The manifest names the parameter searchText, but clients differ (the Agents
        # Playground sends its own name): take the first one that is not initialRun.
        search_text = next(
            (
                parameter.value
                for parameter in query.parameters or []
                if parameter.name != "initialRun" and isinstance(parameter.value, str)
            ),
            "",
        )
        async with self._sessions() as session:
            slugs = programme.search_names(
                search_text, await programme.project_names(session), limit=SEARCH_RESULTS
            )
            projects = await programme.get_projects(session, slugs=slugs)
        attachments = [
            MessagingExtensionAttachment(
                content_type=CardFactory.content_types.adaptive_card,
                content=render_card("project", project=project, can_post_update=False, notice=None),
                preview=CardFactory.thumbnail_card(
                    ThumbnailCard(
                        title=project.name,
                        subtitle=project.workstream_name,
                        text=(project.latest.text[:120] if project.latest else "No update yet"),
                    )
                ),
            )
            for project in projects
        ]
        return MessagingExtensionResponse(
            compose_extension=MessagingExtensionResult(
                type="result", attachment_layout="list", attachments=attachments
            )
        )

    async def on_adaptive_card_invoke(
        self, turn_context: TurnContext, invoke_value: AdaptiveCardInvokeValue
    ) -> AdaptiveCardInvokeResponse:
        """Universal Actions (Action.Execute) from the ideas' triage cards."""
        caller = await self._identify(turn_context)
        action = invoke_value.action if isinstance(invoke_value.action, dict) else {}
        verb, data = action.get("verb"), action.get("data")
        return await self._ideas.on_execute(
            turn_context,
            caller,
            verb if isinstance(verb, str) else "",
            data if isinstance(data, dict) else {},
        )

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        value = turn_context.activity.value
        if turn_context.activity.name == "adaptiveCard/action" and not (
            isinstance(value, dict)
            and isinstance(value.get("action"), dict)
            and value["action"].get("type") == "Action.Execute"
        ):
            # The SDK answers these with an error that cannot be serialised (a 500).
            logger.info("Refused an adaptiveCard/action invoke that is not an Action.Execute")
            return InvokeResponse(status=int(HTTPStatus.BAD_REQUEST))
        if (value is not None and not isinstance(value, dict)) or (
            value is None and turn_context.activity.name == "composeExtension/query"
        ):
            # Every invoke Teams sends carries an object (a search always has its query);
            # anything else is a malformed request, and the SDK would fail deserialising it
            # or hand the handler a query of None (a 500).
            logger.info(
                "Refused a %r invoke whose value is not an object",
                identifier(turn_context.activity.name),
            )
            return InvokeResponse(status=int(HTTPStatus.BAD_REQUEST))
        try:
            response = await super().on_invoke_activity(turn_context)
        except DeserializationError:
            logger.info(
                "Refused a %r invoke with wrongly typed fields",
                identifier(turn_context.activity.name),
            )
            return InvokeResponse(status=int(HTTPStatus.BAD_REQUEST))
        if response is not None and response.status == 501:
            logger.warning("Unknown invoke %r", identifier(turn_context.activity.name))
        return response

    # --- helpers --------------------------------------------------------------------

    @staticmethod
    def _in_channel(activity: Activity) -> bool:
        return bool(activity.conversation and activity.conversation.conversation_type == "channel")

    @staticmethod
    def _mentions_me(activity: Activity) -> bool:
        recipient_id = activity.recipient.id if activity.recipient else None
        for entity in activity.entities or []:
            properties = entity.additional_properties or {}
            mentioned = properties.get("mentioned") if entity.type == "mention" else None
            if isinstance(mentioned, dict) and mentioned.get("id") == recipient_id:
                return True
        return False

    @staticmethod
    def _conversation_type(turn_context: TurnContext) -> str:
        return turn_context.activity.conversation.conversation_type or "personal"

    async def _identify(self, turn_context: TurnContext) -> Caller | None:
        caller = await identify_caller(
            turn_context, sessions=self._sessions, settings=self._settings
        )
        turn_context.turn_state[CALLER] = caller
        return caller

    async def _send_privately(
        self, turn_context: TurnContext, caller: Caller, activity: Activity
    ) -> bool:
        return await send_privately(
            turn_context,
            caller,
            activity,
            adapter=self._adapter,
            app_id=self._settings.microsoft_app_id,
            sessions=self._sessions,
        )

    async def _remember_conversation(
        self, turn_context: TurnContext, caller: Caller | None
    ) -> None:
        """Store where the bot can write later: on first contact, and again whenever Teams
        moves the conversation to another service URL (region), reports its tenant, or (in a
        1:1 chat) we learn whose it is."""
        activity = turn_context.activity
        async with self._sessions() as session:
            stored = await people.conversation_address(
                session, conversation_id=activity.conversation.id
            )
        tenant_id = teams_tenant_id(activity)
        personal = self._conversation_type(turn_context) == "personal"
        person_id = caller.person_id if caller and personal else None
        if stored is not None:
            service_url, stored_tenant, stored_person = stored
            if (
                service_url == activity.service_url
                and tenant_id in (None, stored_tenant)
                # A 1:1 chat first seen without its person (the bot-added update) gets them.
                and person_id in (None, stored_person)
            ):
                return
        team_id, channel_id = team_and_channel(activity)
        reference = TurnContext.get_conversation_reference(activity).serialize()
        try:
            async with transaction(self._sessions) as session:
                await people.save_conversation_reference(
                    session,
                    conversation_id=activity.conversation.id,
                    conversation_type=self._conversation_type(turn_context),
                    tenant_id=tenant_id,
                    service_url=activity.service_url,
                    reference=reference,
                    team_id=team_id,
                    channel_id=channel_id,
                    # A 1:1 chat belongs to its person: reminders reach them there.
                    person_id=person_id,
                )
        except IntegrityError:
            # Two first turns of one conversation raced (two replicas); one of them saved it.
            logger.info("Conversation reference already saved by a concurrent turn")

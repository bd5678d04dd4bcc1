"""The one place that wires the bot: settings in, aiohttp application out."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from http import HTTPStatus
from typing import Any

from aiohttp import web
from botbuilder.core import InvokeResponse, TurnContext
from botbuilder.schema import Activity
from botframework.connector.auth import (
    AppCredentials,
    AuthenticationConstants,
    ServiceClientCredentialsFactory,
)
from msrest.serialization import Model
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.adapter import CachingBotFrameworkAuthentication, FastCloudAdapter
from bot.background import OutboxLoop, running
from bot.config import Settings, botframework_config
from bot.connector import BotConnector, TokenSource
from bot.graph import build_graph
from bot.handler import OurCambridgeBot
from bot.identity import Identity, IdentityCredentialsFactory, IdentityError, build_identity
from bot.logs import TurnLog, request_ids
from bot.proactive import DeliveryPolicy, OutboxWorker
from bot.replies import UNAVAILABLE_TEXT, reply_to_failed_turn
from bot.scheduler import Scheduler
from bot.state_storage import SqlConversationState, SqlStorage
from dialogs.ideas import record_triage_post
from storage import activities, subscriptions
from storage.db import create_engine, is_unavailable, ping, session_factory, transaction
from storage.models import utcnow
from storage.ratelimit import TEAMS_LIMITS, Window
from storage.retention import PROCESSED_ACTIVITY_KEEP

logger = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
ADAPTER = web.AppKey("adapter", FastCloudAdapter)
BOT = web.AppKey("bot", OurCambridgeBot)
OUTBOX = web.AppKey("outbox", OutboxLoop)
WORKER = web.AppKey("worker", OutboxWorker)
IDENTITY = web.AppKey("identity", Identity)

# Teams activities are a few kilobytes; anything near this is not one.
MAX_BODY_BYTES = 512 * 1024
# Activities nest a few levels (a card's submitted data perhaps ten); a body nested far
# deeper is refused before anything recurses through it.
MAX_JSON_DEPTH = 64
# json.loads pairs surrogates that make a character: any left in a string is alone.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
READY_TIMEOUT_SECONDS = 3
TOKEN_RENEWAL_SECONDS = 60
CONNECTOR_SCOPE = AuthenticationConstants.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE


def create_app(
    settings: Settings,
    *,
    credentials_factory: ServiceClientCredentialsFactory | None = None,
    msal_http_client: Any | None = None,
) -> web.Application:
    """Build the whole service. Tests may replace outgoing-token minting
    (`credentials_factory`) or point MSAL at a local fake Entra ID (`msal_http_client`)."""
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    conversation_state = SqlConversationState(SqlStorage(sessions))
    identity = build_identity(settings, http_client=msal_http_client)
    renewed: Identity | None = None  # the identity that signs replies, kept fresh below
    if credentials_factory is None and identity is not None:
        credentials_factory = IdentityCredentialsFactory(identity, settings.microsoft_app_id)
        renewed = identity
    adapter = build_adapter(settings, credentials_factory=credentials_factory)
    worker = build_worker(settings, sessions, credentials_factory=credentials_factory)
    outbox_loop = OutboxLoop(worker, sessions)
    graph = build_graph(settings, identity)
    bot = OurCambridgeBot(
        settings=settings,
        sessions=sessions,
        conversation_state=conversation_state,
        adapter=adapter,
        outbox_changed=outbox_loop.kick,
        graph=graph,
    )

    async def on_turn_error(turn_context: TurnContext, error: Exception) -> None:
        await reply_to_failed_turn(turn_context, error, conversation_state)

    adapter.on_turn_error = on_turn_error

    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[request_ids])
    app[SETTINGS] = settings
    app[ENGINE] = engine
    app[ADAPTER] = adapter
    app[BOT] = bot
    app.router.add_post("/api/messages", messages)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app[OUTBOX] = outbox_loop
    app[WORKER] = worker
    app.cleanup_ctx.append(_engine_lifetime)
    app.cleanup_ctx.append(_prune_processed_activities)
    app.cleanup_ctx.append(_background_work)
    # On shutdown, before the cleanup that closes the database and Graph's client: an
    # `install app` still running uses both.
    app.on_shutdown.append(lambda _app: bot.close())
    if graph is not None:
        app.on_cleanup.append(lambda _app: graph.close())
    app.on_cleanup.append(lambda _app: adapter.close())
    if renewed is not None:
        app[IDENTITY] = renewed
        app.cleanup_ctx.append(functools.partial(_renew_tokens, renewed))
    return app


def freeze_startup_objects() -> None:
    """Set what the imports and create_app built aside from the garbage collector.

    They are some 160,000 objects that live as long as the process. Every full collection
    walks them all: about 40 ms on an idle 2-core machine and well over 100 ms on a busy one,
    during which no turn is answered and no outbox request goes out, so requests logged in
    the rate log reach Teams late and bunched together. Frozen, they are never walked again.
    Done before the app starts its background work, after a collection: what is frozen is
    never collected, so nothing that may become garbage should be in it. Only the served
    app does this (bot/cli.py): a test process that builds many apps would keep them all."""
    gc.collect()
    gc.freeze()


async def _renew_tokens(identity: Identity, _app: web.Application) -> AsyncIterator[None]:
    """Keep the Bot Connector token renewed ahead of expiry, in a thread: botbuilder signs
    each reply on the event loop, which then only reads MSAL's cache, never waits for
    Entra ID. The first renewal (which also builds the MSAL client) is done before the app
    serves; each request it makes has a timeout (bot/identity.py)."""

    async def renew() -> None:
        try:
            await asyncio.to_thread(identity.renew_if_due, CONNECTOR_SCOPE)
        except IdentityError as error:
            logger.warning("Could not renew the bot's token: %s", error.code)

    async def renew_forever() -> None:
        while True:
            await asyncio.sleep(TOKEN_RENEWAL_SECONDS)
            await renew()

    await renew()
    task = asyncio.create_task(renew_forever())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def build_worker(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    *,
    credentials_factory: ServiceClientCredentialsFactory | None = None,
    policy: DeliveryPolicy | None = None,
) -> OutboxWorker:
    """The outbox's delivery worker (the app and the CLI's sending commands use it)."""
    policy = policy or delivery_policy(settings)
    connector = BotConnector(
        token=outgoing_token_source(settings, credentials_factory), timeout=policy.send_timeout
    )
    return OutboxWorker(
        connector=connector,
        sessions=sessions,
        policy=policy,
        on_sent=functools.partial(record_triage_post, sessions),
        on_gone=_end_subscriptions,
    )


async def _end_subscriptions(session: AsyncSession, conversation_id: str) -> None:
    """Teams refused a message for good (403/404): a channel's digest stops there."""
    await subscriptions.end_for_conversation(
        session, conversation_id=conversation_id, now=utcnow(), reason="unreachable"
    )


def delivery_policy(settings: Settings) -> DeliveryPolicy:
    limits = TEAMS_LIMITS
    return DeliveryPolicy(
        limits=dataclasses.replace(limits, per_bot=(Window(1, settings.outbox_max_per_second),)),
        concurrency=settings.outbox_concurrency,
        send_timeout=settings.outbox_send_timeout_seconds,
        lease=timedelta(seconds=settings.outbox_lease_seconds),
        first_backoff=timedelta(seconds=settings.outbox_first_backoff_seconds),
    )


def outgoing_token_source(
    settings: Settings, credentials_factory: ServiceClientCredentialsFactory | None
) -> TokenSource | None:
    """The bearer token for the Bot Connector, from the same credentials botbuilder uses
    (app secret, single tenant or managed identity); None when authentication is off."""
    if not settings.authentication_enabled:
        return None
    # The app passes its own factory, so the turn and the outbox share one token cache.
    factory = credentials_factory or IdentityCredentialsFactory(
        Identity(settings), settings.microsoft_app_id
    )
    credentials: list[AppCredentials] = []

    async def token() -> str | None:
        if not credentials:
            credentials.append(
                await factory.create_credentials(
                    settings.microsoft_app_id,
                    AuthenticationConstants.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE,
                    AuthenticationConstants.TO_CHANNEL_FROM_BOT_LOGIN_URL,
                    True,
                )
            )
        # MSAL caches the token and renews it before it expires; renewing calls Entra ID
        # with a blocking client, so it runs off the event loop.
        return await asyncio.to_thread(credentials[0].get_access_token) or None

    return token


def build_adapter(
    settings: Settings, *, credentials_factory: ServiceClientCredentialsFactory | None = None
) -> FastCloudAdapter:
    """The Bot Framework adapter: authenticates requests and sends through the connector.
    Not botbuilder's defaults: those cost ~15 ms of CPU a turn and cap replies at the default
    executor's six threads (bot/adapter.py)."""
    authentication = CachingBotFrameworkAuthentication(
        botframework_config(settings), credentials_factory=credentials_factory
    )
    return FastCloudAdapter(authentication)


async def messages(request: web.Request) -> web.Response:
    """POST /api/messages, and one log line about the turn (its kind, never its text)."""
    turn = TurnLog()
    try:
        response = await _answer_activity(request, turn)
    except web.HTTPException as error:  # e.g. 413 for a body over MAX_BODY_BYTES
        turn.done(error.status)
        raise
    except Exception:
        turn.done(HTTPStatus.INTERNAL_SERVER_ERROR)
        raise
    turn.done(response.status)
    return response


async def _answer_activity(request: web.Request, turn: TurnLog) -> web.Response:
    """The activity's answer, written here rather than with CloudAdapter.process: botbuilder
    4.17.1 double-serialises invoke bodies there (every invoke would answer 500), answers a
    missing content type with 404 and many kinds of bad token with 500."""
    if request.content_type != "application/json":
        return _problem(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Send the activity as application/json.")
    try:
        text = await request.text()
    except LookupError:
        # A charset Python does not know ("application/json; charset=x"): was a 500.
        return _problem(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Send the activity as UTF-8 JSON.")
    except UnicodeError:
        # Bytes the charset cannot decode (UnicodeDecodeError), or a codec's own complaint
        # ("charset=idna" raises a plain UnicodeError): was a 500.
        return _problem(HTTPStatus.BAD_REQUEST, "The body is not valid JSON.")
    try:
        # NUL cannot be stored in PostgreSQL text and is never meant: drop it from every
        # string, so a form holding one is checked like any other rather than failing. A
        # lone surrogate ("\ud800" is valid JSON) cannot be encoded as UTF-8 by any database
        # or reply: it becomes U+FFFD, as an undecodable byte would (was a failed turn).
        body = _storable(json.loads(text))
    except (ValueError, RecursionError):
        # Not JSON (JSONDecodeError), nested deeper than MAX_JSON_DEPTH, or an integer of
        # more digits than Python converts (ValueError); nested so deep that the parser ran
        # out of stack (RecursionError). The last two were 500s.
        return _problem(HTTPStatus.BAD_REQUEST, "The body is not valid JSON.")
    if not isinstance(body, dict) or not isinstance(body.get("type"), str) or not body["type"]:
        return _problem(HTTPStatus.BAD_REQUEST, "The body is not an activity: it has no type.")
    try:
        activity = Activity().deserialize(body)
    except Exception as error:  # msrest raises a variety of errors for wrongly typed fields
        # Its message quotes the offending value, which may be anything a person typed.
        logger.info("Refused an activity that does not deserialise: %s", type(error).__name__)
        return _problem(HTTPStatus.BAD_REQUEST, "The activity has fields of the wrong type.")
    turn.activity = activity
    if not activity.service_url or not activity.conversation or not activity.conversation.id:
        return _problem(HTTPStatus.BAD_REQUEST, "The activity has no serviceUrl or conversation.")
    if not activity.conversation.id.isprintable():
        # Teams' conversation ids are printable ASCII; the id goes into a header of every
        # reply, where a control character is refused (aiohttp: header injection).
        return _problem(HTTPStatus.BAD_REQUEST, "The activity's conversation id is not valid.")
    if not activity.recipient or not activity.recipient.id or not activity.channel_id:
        # Every activity Teams sends names its channel ("msteams") and the bot as recipient;
        # botbuilder reads both unchecked (the dialog state's key, the mention stripping):
        # without them a turn failed.
        return _problem(HTTPStatus.BAD_REQUEST, "The activity has no channelId or recipient.")

    adapter = request.app[ADAPTER]
    try:
        # Authenticate apart from the turn, so that every way a token can be bad (missing,
        # malformed, expired, unknown key, wrong audience...) is a 401, never a 500.
        authentication = await adapter.bot_framework_authentication.authenticate_request(
            activity, request.headers.get("Authorization", "")
        )
    except Exception as error:
        logger.info("Refused an unauthenticated request: %s: %s", type(error).__name__, error)
        return _problem(HTTPStatus.UNAUTHORIZED, "The request is not authenticated.")
    invoke_response = await adapter.process_activity(
        authentication, activity, request.app[BOT].on_turn
    )
    if activity.type == "invoke":
        return _invoke_response(invoke_response)
    return web.Response(status=HTTPStatus.CREATED)


def _invoke_response(invoke_response: InvokeResponse | None) -> web.Response:
    if invoke_response is None:
        return web.Response(status=HTTPStatus.OK)
    status = int(invoke_response.status or HTTPStatus.OK)
    body = invoke_response.body
    try:
        if isinstance(body, Model):
            body = body.serialize()
        if body is None:
            return web.Response(status=status)
        return web.json_response(body, status=status)
    except Exception as error:  # msrest's SerializationError, or a body json cannot write
        # Not the message: msrest quotes the value it could not write, a card's text perhaps.
        logger.warning(
            "An invoke answer could not be serialised (%s); answered 400", type(error).__name__
        )
        return _problem(HTTPStatus.BAD_REQUEST, "The invoke could not be answered.")


def _storable(value: Any, depth: int = 0) -> Any:
    """The parsed JSON `value` with NUL characters removed from every string in it, and
    lone surrogates replaced by U+FFFD. ValueError if it nests deeper than MAX_JSON_DEPTH."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError("JSON nested too deeply")
    if isinstance(value, str):
        value = value.replace("\x00", "")
        return value if value.isascii() else _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_storable(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {
            _storable(key, depth + 1): _storable(item, depth + 1) for key, item in value.items()
        }
    return value


def _problem(status: HTTPStatus, detail: str) -> web.Response:
    return web.json_response({"error": status.phrase, "detail": detail}, status=status)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await ping(request.app[ENGINE])
    except Exception as error:
        # Any failure to run SELECT 1 means this replica cannot serve turns: not ready.
        logger.warning("Database unreachable: %s", type(error).__name__)
        return web.json_response(
            {"status": "unavailable", "database": "unreachable"},
            status=HTTPStatus.SERVICE_UNAVAILABLE,
        )
    return web.json_response({"status": "ready", "database": "ok"})


async def _background_work(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    schedules = Scheduler(
        session_factory(app[ENGINE]),
        zone=settings.zone,
        reminders_at=settings.reminder_time,
        purge_at=settings.purge_time,
        retention_policy=settings.retention_policy,
        queued=app[OUTBOX].kick,
    )
    loops = [app[OUTBOX].run_forever()]
    if settings.scheduler_enabled:
        loops.append(schedules.run_forever())
    async with running(*loops):
        yield
        # Finish the sends in flight and give back the rest before the loops are cancelled:
        # a stopped replica (a deploy, scaling in) then loses and repeats nothing.
        await app[OUTBOX].stop(wait_seconds=app[WORKER].policy.send_timeout + 5)
    await app[WORKER].close()


async def _engine_lifetime(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[ENGINE].dispose()


async def _prune_processed_activities(app: web.Application) -> AsyncIterator[None]:
    """Keep the table of handled activity ids short; Teams redelivers within minutes."""
    sessions = session_factory(app[ENGINE])

    async def prune_forever() -> None:
        while True:
            try:
                async with transaction(sessions) as session:
                    await activities.forget_processed_before(
                        session, cutoff=utcnow() - PROCESSED_ACTIVITY_KEEP
                    )
            except Exception as error:
                if not is_unavailable(error):
                    logger.exception("Pruning handled activities failed")
            await asyncio.sleep(3600)

    task = asyncio.create_task(prune_forever())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


__all__ = ["create_app", "UNAVAILABLE_TEXT"]

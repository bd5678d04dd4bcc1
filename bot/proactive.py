"""Delivering the outbox: messages the bot sends on its own (reminders, nudges).

Each message was written to the outbox first (storage/outbox.py); this worker claims due
rows, sends each through the Bot Connector with the stored conversation reference, and
records the outcome. Failures Teams asks us to retry (429, 412, 5xx) are tried again later
with exponential backoff and jitter, honouring Retry-After; a 403 or 404 (the app was
removed, the user blocked it) fails the message for good and forgets the conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botbuilder.core import BotAdapter, TurnContext
from botbuilder.schema import Activity, ConversationReference
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import outbox
from storage.db import transaction
from storage.models import utcnow

logger = logging.getLogger(__name__)

# Teams asks bots to retry these (https://learn.microsoft.com/microsoftteams/platform/bots/
# how-to/rate-limit): throttled, precondition failed, and transient server errors.
RETRIABLE_STATUSES = frozenset({412, 429, 500, 502, 503, 504})
# The bot was removed from the conversation, or the person blocked it.
GONE_STATUSES = frozenset({403, 404})
MAX_ATTEMPTS = 6
FIRST_BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=1)
# A send that takes longer than this is abandoned (and retried): the connector's own timeout
# is about 100 s, far longer than a claim should wait.
SEND_TIMEOUT_SECONDS = 30.0
# Messages claimed at a time, and how long the claim lasts: longer than sending the whole
# batch can take (BATCH x SEND_TIMEOUT), so a claim only runs out when its worker died.
BATCH = 20
LEASE = timedelta(minutes=15)


# (dedupe key, conversation id, activity id) of a message just sent.
SentHook = Callable[[str, str, str], Awaitable[None]]


@dataclass
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    activity_id: str | None = None  # the id Teams gave the message sent
    error: str = ""
    status: int | None = None
    retry_after: float | None = None


class OutboxWorker:
    def __init__(
        self,
        *,
        adapter: BotAdapter,
        app_id: str,
        sessions: async_sessionmaker[AsyncSession],
        on_sent: SentHook | None = None,
    ) -> None:
        self._adapter = adapter
        self._app_id = app_id
        self._sessions = sessions
        # Told of each message sent, e.g. to remember where a card was posted so that it can
        # be updated in place.
        self._on_sent = on_sent

    async def deliver_due(
        self, *, limit: int = BATCH, now: datetime | None = None
    ) -> DeliveryReport:
        """Send what is due now, once. Returns what happened to the claimed messages."""
        now = now or utcnow()
        async with transaction(self._sessions) as session:
            claimed = await outbox.claim_due(session, now=now, limit=limit, lease=LEASE)
        report = DeliveryReport()
        for delivery in claimed:
            outcome = await self._send(delivery)
            retry_at = None if outcome.ok else _retry_at(delivery.attempts, outcome, utcnow())
            async with transaction(self._sessions) as session:
                if outcome.ok:
                    recorded = await outbox.mark_sent(
                        session, message_id=delivery.id, attempt=delivery.attempts, now=utcnow()
                    )
                else:
                    recorded = await outbox.mark_failed(
                        session,
                        message_id=delivery.id,
                        attempt=delivery.attempts,
                        error=outcome.error,
                        retry_at=retry_at,
                    )
                    if outcome.status in GONE_STATUSES:
                        # Removed or blocked: stop writing there; the person now shows as
                        # unreachable in the leader and programme views.
                        await outbox.forget_conversation(
                            session, conversation_id=delivery.conversation_id
                        )
            if not recorded:
                # The row id, not the key: a key can name a person (an idea's submitter).
                logger.warning(
                    "Outbox message %d: the claim ran out before its outcome was recorded",
                    delivery.id,
                )
            if outcome.ok:
                report.sent += 1
                if self._on_sent is not None and outcome.activity_id:
                    try:
                        await self._on_sent(
                            delivery.dedupe_key, delivery.conversation_id, outcome.activity_id
                        )
                    except Exception:
                        logger.warning("Recording a sent message failed", exc_info=True)
            elif retry_at is None:
                report.failed += 1
                logger.warning(
                    "Gave up on outbox message %d after %d attempt(s): %s",
                    delivery.id,
                    delivery.attempts,
                    outcome.error,
                )
            else:
                report.retried += 1
        return report

    async def _send(self, delivery: outbox.Delivery) -> _Outcome:
        if delivery.reference is None:
            return _Outcome(ok=False, error="no conversation reference", status=404)
        reference = restore_reference(delivery.reference, delivery.tenant_id)
        activity = Activity().deserialize(delivery.payload)
        result: list[_Outcome] = []

        async def send(turn_context: TurnContext) -> None:
            # Errors are caught here: raised, they would go to the adapter's on_turn_error,
            # which answers a person's message, and be swallowed (PLATFORM-NOTES).
            try:
                response = await turn_context.send_activity(activity)
            except Exception as error:  # the connector's errors come in many types
                result.append(_failure(error))
            else:
                result.append(_Outcome(ok=True, activity_id=response.id if response else None))

        try:
            async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                await self._adapter.continue_conversation(reference, send, self._app_id)
        except TimeoutError:
            return _Outcome(ok=False, error="timed out")
        except Exception as error:  # e.g. a token could not be had
            return _failure(error)
        return result[0] if result else _Outcome(ok=False, error="nothing was sent")


def restore_reference(stored: dict[str, Any], tenant_id: str | None) -> ConversationReference:
    """A stored conversation reference, with the tenant id put back: botbuilder drops it when
    it serialises one (see storage.models.ConversationReference), and Teams needs it."""
    reference = ConversationReference().deserialize(stored)
    if tenant_id and reference.conversation is not None:
        reference.conversation.tenant_id = tenant_id
    return reference


def _failure(error: Exception) -> _Outcome:
    response: Any = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    headers = getattr(response, "headers", None) or {}
    retry_after: float | None = None
    value = headers.get("Retry-After")
    if value is not None:
        with contextlib.suppress(TypeError, ValueError):
            # Seconds; the HTTP-date form is not used by the Bot Connector.
            retry_after = float(value)
    return _Outcome(
        ok=False,
        error=f"{type(error).__name__}: {status or ''}".strip(": "),
        status=status if isinstance(status, int) else None,
        retry_after=retry_after,
    )


def _retry_at(attempts: int, outcome: _Outcome, now: datetime) -> datetime | None:
    """When to try again, or None to give up: not retriable, or attempts used up."""
    retriable = outcome.status is None or outcome.status in RETRIABLE_STATUSES
    if not retriable or attempts >= MAX_ATTEMPTS:
        return None
    backoff = min(FIRST_BACKOFF * (2 ** (attempts - 1)), MAX_BACKOFF)
    # Full jitter spreads the retries of many messages throttled at once.
    delay = timedelta(seconds=random.uniform(0.5, 1.0) * backoff.total_seconds())
    if outcome.retry_after is not None:
        delay = max(delay, timedelta(seconds=outcome.retry_after))
    return now + delay

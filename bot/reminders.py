"""The reminder job: work out who is due a reminder today, put each in the outbox, send.

`ourcambridge reminders run` and the built-in morning schedule both call `run_reminders`.
Running it twice for the same day sends each reminder once: every reminder has a dedupe key
(storage/reminders.py) and the outbox stores a key only once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, tzinfo

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.proactive import DeliveryReport, OutboxWorker
from dialogs.common import card_message
from storage import ideas, outbox, people, reminders
from storage.db import transaction
from storage.models import utcnow

logger = logging.getLogger(__name__)


@dataclass
class ReminderRun:
    due: int = 0  # reminders today's rules call for
    queued: int = 0  # newly put in the outbox
    already_queued: int = 0  # queued by an earlier run (same day or week)
    unreachable: list[int] = field(default_factory=list)  # person ids with no 1:1 chat
    delivery: DeliveryReport = field(default_factory=DeliveryReport)


async def queue_reminders(
    sessions: async_sessionmaker[AsyncSession], *, today: date
) -> ReminderRun:
    run = ReminderRun()
    async with transaction(sessions) as session:
        due = await reminders.due_reminders(session, today=today)
        run.due = len(due)
        for reminder in due:
            conversation_id = await outbox.personal_conversation_id(
                session, person_id=reminder.person_id
            )
            if conversation_id is None:
                run.unreachable.append(reminder.person_id)
                continue
            name = await people.display_name(session, person_id=reminder.person_id)
            if reminder.kind == "log_session":
                message = card_message("reminder_log_session", session=reminder.session)
            elif reminder.kind == "nothing_scheduled":
                message = card_message("reminder_nothing_scheduled", name=name)
            else:
                message = card_message(
                    "reminder_overdue_actions", name=name, actions=list(reminder.actions)
                )
            queued = await outbox.enqueue(
                session,
                dedupe_key=reminder.dedupe_key,
                conversation_id=conversation_id,
                payload=message.serialize(),
                now=utcnow(),
            )
            if queued:
                run.queued += 1
            else:
                run.already_queued += 1
    return run


async def queue_stale_ideas(
    sessions: async_sessionmaker[AsyncSession], *, today: date, zone: tzinfo = UTC
) -> bool:
    """Once a week, call out in the triage channel the ideas left in "new" for more than five
    working days. Called every morning: the key per ISO week makes the first call of the week
    the one that counts. True if a call-out was queued."""
    year, week, _ = today.isocalendar()
    async with transaction(sessions) as session:
        channel = await ideas.get_triage_channel(session)
        stale = await ideas.stale_new_ideas(session, today=today, zone=zone)
        if channel is None or not stale:
            return False
        return await outbox.enqueue(
            session,
            dedupe_key=f"ideas-stale:{year}-W{week:02d}",
            conversation_id=channel,
            payload=card_message("ideas_stale", ideas=stale).serialize(),
            now=utcnow(),
        )


async def run_reminders(
    sessions: async_sessionmaker[AsyncSession],
    worker: OutboxWorker,
    *,
    today: date,
    zone: tzinfo = UTC,
) -> ReminderRun:
    """Queue today's reminders (and the week's call-out of ideas waiting for triage) and send
    what is due, until nothing is left to send now."""
    run = await queue_reminders(sessions, today=today)
    await queue_stale_ideas(sessions, today=today, zone=zone)
    run.delivery = await worker.deliver_due()
    logger.info(
        "Reminders for %s: %d due, %d queued, %d already queued, %d unreachable, "
        "%d sent, %d to retry, %d failed",
        today.isoformat(),
        run.due,
        run.queued,
        run.already_queued,
        len(run.unreachable),
        run.delivery.sent,
        run.delivery.retried,
        run.delivery.failed,
    )
    return run

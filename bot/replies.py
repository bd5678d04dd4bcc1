"""Replies for turns that fail, and the one error handler every turn goes through."""

from __future__ import annotations

import logging
from http import HTTPStatus

from botbuilder.core import ConversationState, InvokeResponse, MessageFactory, TurnContext
from botbuilder.schema import Activity, ActivityTypes

from bot.adapter import ReplyFailed
from storage.db import is_unavailable
from storage.state import StateConflict

logger = logging.getLogger(__name__)

UNAVAILABLE_TEXT = "I can't reach the programme data right now, please try again in a minute."
CONFLICT_TEXT = (
    "Another message in this chat was handled at the same moment, so I couldn't keep track "
    "of that one. If my answer above doesn't look right, please send it again."
)
FAILED_TEXT = (
    "Sorry, something went wrong on my side and I couldn't finish that. "
    "Please try again, or type **help** to see what I can do."
)


async def reply_to_failed_turn(
    turn_context: TurnContext, error: Exception, conversation_state: ConversationState
) -> None:
    """Log the failure, tell the person something useful, and drop broken dialog state."""
    activity = turn_context.activity
    if isinstance(error, ReplyFailed) and activity.type != "invoke":
        # Teams' connector refused the turn's reply (a 5xx, say) or never answered it. Saying
        # so would go the same way (and a hang would hold Teams' request open twice as long),
        # and the reply is not tried again (it may have been posted): the turn ends here and
        # Teams gets its 201, as the activity was handled. The dialog state is not broken,
        # so it is kept: this turn's changes were not saved, and the person can simply say
        # it again. The status and code are logged, never the reply (it may name people).
        logger.warning(
            "The reply to a %s turn was not delivered: %s", activity.type, _delivery(error)
        )
        return
    if is_unavailable(error):
        logger.warning(
            "Database unavailable during %s turn: %s", activity.type, type(error).__name__
        )
        text = UNAVAILABLE_TEXT
    elif isinstance(error, StateConflict):
        # Two turns of one conversation raced and the other saved first. Its state is good:
        # keep it (deleting it would lose the other turn's input too) and ask for a repeat.
        logger.info("Conversation state changed by a concurrent turn; asked for a repeat")
        text = CONFLICT_TEXT
    else:
        logger.exception("Unhandled error in %s turn", activity.type, exc_info=error)
        text = FAILED_TEXT
        # State that made a turn fail would make the next one fail too. Only state this turn
        # loaded can have (BotState.delete raises KeyError for a turn that loaded none, such
        # as a conversation update).
        try:
            if conversation_state.get_cached_state(turn_context) is not None:
                await conversation_state.delete(turn_context)
        except Exception:
            logger.warning("Could not clear conversation state after an error", exc_info=True)
    if activity.type == "invoke":
        # The HTTP answer carries the failure (a chat message would confuse): 503 when the
        # database is away, so Teams shows its own "try again".
        status = (
            HTTPStatus.SERVICE_UNAVAILABLE
            if is_unavailable(error)
            else HTTPStatus.INTERNAL_SERVER_ERROR
        )
        await turn_context.send_activity(
            Activity(type=ActivityTypes.invoke_response, value=InvokeResponse(status=int(status)))
        )
        return
    try:
        await turn_context.send_activity(MessageFactory.text(text))
    except Exception:
        logger.warning("Could not send the error reply", exc_info=True)


def _delivery(error: ReplyFailed) -> str:
    return f"HTTP {error.status} {error.code}".strip() if error.status else error.code

"""Adaptive Cards (1.5, as Teams renders them) built from Jinja2 templates.

Nothing here imports the transport: a card is a plain dict the bot attaches to a message.
"""

from cards.render import CardRenderError, render_card

__all__ = ["CardRenderError", "render_card"]

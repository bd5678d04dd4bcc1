"""What a card form sends, as text: the one reading every form check in storage/ starts from."""

from __future__ import annotations


def as_text(value: object, *, many: bool = False) -> str:
    """A submitted value as the text the person typed or chose. Teams sends strings, but a
    number input can arrive as a number, a toggle as a bool and a crafted request anything:
    numbers become their digits, booleans "true"/"false", and anything else nothing. With
    `many` (a multi-select), a list's items are joined by commas, as Teams sends them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    if many and isinstance(value, list | tuple):
        return ",".join(as_text(item) for item in value)
    return ""

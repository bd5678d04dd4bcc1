"""What people type, parsed into a command and its argument. Pure: no I/O, no botbuilder."""

from __future__ import annotations

from dataclasses import dataclass

from rapidfuzz import fuzz, process

from storage.programme import normalise


@dataclass(frozen=True)
class Command:
    name: str  # one of COMMANDS' keys, or "unknown"
    argument: str  # the rest of the text, as typed (trimmed)
    text: str  # the whole text, as typed (trimmed)


# Canonical command -> the words that mean it. Interfaces: keep the canonical words.
COMMANDS: dict[str, tuple[str, ...]] = {
    "help": ("help", "hi", "hello", "hey", "start", "commands", "menu", "?"),
    "status": ("status", "project", "status of"),
    "projects": ("projects", "list projects", "all projects"),
    "programme": ("programme", "program", "overview", "programme overview"),
    "post update": ("post update", "update"),
    "schedule session": ("schedule session", "schedule a session", "schedule mir", "schedule"),
    "log session": ("log session", "log a session", "log mir", "log"),
    "my sessions": ("my sessions", "sessions"),
    "my actions": ("my actions", "actions"),
    "my change makers": ("my change makers", "change makers", "my team"),
    "mir stats": ("mir stats", "mir", "making it real", "mir statistics"),
    "stop reminders": ("stop reminders", "reminders off"),
    "start reminders": ("start reminders", "reminders on"),
    "idea": ("idea", "submit idea", "submit an idea", "new idea"),
    "my ideas": ("my ideas",),
    "ideas": ("ideas", "list ideas", "all ideas"),
    "set triage channel": ("set triage channel",),
    "subscribe": ("subscribe", "subscribe to the digest", "subscribe to digest"),
    "unsubscribe": ("unsubscribe", "unsubscribe from the digest", "unsubscribe from digest"),
    "digest settings": ("digest settings", "digest setting"),
    "digest preview": ("digest preview", "preview digest", "preview the digest"),
    "install app": ("install app", "install for change makers", "install the app"),
    "cancel": ("cancel", "stop", "quit"),
}

TAKES_ARGUMENT = ("status", "projects", "ideas")

# Buttons offered when nothing matched: (command, button title).
SUGGESTIONS: dict[str, tuple[str, str]] = {
    "help": ("help", "Help"),
    "status": ("status alloy", "Status of a project (e.g. Alloy)"),
    "projects": ("projects", "All projects"),
    "programme": ("programme", "Programme overview"),
    "schedule session": ("schedule session", "Schedule a session"),
    "log session": ("log session", "Log a session"),
    "my actions": ("my actions", "My actions"),
    "my sessions": ("my sessions", "My sessions"),
    "idea": ("idea", "Submit an idea"),
    "my ideas": ("my ideas", "My ideas"),
    "subscribe": ("subscribe", "Subscribe to the weekly digest"),
}


def parse(text: str) -> Command:
    """Match the longest command phrase at the start of the text ("status of alloy")."""
    stripped = " ".join(text.split())
    lowered = stripped.casefold()
    phrases = sorted(
        ((phrase, name) for name, phrases in COMMANDS.items() for phrase in phrases),
        key=lambda item: len(item[0]),
        reverse=True,
    )
    for phrase, name in phrases:
        if lowered == phrase or lowered.startswith(phrase + " "):
            return Command(name=name, argument=stripped[len(phrase) :].strip(), text=stripped)
    return Command(name="unknown", argument="", text=stripped)


def closest_commands(text: str, *, limit: int = 3) -> list[tuple[str, str]]:
    """The commands nearest to what was typed, as (command, title) button pairs.

    A misspelt command that takes an argument keeps it: "statsu orchard" -> "status orchard".
    """
    words = normalise(text).split(" ", 1) if normalise(text) else [""]
    first_word, rest = words[0], (words[1] if len(words) > 1 else "")
    choices = {phrase: name for name, phrases in COMMANDS.items() for phrase in phrases}
    # The first word against each phrase ("statsu alloy"), and the whole text against each
    # phrase ("shedule sesion"); the better score counts.
    scored: dict[str, float] = {}
    for query in {first_word, normalise(text)}:
        for phrase, score, _ in process.extract(query, list(choices), scorer=fuzz.ratio, limit=20):
            scored[phrase] = max(scored.get(phrase, 0), score)
    ranked = sorted(scored.items(), key=lambda item: item[1], reverse=True)
    names: list[str] = []
    for phrase, score in ranked:
        name = choices[phrase]
        if score >= 50 and name in SUGGESTIONS and name not in names:
            names.append(name)
    for name in SUGGESTIONS:  # pad with the commands people use most
        if len(names) >= limit:
            break
        if name not in names:
            names.append(name)
    suggestions = []
    for index, name in enumerate(names[:limit]):
        if index == 0 and rest and name in TAKES_ARGUMENT:
            suggestions.append((f"{name} {rest}", f"{name} {rest}"[:60]))
        else:
            suggestions.append(SUGGESTIONS[name])
    return suggestions

"""The `install app` run is written to the audit trail as it starts, by whoever started it,
even when Graph then refuses it."""

from __future__ import annotations

from typing import cast

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.graph import AppNotInCatalogue, GraphClient, install_for_change_makers
from storage.models import AuditEntry
from tests.support.people import add_person


class EmptyCatalogue:
    """A Graph whose app catalogue does not hold the app: the run stops at its first call."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def catalog_app_id(self, teams_app_id: str) -> str | None:
        self.asked.append(teams_app_id)
        return None


async def test_an_install_run_is_audited_as_it_starts_with_who_started_it(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    admin = await add_person(fresh_sessions, "Admin", role="admin")
    for _ in range(3):
        await add_person(fresh_sessions, "Maker", role="change_maker")
    graph = EmptyCatalogue()

    with pytest.raises(AppNotInCatalogue):
        await install_for_change_makers(
            cast(GraphClient, graph),
            fresh_sessions,
            teams_app_id="app",
            tenant_id=None,
            actor="person",
            actor_id=admin,
        )
    with pytest.raises(AppNotInCatalogue):
        await install_for_change_makers(
            cast(GraphClient, graph),
            fresh_sessions,
            teams_app_id="app",
            tenant_id=None,
            actor="cli",
        )
    assert graph.asked == ["app", "app"]

    async with fresh_sessions() as session:
        entries = (
            await session.exec(select(AuditEntry).where(AuditEntry.action == "app.install"))
        ).all()
    assert [(e.actor, e.actor_id, e.detail) for e in entries] == [
        ("person", admin, {"change_makers_without_chat": 3}),
        ("cli", None, {"change_makers_without_chat": 3}),
    ]

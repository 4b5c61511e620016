"""Who owns what: the team of an app, and the app of a build, deployment, instance or
scrape target.

app → team is a projection in the gateway's database folded from `app.events` (a group
all replicas share, from the earliest offset), with the appmanager asked on a miss (an
app applied a moment ago, or older than the topic's retention). An app's team never
changes (the appmanager refuses that), so it is cached for good. Ids of other things are
asked of their owner's internal API and cached briefly.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from libs.events.worker import Batch, TransientError
from services.gateway.models import AppOwner

log = logging.getLogger(__name__)
CACHE_MAX = 50_000
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")  # app names, uuids, instance ids
ID_TTL_S = 30.0
# kind → (peer, internal path) answering {"app": …}
LOOKUPS = {
    "build": ("appmanager", "/builds/{}"),
    "deployment": ("appmanager", "/deployments/{}"),
    "instance": ("appmanager", "/instances/{}"),
    "target": ("dataops-ingest", "/scrape/targets/{}"),
}


class OwnerUnavailable(Exception):
    """The owner of the answer could not be asked (the request gets 503)."""


class Owners:
    def __init__(
        self,
        *,
        sessions: Callable[[], Any],
        http: httpx.AsyncClient,
        peers: dict[str, str],
        headers: dict[str, str],
    ) -> None:
        self._sessions = sessions
        self._http = http
        self._peers = peers
        self._headers = headers
        self._teams: OrderedDict[str, str] = OrderedDict()
        self._apps: OrderedDict[tuple[str, str], tuple[float, str | None]] = OrderedDict()

    def known_team(self, app: str) -> str | None:
        """The team if already in memory (no I/O: for hot paths that can wait a moment)."""
        return self._teams.get(app)

    async def team_of(self, app: str) -> str | None:
        """The team owning the app, or None if there is no such app."""
        if not _SAFE.fullmatch(app):
            return None  # not a name anything could have; never put it in a URL
        team = self._teams.get(app)
        if team is not None:
            return team
        async with self._sessions() as session:
            row = await session.get(AppOwner, app)
        if row is not None:
            self._remember(app, row.team)
            return row.team
        answer = await self._ask("appmanager", f"/apps/{app}")
        team = answer.get("team") if answer else None
        if not isinstance(team, str):
            return None
        await self.record(app, team)
        return team

    async def app_of(self, kind: str, ident: str) -> str | None:
        """The app a build/deployment/instance/target belongs to; None if unknown to its owner."""
        if not _SAFE.fullmatch(ident):
            return None
        key = (kind, ident)
        hit = self._apps.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        peer, path = LOOKUPS[kind]
        answer = await self._ask(peer, path.format(ident))
        app = answer.get("app") if answer else None
        app = app if isinstance(app, str) and app else None
        if answer is not None:
            self._apps[key] = (now + ID_TTL_S, app)
            if len(self._apps) > CACHE_MAX:
                self._apps.popitem(last=False)
        return app

    async def record(self, app: str, team: str) -> None:
        """Store app → team (idempotent; a replica that loses the insert race is fine)."""
        self._remember(app, team)
        async with self._sessions() as session:
            row = await session.get(AppOwner, app)
            if row is not None and row.team == team:
                return
            row = row or AppOwner(app=app, team=team)
            row.team, row.updated_at = team, datetime.now(UTC)
            session.add(row)
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()

    async def on_app_events(self, batch: Batch) -> None:
        """Worker handler: fold io.opsline.app.* events (they carry app and team)."""
        for record in batch.records:
            event = record.event
            if event is None or not event.type.startswith("io.opsline.app."):
                continue
            data = event.json() if event.data else None
            if isinstance(data, dict):
                app, team = data.get("app"), data.get("team")
                if isinstance(app, str) and app and isinstance(team, str) and team:
                    try:
                        await self.record(app, team)
                    except (SQLAlchemyError, OSError) as exc:
                        # the database is away: retry later, dead-letter nothing
                        raise TransientError(f"app owners: {exc}") from exc

    def _remember(self, app: str, team: str) -> None:
        self._teams[app] = team
        if len(self._teams) > CACHE_MAX:
            self._teams.popitem(last=False)

    async def _ask(self, peer: str, path: str) -> dict[str, Any] | None:
        base = self._peers.get(peer)
        if not base:
            raise OwnerUnavailable(f"no {peer} peer configured (OPSLINE_GATEWAY_PEERS)")
        try:
            response = await self._http.get(f"{base}/internal/v1{path}", headers=self._headers)
        except httpx.HTTPError as exc:
            raise OwnerUnavailable(f"{peer} unreachable: {type(exc).__name__}") from None
        if response.status_code in (404, 422):
            return None
        if response.status_code != 200:
            raise OwnerUnavailable(f"{peer} answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise OwnerUnavailable(f"{peer} answered with something other than JSON") from None
        return body if isinstance(body, dict) else None

"""Writes sent with an ``Idempotency-Key`` header are done once.

The key is checked when the request's unit of work opens; the response is stored in
that same transaction, so either the work and its recorded answer both exist or
neither does. A retry with the same key and the same request gets the stored answer;
the same key with a different request is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from fastapi import Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.context import Ctx
from boughs.idempotency import repository
from boughs.idempotency.models import IdempotencyKey
from boughs.kit.errors import BoughsError, Conflict, InvalidInput

HEADER = "idempotency-key"
KEEP_FOR = timedelta(hours=24)


class Replay(BoughsError):
    """Carries the stored answer of a request already done; rendered as that answer."""

    status = 200
    slug = "replay"
    title = "Replayed"

    def __init__(self, stored: IdempotencyKey) -> None:
        super().__init__(detail="replayed")
        # Copied now: the unit of work rolls back (and forgets the row) before this renders.
        self.body = bytes(stored.body)
        self.status_code = stored.status_code
        self.content_type = stored.content_type

    def response(self) -> Response:
        return Response(
            content=self.body,
            status_code=self.status_code,
            media_type=self.content_type,
            headers={"Idempotent-Replayed": "true"},
        )


@dataclass
class Pending:
    session: AsyncSession
    row: IdempotencyKey

    def record(self, response: Response) -> None:
        self.row.status_code = response.status_code
        self.row.content_type = response.media_type or "application/json"
        self.row.body = bytes(response.body)
        self.session.add(self.row)


async def begin(request: Request, ctx: Ctx) -> Pending | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 200:
        raise InvalidInput.on_field(
            "Idempotency-Key",
            "must be 1 to 200 characters",
            "send a unique value per logical request, such as a UUID",
        )
    body = await request.body()
    digest = hashlib.sha256(
        request.method.encode() + b" " + request.url.path.encode() + b"\n" + body
    ).hexdigest()
    existing = await repository.find(ctx.session, ctx.provider_id, ctx.actor.user_id, key)
    if existing is not None and existing.created_at > ctx.now() - KEEP_FOR:
        if existing.request_digest != digest:
            raise Conflict.on_field(
                "Idempotency-Key",
                "was already used for a different request",
                "use a new key for a new request; reuse a key only to retry the same request",
            )
        raise Replay(existing)
    if existing is not None:
        await ctx.session.delete(existing)
        await ctx.session.flush()
    row = IdempotencyKey(
        provider_id=ctx.provider_id,
        user_id=ctx.actor.user_id,
        key=key,
        request_digest=digest,
        status_code=0,
        content_type="",
        body=b"",
        created_at=ctx.now(),
    )
    return Pending(ctx.session, row)

"""SQLite reads on the event loop's own thread, for the async engine.

aiosqlite runs every call on a helper thread, and each hand-over costs more than a
typical read takes. Readers never wait for locks in WAL mode, so read-only units of
work run the standard sqlite3 driver inline instead. Writes keep aiosqlite: a writer
may wait for the write lock, and that wait must not stall the event loop.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL
from sqlalchemy.pool import AsyncAdaptedQueuePool, Pool

DRIVER = "sqlite+boughs_inline"


class InlineCursor(sqlite3.Cursor):
    async def _async_soft_close(self) -> None:
        """The async result layer calls this; a plain cursor has nothing to release."""


class InlineConnection(sqlite3.Connection):
    def cursor(self, factory: Any = InlineCursor) -> Any:
        return super().cursor(factory)


class InlineSQLiteDialect(SQLiteDialect_pysqlite):
    is_async = True
    supports_statement_cache = True

    @classmethod
    def get_pool_class(cls, url: URL) -> type[Pool]:
        return AsyncAdaptedQueuePool

    def create_connect_args(self, url: URL) -> Any:
        args, kwargs = super().create_connect_args(url)
        kwargs.update(factory=InlineConnection, check_same_thread=False)
        return args, kwargs


registry.register("sqlite.boughs_inline", __name__, "InlineSQLiteDialect")

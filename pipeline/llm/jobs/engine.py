"""The database under the jobs: URLs, the engine of either dialect (SQLite's pragmas and
`BEGIN IMMEDIATE`, PostgreSQL's pool), the transactions every part of `JobDB` runs in, and
`INSERT ... ON CONFLICT DO NOTHING`."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine


class JobDBError(RuntimeError):
    """The job database cannot be opened or used."""


def database_url(url: str | None, default_path: Path) -> str:
    """A SQLAlchemy URL: `url` (a PostgreSQL or SQLite URL, or a file path) or the default file."""
    if not url:
        return f"sqlite:///{Path(default_path).resolve()}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" in url:
        return url
    return f"sqlite:///{Path(url).resolve()}"


class Transactions:
    """What every part of `JobDB` stands on: its engine and one transaction at a time per
    SQLite database."""

    engine: Engine
    _lock: Any

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A connection in a transaction, committed on success."""
        with self._lock or contextlib.nullcontext(), self.engine.begin() as conn:
            yield conn

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name


def insert_ignore(conn: Connection, table: sa.Table, values: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on either dialect."""
    if not values:
        return
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(dialect_insert(table).on_conflict_do_nothing(), values)


def open_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy emit BEGIN: IMMEDIATE takes the write lock at once, so a claim's
            # read and update are one atomic step across processes.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql"):
        return sa.create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    raise JobDBError(f"unsupported job database URL {url!r}: use sqlite:/// or postgresql://")

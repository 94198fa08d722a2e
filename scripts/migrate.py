"""``python -m scripts.migrate``: creates the assistant's database and tables if they are missing.

Usage: ``python -m scripts.migrate [--url URL]``. The database is the assistant's (``CLINIC_DB_URL``, else the
``tracker_store`` of ``CLINIC_ENDPOINTS``, else of ``RASA_ENDPOINTS``, else of ``endpoints.yml``: see
:func:`core.store.database_url`). It creates, each only if missing:

* the PostgreSQL database itself (through the ``postgres`` maintenance database), or the SQLite file's folder;
* Rasa's ``events`` table, from the tracker store's own SQLAlchemy model;
* the ``consultation_requests`` tables (:meth:`core.store.RequestStore.create_table`);
* the staff console's tables and its indexes on ``events`` (``console.db.create_schema``);
* the messaging channels' ``channel_deliveries`` and ``channel_options`` (:mod:`channels.platform_store`).

It changes nothing that exists, so it can run at every start (``make run`` does) and again after a database
was dropped and recreated: the running servers then work again without a restart, since the tracker store
never creates tables while serving messages. Exit status 2 (with the reason) when the database cannot be
reached or the settings cannot be used.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from core.settings import ConfigError, database_url
from core.store import RequestStore

MAINTENANCE_DB = "postgres"


def describe(error: BaseException) -> str:
    """The error's type and the first line of the database's message (never a statement's values)."""
    if not isinstance(error, SQLAlchemyError):
        return str(error)
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    first = lines[0].strip()[:200] if lines else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def ensure_database(url: URL) -> bool:
    """Creates the PostgreSQL database ``url`` names if it does not exist; whether it created it.

    Connects to the ``postgres`` maintenance database with the same credentials. Another process creating
    the same database at the same moment is not an error."""
    maintenance = sa.create_engine(url.set(database=MAINTENANCE_DB), isolation_level="AUTOCOMMIT",
                                   hide_parameters=True, future=True)
    try:
        with maintenance.connect() as connection:
            exists = connection.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                        {"name": url.database}).first()
            if exists:
                return False
            name = maintenance.dialect.identifier_preparer.quote_identifier(url.database)
            try:
                connection.execute(sa.text(f"CREATE DATABASE {name}"))
            except sa.exc.ProgrammingError as error:
                if getattr(getattr(error, "orig", None), "pgcode", None) == "42P04":  # duplicate_database
                    return False
                raise
            return True
    finally:
        maintenance.dispose()


def _tables(engine: Engine) -> set:
    return set(sa.inspect(engine).get_table_names())


def _create_all(engine: Engine) -> None:
    from rasa.core.tracker_store import SQLTrackerStore

    SQLTrackerStore.Base.metadata.create_all(engine)  # Rasa's `events` table, exactly as Rasa defines it
    from channels.platform_store import create_tables as create_channel_tables

    create_channel_tables(engine)  # the messaging channels' delivery ids and offered options
    try:
        from console import db as console_db
    except ImportError:  # a checkout without the console
        console_db = None
    create_schema: Optional[Callable[[Engine], None]] = getattr(console_db, "create_schema", None)
    if create_schema is not None:
        create_schema(engine)


def migrate(url: Union[URL, str], attempts: int = 3) -> List[str]:
    """Creates what is missing in the database at ``url``; the names of what it created (empty: nothing)."""
    url = make_url(url)
    created: List[str] = []
    backend = url.get_backend_name()
    if backend == "postgresql" and url.database:
        if ensure_database(url):
            created.append(f"database {url.database}")
    elif backend == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, hide_parameters=True, future=True)
    try:
        before = _tables(engine)
        for attempt in range(1, attempts + 1):
            try:
                # RequestStore owns its tables' definition; it creates them on its own engine.
                requests = RequestStore(url)
                try:
                    requests.create_table()
                finally:
                    requests.engine.dispose()
                _create_all(engine)
                break
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError):
                # Another server migrating at the same moment (PostgreSQL reports the race as a duplicate);
                # the second try finds the tables. A database that cannot be reached fails every try.
                if attempt == attempts:
                    raise
                time.sleep(0.5 * attempt)
        created += sorted(_tables(engine) - before)
    finally:
        engine.dispose()
    return created


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.migrate", description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a SQLAlchemy URL (default: the assistant's configured database)")
    args = parser.parse_args(argv)
    os.umask(0o077)  # a SQLite file created here is private, as the servers' files are
    try:
        url = make_url(args.url or database_url())
        created = migrate(url)
    except (ConfigError, SQLAlchemyError) as error:
        print(f"The database cannot be prepared: {describe(error)}", file=sys.stderr)
        return 2
    where = url.render_as_string(hide_password=True)
    print(f"Database ready ({where}): " + (f"created {', '.join(created)}." if created else "nothing to create."),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

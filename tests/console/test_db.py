"""The console's database connection (console.db): errors carry no values."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from console import db
from core.store import make_engine


def test_database_errors_carry_no_values(url):
    engine = make_engine(url)
    secret = "call me at 3105550134, Maria Lopez"
    with pytest.raises(sa.exc.DBAPIError) as caught:
        with engine.connect() as connection:
            connection.execute(sa.text("select * from no_such_table\nwhere :v = 'x'"), {"v": secret})
    assert "3105550134" not in str(caught.value) and "hidden" in str(caught.value)
    described = db.describe_error(caught.value)
    assert described.startswith("ProgrammingError") or described.startswith("OperationalError")
    assert "no_such_table" in described and "3105550134" not in described and "\n" not in described
    engine.dispose()

"""Database errors as the store reports them: real SQLite errors, classified transient or not,
turned into one-line StoreErrors, retried a bounded number of times."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from lethe_audit.errors import StoreError
from lethe_audit.store import RETRY_ATTEMPTS, is_transient, retry_transient, store_error


def _locked_error(tmp_path: Path) -> SQLAlchemyError:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}", connect_args={"timeout": 0})
    holder = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with holder.connect() as h:
        h.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        h.commit()
        h.exec_driver_sql("BEGIN IMMEDIATE")
        h.exec_driver_sql("INSERT INTO t VALUES (1)")
        try:
            with engine.connect() as c:
                c.exec_driver_sql("INSERT INTO t VALUES (2)")
        except SQLAlchemyError as e:
            return e
        finally:
            engine.dispose()
    raise AssertionError("the second writer was not refused")


def test_locked_database_is_transient_and_a_one_line_store_error(tmp_path: Path) -> None:
    err = _locked_error(tmp_path)
    assert is_transient(err)
    wrapped = store_error(err, "database write failed")
    assert isinstance(wrapped, StoreError) and "\n" not in str(wrapped)
    assert "database is locked" in str(wrapped) and "try again" in str(wrapped)
    try:
        raise wrapped from err
    except StoreError as e:
        assert is_transient(e)  # judged by its cause


def test_a_bad_statement_is_not_transient(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'y.db'}")
    with pytest.raises(SQLAlchemyError) as ei, engine.connect() as c:
        c.exec_driver_sql("SELECT * FROM no_such_table")
    assert not is_transient(ei.value)
    assert "no such table" in str(store_error(ei.value, "read"))


def test_retry_is_bounded_and_stops_at_a_permanent_error(tmp_path: Path) -> None:
    locked = _locked_error(tmp_path)
    calls: list[int] = []

    def always_locked() -> None:
        calls.append(1)
        raise locked

    with pytest.raises(StoreError, match="database is locked"):
        retry_transient(always_locked, what="writing")
    assert len(calls) == RETRY_ATTEMPTS

    def fails_once() -> str:
        calls.append(2)
        if calls.count(2) == 1:
            raise locked
        return "ok"

    assert retry_transient(fails_once) == "ok" and calls.count(2) == 2

    def permanent() -> None:
        calls.append(3)
        raise StoreError("constraint failed")

    with pytest.raises(StoreError, match="constraint"):
        retry_transient(permanent)
    assert calls.count(3) == 1

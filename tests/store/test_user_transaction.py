"""cfdb statements inside a transaction the user opened join it instead of aborting it."""

from __future__ import annotations

import cfdb


def test_a_cfdb_statement_joins_the_users_transaction() -> None:
    db = cfdb.connect()
    try:
        db.sql("CREATE TABLE t (a INTEGER)")
        db.sql("BEGIN TRANSACTION")
        db.sql("INSERT INTO t VALUES (1)")
        db.sql("LOAD DATASET compas")  # a cfdb statement: runs in the user's transaction
        db.sql("INSERT INTO t VALUES (2)")  # the transaction is still usable
        db.sql("ROLLBACK")
        assert db.sql("SELECT count(*) FROM t").fetchall() == [(0,)]
        # the dataset was loaded in the transaction, so it went with the rollback
        store = db.session.store
        assert not store.table_exists("Instances") or store.execute(
            "SELECT count(*) FROM Instances"
        ) == [(0,)]
    finally:
        db.close()


def test_outside_a_transaction_cfdb_statements_commit() -> None:
    db = cfdb.connect()
    try:
        assert not db.session.store.in_transaction()
        db.sql("LOAD DATASET compas")
        db.sql("BEGIN TRANSACTION")
        assert db.session.store.in_transaction()
        db.sql("COMMIT")
        assert db.sql("SELECT count(*) > 0 FROM Instances").fetchall() == [(True,)]
    finally:
        db.close()

"""The SQL box: a user's statements against the served file, a page of rows at a time.

Read-only (the default): a DuckDB read-only connection that cannot write, nor read any
other file. With ``read_only=False`` the statements go through cfdb itself (so cfdb
statements such as ``MATERIALIZE GRID`` run too), on a connection opened for the request and
closed after it, so the file is not held between requests.
"""

from __future__ import annotations

import threading

from cfdb.errors import CfdbError, CfdbExecutionError
from cfdb.store.explore import DEFAULT_TIME_LIMIT, ExploreFile, Rows


def run_sql(
    file: ExploreFile,
    text: str,
    offset: int,
    limit: int,
    *,
    read_only: bool = True,
    time_limit: float = DEFAULT_TIME_LIMIT,
) -> Rows:
    """Rows ``offset`` .. ``offset + limit`` of the last statement of ``text``."""
    if read_only:
        with file.reader() as r:
            return r.page(text, offset, limit, time_limit)
    import cfdb

    with file.lock:
        db = cfdb.connect(file.path)
        timer = threading.Timer(time_limit, db.interrupt)
        timer.start()
        try:
            rel = db.sql(text)
            if rel is None:
                return Rows(
                    [], [], sql=text, message="The statements ran; the last returns no rows."
                )
            got = rel.limit(limit + 1, offset).fetchall()
            return Rows(list(rel.columns), got[:limit], sql=text, more=len(got) > limit)
        except CfdbError:
            raise
        except Exception as exc:  # a DuckDB error raised while fetching
            raise CfdbExecutionError(str(exc).split("\n")[0]) from exc
        finally:
            timer.cancel()
            db.close()

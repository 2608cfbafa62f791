"""Schema versions: the numbered DDL files under ``sql/schema`` and the ``cfdb_meta`` row.

Opening a file applies every migration newer than its recorded version, in one transaction;
a file written by a newer cfdb (a version above the last known) is refused.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

from cfdb.errors import CfdbError, CfdbSchemaError
from cfdb.store.connection import Store

_NAME_RE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_CREATED_RE = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:TABLE|VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?\"?(\w+)",
    re.IGNORECASE,
)


def sql_dir() -> Path:
    """Where the shipped ``sql/`` folder is: inside the wheel, or at the source checkout root."""
    packaged = Path(str(resources.files("cfdb"))) / "_sql"
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parents[2] / "sql"
    if source.is_dir():
        return source
    raise CfdbSchemaError("cfdb's sql/ folder is missing from this installation")


@cache
def migrations() -> tuple[tuple[int, str, str], ...]:
    """(version, file name, SQL text) of every schema migration, in order."""
    found = []
    for path in sorted((sql_dir() / "schema").iterdir()):
        m = _NAME_RE.match(path.name)
        if m:
            found.append((int(m.group(1)), path.name, path.read_text()))
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise CfdbSchemaError(f"schema migrations are not numbered 1..n: {versions}")
    return tuple(found)


def latest_version() -> int:
    return len(migrations())


def current_version(store: Store) -> int:
    """The schema version recorded in the file; 0 for a database cfdb never touched."""
    if not store.table_exists("cfdb_meta"):
        return 0
    try:
        rows = store.execute("SELECT value FROM cfdb_meta WHERE key = 'schema_version'")
    except CfdbError as exc:
        raise CfdbSchemaError(
            f"this database is damaged or not a cfdb database: cfdb_meta cannot be read ({exc.message})"
        ) from None
    if not rows:
        return 0
    value = rows[0][0]
    if not str(value).strip().isdigit():
        raise CfdbSchemaError(
            f"this is not a cfdb database, or a damaged one: cfdb_meta records schema_version "
            f"{value!r}, not a version number"
        )
    return int(str(value).strip())


def _cfdb_objects() -> set[str]:
    """Lower-case names of the tables and views the migrations create."""
    names = set()
    for _, _, text in migrations():
        names.update(m.lower() for m in _CREATED_RE.findall(text))
    return names


def check_foreign(store: Store) -> None:
    """Refuse to lay cfdb's schema over a DuckDB file that already holds tables of the same
    names without recording a cfdb schema version: it is someone else's database."""
    clash = sorted(
        name
        for (name,) in store.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
            "AND database_name = current_database() UNION ALL "
            "SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' "
            "AND database_name = current_database() AND NOT internal"
        )
        if name.lower() in _cfdb_objects()
    )
    if clash:
        raise CfdbSchemaError(
            f"this DuckDB file is not a cfdb database: it records no cfdb schema version but "
            f"already has {', '.join(clash)}",
            hint="open a new file for cfdb, or attach this one (ATTACH 'file' AS other) and "
            "copy what you need",
        )


def check_version(store: Store) -> int:
    """Refuse a file from a newer cfdb; returns its version."""
    version = current_version(store)
    if version > latest_version():
        raise CfdbSchemaError(
            f"this database has cfdb schema version {version}, newer than this cfdb "
            f"understands ({latest_version()})",
            hint="upgrade cfdb to open it",
        )
    return version


def _key_instances(store: Store) -> None:
    # Instances' columns follow the data, so its key is declared here, not in a DDL file.
    from cfdb.store.catalog import create_counterfactuals_view, key_instances

    key_instances(store)
    create_counterfactuals_view(store)


#: Steps a migration needs beyond its SQL file: data-dependent tables.
_AFTER = {5: _key_instances}


def migrate(store: Store, target: int | None = None) -> int:
    """Apply the migrations above the file's version (up to ``target``); returns the version."""
    target = latest_version() if target is None else target
    version = check_version(store)
    if version >= target:
        return version
    if version == 0:
        check_foreign(store)
    with store.transaction():
        for number, _name, text in migrations():
            if version < number <= target:
                for statement in _statements(text):
                    store.execute(statement)
                if number in _AFTER:
                    _AFTER[number](store)
        store.execute(
            "INSERT OR REPLACE INTO cfdb_meta VALUES ('schema_version', ?)", [str(target)]
        )
    return target


def _statements(text: str) -> list[str]:
    """Split a DDL file into statements on top-level semicolons, skipping ``--`` comments and
    quoted text (so a semicolon inside a comment or a string literal is not a separator)."""
    out, current, i, n = [], [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end == -1 else end
            continue
        if ch in ("'", '"'):
            end = i + 1
            while end < n:
                if text[end] == ch and not text.startswith(ch * 2, end):
                    break
                end += 2 if text.startswith(ch * 2, end) else 1
            current.append(text[i : end + 1])
            i = end + 1
            continue
        if ch == ";":
            statement = "".join(current).strip()
            if statement:
                out.append(statement)
            current = []
        else:
            current.append(ch)
        i += 1
    statement = "".join(current).strip()
    if statement:
        out.append(statement)
    return out

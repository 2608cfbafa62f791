"""The explorer's web application (Starlette): routes, page assembly, error pages.

Pages are rendered on the server (Jinja2) from the queries of :mod:`cfdb.serve.queries`,
run through :mod:`cfdb.store.explore` (one read-only connection per request). Charts are
plotly.js figures (:mod:`cfdb.serve.charts`) drawn by a few lines of JavaScript
(``static/app.js``). The grid page's unit panel is filled from a JSON endpoint when a unit
is clicked. Any error becomes a page that says what went wrong, never a traceback.

Static files are a fixed table of three names; no part of a URL is ever joined to a path.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from cfdb.errors import CfdbCatalogError, CfdbError, CfdbLockError, CfdbSchemaError
from cfdb.serve import charts
from cfdb.serve import queries as Q
from cfdb.serve.formatting import clean, fmt, int_param, metrics_text, sql_href, to_json
from cfdb.serve.grid_page import BANDS, grid_context, unit_panel
from cfdb.serve.sqlbox import run_sql
from cfdb.store.catalog import quote
from cfdb.store.explore import ExploreFile, Reader, Rows

log = logging.getLogger("cfdb.serve")

PAGE = 25
SQL_PAGE = 50

_STATIC_DIR = Path(__file__).parent / "static"


def _static_files() -> dict[str, tuple[Path, str]]:
    plotly_js = resources.files("plotly") / "package_data" / "plotly.min.js"
    return {
        "plotly.min.js": (Path(str(plotly_js)), "text/javascript"),
        "app.js": (_STATIC_DIR / "app.js", "text/javascript"),
        "app.css": (_STATIC_DIR / "app.css", "text/css"),
    }


# -- the application -------------------------------------------------------------------------
class Explorer:
    """Pages over one database file. ``read_only=False`` lets the SQL box write."""

    def __init__(self, path: str, *, read_only: bool = True, bands: int = BANDS) -> None:
        self.file = ExploreFile(path)
        self.read_only = read_only
        self.bands = bands
        self.env = Environment(
            loader=PackageLoader("cfdb.serve", "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["fmt"] = fmt
        self.env.filters["metrics"] = metrics_text
        self.env.filters["sqlhref"] = sql_href
        self.env.filters["tojson_safe"] = lambda v: to_json(clean(v))
        self.static = _static_files()
        #: Last progress seen per grid, shown while another process holds the file.
        self.progress: dict[str, tuple[float, dict[str, Any]]] = {}

    # -- plumbing ----------------------------------------------------------------------------
    def render(
        self, template: str, request: Request, status: int = 200, **context: Any
    ) -> HTMLResponse:
        page = self.env.get_template(template).render(
            request=request,
            file=self.file,
            read_only=self.read_only,
            nav=context.pop("nav", ""),
            **context,
        )
        return HTMLResponse(page, status_code=status)

    def error_page(self, request: Request, exc: BaseException) -> HTMLResponse:
        if isinstance(exc, CfdbLockError):
            status, title = 503, "The database is busy"
        elif isinstance(exc, CfdbCatalogError):
            status, title = 404, "Not found"
        elif isinstance(exc, CfdbSchemaError):
            status, title = 422, "Not a cfdb database"
        elif isinstance(exc, CfdbError):
            status, title = 400, "Error"
        elif isinstance(exc, HTTPException):
            status = exc.status_code
            title = {404: "Not found", 403: "Refused"}.get(status, "Error")
        else:
            log.exception("internal error on %s", request.url.path)
            status, title = 500, "Internal error"
        if isinstance(exc, CfdbError):
            text = exc.render()
        elif isinstance(exc, HTTPException):
            text = f"{request.url.path}: {exc.detail}"
        else:
            text = f"{type(exc).__name__}: {exc}"
        last = None
        if isinstance(exc, CfdbLockError) and request.url.path.startswith("/grid/"):
            name = request.path_params.get("name")
            if name in self.progress:
                seen, prog = self.progress[name]
                last = {"seen": time.strftime("%H:%M:%S", time.localtime(seen)), **prog}
        return self.render("error.html", request, status=status, title=title, text=text, last=last)

    def view(self, fn: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                return fn(request)
            except Exception as exc:
                return self.error_page(request, exc)

        endpoint.__name__ = fn.__name__
        return endpoint

    def require_cfdb(self, r: Reader) -> None:
        if r.schema_version() is None:
            raise CfdbSchemaError(
                f"{self.file.name} is a DuckDB database but not a cfdb database (it has no "
                "cfdb_meta table)",
                hint="open it with cfdb (cfdb shell FILE) to add cfdb's tables; the SQL box "
                "still reads it",
            )

    # -- pages -------------------------------------------------------------------------------
    def overview(self, request: Request) -> Response:
        with self.file.reader() as r:
            self.require_cfdb(r)
            have = r.tables()
            sections: list[tuple[str, Rows]] = []
            counted = [t for t in Q.COUNTED if t.lower() in have]
            sections.append(("Tables", r.rows(Q.counts(counted))))
            if "instances" in have and "split" in [c.lower() for c in r.columns("Instances")]:
                sections.append(("Instances per split", r.rows(Q.SPLITS)))
            sections.append(("Features", r.rows(Q.FEATURES)))
            sections.append(("Models", r.rows(Q.MODELS)))
            grids = r.rows(Q.GRIDS)
            runs = r.rows(Q.RUNS)
            cfq = r.rows(Q.CFQUERIES)
            batches = r.rows(Q.BATCHES)
        return self.render(
            "overview.html",
            request,
            nav="overview",
            sections=sections,
            grids=grids,
            runs=runs,
            cfq=cfq,
            batches=batches,
            size=self.file.size(),
        )

    def grids(self, request: Request) -> Response:
        with self.file.reader() as r:
            self.require_cfdb(r)
            grids = r.rows(Q.GRIDS)
        return self.render("grids.html", request, nav="grids", grids=grids)

    def grid(self, request: Request) -> Response:
        name = request.path_params["name"]
        with self.file.reader() as r:
            self.require_cfdb(r)
            ctx = grid_context(r, name, request.query_params, self.bands)
        self.progress[ctx["grid"]["Name"]] = (time.time(), dict(ctx["prog"]))
        refresh = int_param(request.query_params.get("refresh"), 0)
        return self.render("grid.html", request, nav="grids", refresh=refresh, **ctx)

    def grid_unit(self, request: Request) -> Response:
        """JSON for the unit panel (:func:`cfdb.serve.grid_page.unit_panel`)."""
        try:
            with self.file.reader() as r:
                self.require_cfdb(r)
                body = unit_panel(r, request.path_params["name"], request.query_params, self.bands)
        except CfdbError as exc:
            status = 503 if isinstance(exc, CfdbLockError) else 400
            if isinstance(exc, CfdbCatalogError):
                status = 404
            return JSONResponse({"error": exc.render()}, status_code=status)
        return Response(json.dumps(body, default=str), media_type="application/json")

    def cf_list(self, request: Request) -> Response:
        with self.file.reader() as r:
            self.require_cfdb(r)
            cfq = r.rows(Q.CFQUERIES)
            batches = r.rows(Q.BATCHES)
        return self.render("cfs.html", request, nav="cfs", cfq=cfq, batches=batches)

    def cf_query(self, request: Request) -> Response:
        qid = int_param(request.path_params["qid"], -1)
        q = request.query_params
        page = int_param(q.get("page"), 0)
        with self.file.reader() as r:
            self.require_cfdb(r)
            found = r.rows(Q.CFQUERY, {"query": qid}).dicts()
            if not found:
                raise CfdbCatalogError(f"there is no CFQL query {qid}")
            query = found[0]
            p = {"query": qid, "limit": PAGE + 1, "offset": page * PAGE}
            status = r.rows(Q.CONDITION_STATUS, p)
            feats = r.rows(Q.FEATURE_NAMES).column("Name")
            optimal = None
            for table, alias in (("Prediction_CFs", "PC"), ("CFs", "C")):
                for col in r.columns(table):
                    if col.lower() == "optimal":
                        optimal = f"{alias}.{quote(col)}"
            rows = r.rows(Q.cf_rows([quote(f) for f in feats], optimal), p)
            groups = r.rows(Q.GROUP_FEATURES).column("Name")
            group = q.get("group") if q.get("group") in groups else (groups[0] if groups else None)
            burden = r.rows(Q.burden(quote(group)), p) if group else None
            ncfs = r.scalar("SELECT count(*) FROM Prediction_CFs WHERE QueryId = $query", p)
        more = len(rows.rows) > PAGE
        items = [_cf_item(row, feats) for row in rows.dicts()[:PAGE]]
        chart = None
        if burden is not None and burden.rows:
            chart = charts.bars(
                burden.column("Group"),
                burden.column("Burden"),
                f"Burden per {group}: mean distance of each prediction's closest CF",
                "burden",
                [f"{n} predictions" for n in burden.column("Predictions")],
            )
        return self.render(
            "cfquery.html",
            request,
            nav="cfs",
            query=query,
            conditions=status,
            items=items,
            rows_sql=rows.sql,
            page=page,
            more=more,
            group=group,
            groups=groups,
            burden=burden,
            burden_chart=chart,
            ncfs=ncfs,
            optimal_recorded=optimal is not None,
        )

    def value_list(self, request: Request) -> Response:
        with self.file.reader() as r:
            self.require_cfdb(r)
            runs = r.rows(Q.RUNS)
        return self.render("values.html", request, nav="values", runs=runs)

    def value_run(self, request: Request) -> Response:
        run = int_param(request.path_params["run"], -1)
        q = request.query_params
        page = int_param(q.get("page"), 0)
        order = q.get("order") if q.get("order") in Q.TUPLE_ORDERS else "harmful"
        with self.file.reader() as r:
            self.require_cfdb(r)
            found = r.rows(Q.RUN, {"run": run}).dicts()
            if not found:
                raise CfdbCatalogError(f"there is no valuation run {run}")
            info = found[0]
            relations = r.rows(Q.RELATIONS, {"run": run})
            names = [str(n) for n in relations.column("Relation")]
            relation = q.get("relation") if q.get("relation") in names else ""
            p = {
                "run": run,
                "relation": relation,
                "limit": PAGE + 1,
                "offset": page * PAGE,
                "bins": 40,
                "points": 200,
            }
            tuples = r.rows(Q.tuples(order), p)
            hist = r.rows(Q.HISTOGRAM, p)
            curve = r.rows(Q.REPAIR_CURVE, p)
        more = len(tuples.rows) > PAGE
        tuples.rows = tuples.rows[:PAGE]
        return self.render(
            "run.html",
            request,
            nav="values",
            info=info,
            relations=relations,
            names=names,
            relation=relation,
            order=order,
            tuples=tuples,
            page=page,
            more=more,
            hist=charts.histogram(hist) if hist.rows else None,
            hist_sql=hist.sql,
            repair=charts.repair(curve, info["Utility"] or "utility") if curve.rows else None,
            repair_sql=curve.sql,
        )

    def sql(self, request: Request) -> Response:
        q = request.query_params
        text = (q.get("q") or "").strip()
        # A page of another site may not make the browser run statements here (an <img> whose
        # URL is a DELETE, with --no-read-only); browsers label such requests.
        if text and request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
            raise HTTPException(403, "a statement sent from another site is refused")
        page = int_param(q.get("page"), 0)
        result, error = None, None
        if text:
            try:
                result = run_sql(
                    self.file, text, page * SQL_PAGE, SQL_PAGE, read_only=self.read_only
                )
            except CfdbError as exc:
                error = exc.render()
                if self.read_only and "read-only" in error:
                    error = (
                        "This explorer opened the file read-only: the SQL box cannot write.\n"
                        + error
                    )
        status = 400 if error else 200
        return self.render(
            "sql.html",
            request,
            status=status,
            nav="sql",
            text=text,
            result=result,
            error=error,
            page=page,
        )

    def static_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.static:
            raise HTTPException(404, "no such file")
        path, media = self.static[name]
        return FileResponse(path, media_type=media, headers={"Cache-Control": "max-age=3600"})

    def not_found(self, request: Request, exc: Exception) -> Response:
        return self.error_page(request, exc)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
    return a == b


def _cf_item(row: dict[str, Any], features: list[str]) -> dict[str, Any]:
    diff = []
    for f in features:
        old, new = row[f"I.{f}"], row[f"C.{f}"]
        diff.append(
            {
                "name": f,
                "old": old,
                "new": new,
                "changed": row["CfId"] is not None and not _same(old, new),
            }
        )
    return {**row, "diff": diff}


def create_app(
    path: str,
    *,
    read_only: bool = True,
    bands: int = BANDS,
    allowed_hosts: list[str] | None = None,
) -> Starlette:
    """The explorer over the database file ``path``; grids of more than ``bands`` subsets
    are drawn as that many bands. With ``allowed_hosts``, requests naming another host are
    refused (a web page cannot reach a localhost explorer by DNS rebinding)."""
    ex = Explorer(path, read_only=read_only, bands=bands)
    routes = [
        Route("/", ex.view(ex.overview)),
        Route("/grids", ex.view(ex.grids)),
        Route("/grid/{name}", ex.view(ex.grid)),
        Route("/grid/{name}/unit", ex.grid_unit),
        Route("/cfs", ex.view(ex.cf_list)),
        Route("/cfs/{qid}", ex.view(ex.cf_query)),
        Route("/values", ex.view(ex.value_list)),
        Route("/values/{run}", ex.view(ex.value_run)),
        Route("/sql", ex.view(ex.sql)),
        Route("/static/{name}", ex.view(ex.static_file)),
    ]
    middleware = []
    if allowed_hosts:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={404: ex.not_found, 405: ex.not_found},
    )
    app.state.explorer = ex
    return app

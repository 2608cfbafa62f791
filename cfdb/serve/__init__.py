"""``cfdb serve``: a local web explorer of a cfdb database file.

Pages: the file's overview, each grid (the data-counterfactual picture of Vincent's memo:
subsets × slices, unit values, scaling laws), each CFQL query's counterfactuals and burden,
each valuation run's data values, and a SQL box. Needs the ``serve`` extra (Starlette,
uvicorn, Jinja2, plotly for its bundled plotly.js); :mod:`cfdb.serve.command` imports them
only when the server starts.
"""

from __future__ import annotations

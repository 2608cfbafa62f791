"""c-tables: conditions over counterfactual variables, their evaluation and z3 (the only place
importing z3 besides the SMT generator)."""

from __future__ import annotations

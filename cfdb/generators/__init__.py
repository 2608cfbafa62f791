"""Counterfactual generators, one module each, one registry (:data:`GENERATORS`)."""

from __future__ import annotations

from cfdb.generators.base import GENERATORS, GenerationTask, Generator, take, valid_mask
from cfdb.generators.distance import DISTANCES, distance

__all__ = ["DISTANCES", "GENERATORS", "GenerationTask", "Generator", "distance", "take",
           "valid_mask"]

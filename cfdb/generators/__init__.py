"""Counterfactual generators, one module each, one registry (:data:`GENERATORS`).

Built-in generators (registered on import): ``nearest`` (closest valid pool rows),
``growing_spheres`` (Laugel et al. 2018) and ``random`` (DiCE-style random sampling).
"""

from __future__ import annotations

from cfdb.generators.base import GENERATORS, GenerationTask, Generator, take, valid_mask
from cfdb.generators.distance import DISTANCES, distance
from cfdb.generators.growing_spheres import GrowingSpheres
from cfdb.generators.nearest import Nearest
from cfdb.generators.random_sampling import RandomSampling
from cfdb.generators.smt import Smt as Smt  # registers "smt"

__all__ = [
    "DISTANCES",
    "GENERATORS",
    "GenerationTask",
    "Generator",
    "GrowingSpheres",
    "Nearest",
    "RandomSampling",
    "distance",
    "take",
    "valid_mask",
]

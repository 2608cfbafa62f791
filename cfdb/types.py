"""Small immutable values shared by every layer (stdlib only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FEATURE_TYPES = ("numeric", "integer", "categorical", "boolean")

#: A column-oriented frame: column name -> 1-D numpy array (object dtype for strings).
Columns = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class FeatureSpec:
    """One row of the ``Features`` table: how a feature is typed, bounded and distanced.

    Attributes:
        name: the column name in ``Instances`` and ``CFs``.
        type: one of :data:`FEATURE_TYPES`.
        domain: the active domain of a categorical/boolean feature, as strings.
        min: smallest value of a numeric/integer feature.
        max: largest value of a numeric/integer feature.
        mad: median absolute deviation ×1.4826 (0 replaced by 1), for the tabular distance.
        mutable: whether a counterfactual may change this feature.
    """

    name: str
    type: str
    domain: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    mad: float | None = None
    mutable: bool = True

    @property
    def is_categorical(self) -> bool:
        return self.type in ("categorical", "boolean")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "domain": list(self.domain) if self.domain is not None else None,
            "min": self.min,
            "max": self.max,
            "mad": self.mad,
            "mutable": self.mutable,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        domain = d.get("domain")
        return cls(
            name=d["name"],
            type=d["type"],
            domain=tuple(str(v) for v in domain) if domain is not None else None,
            min=d.get("min"),
            max=d.get("max"),
            mad=d.get("mad"),
            mutable=bool(d.get("mutable", True)),
        )


@dataclass(frozen=True)
class Span:
    """A 0-based half-open character range ``[start, end)`` in a script."""

    start: int
    end: int


@dataclass(frozen=True)
class Params:
    """Ordered ``WITH (name = value, ...)`` parameters of a statement."""

    items: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.items)

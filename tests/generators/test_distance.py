"""The l0, l1 and tabular distances on hand-computed examples and against the definitions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfdb.errors import CfdbPluginError
from cfdb.generators import DISTANCES, distance
from cfdb.types import FeatureSpec
from tests.generators.helpers import row_distance, rows_of

FEATURES = [
    FeatureSpec("num", "numeric", min=0, max=20, mad=2.0),
    FeatureSpec("count", "integer", min=0, max=9, mad=0.0),  # MAD 0 counts as 1
    FeatureSpec("cat", "categorical", domain=("a", "b", "c")),
    FeatureSpec("flag", "boolean", domain=("false", "true")),
]
X = {"num": 10.0, "count": 5, "cat": "a", "flag": True}
ROWS = {
    "num": np.array([14.0, 10.0, 10.0, 7.0]),
    "count": np.array([5, 2, 5, 5]),
    "cat": np.array(["a", "b", "a", "c"], dtype=object),
    "flag": np.array([True, False, True, True]),
}


def test_l0_counts_changed_features() -> None:
    assert distance("l0", X, ROWS, FEATURES).tolist() == [1, 3, 0, 2]


def test_l1_scales_numeric_by_mad() -> None:
    # |14-10|/2 = 2;  |5-2|/1 + cat + flag = 5;  0;  |7-10|/2 + cat = 2.5
    assert distance("l1", X, ROWS, FEATURES).tolist() == [2.0, 5.0, 0.0, 2.5]


def test_tabular_weights_by_feature_kind() -> None:
    # n = 4, n_cat = 2, n_num = 2: 0.5 * categorical changes + 0.5 * scaled numeric moves.
    assert distance("tabular", X, ROWS, FEATURES).tolist() == [1.0, 2.5, 0.0, 1.25]


def test_tabular_with_uneven_kinds() -> None:
    features = FEATURES[:1] + FEATURES[2:3]  # one numeric, one categorical: weights 1/2
    rows = {"num": np.array([16.0]), "cat": np.array(["b"], dtype=object)}
    assert distance("tabular", X, rows, features).tolist() == [0.5 * 1 + 0.5 * 3.0]
    only_num = [FeatureSpec("num", "numeric", mad=None)]  # no MAD: unscaled
    assert distance("tabular", X, {"num": np.array([13.0])}, only_num).tolist() == [3.0]


def test_unknown_distance() -> None:
    with pytest.raises(CfdbPluginError, match="l2"):
        distance("l2", X, ROWS, FEATURES)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 20, allow_nan=False),
            st.integers(0, 9),
            st.sampled_from(["a", "b", "c"]),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from(DISTANCES),
)
def test_matches_the_definition(rows: list[tuple], kind: str) -> None:
    cols = {
        "num": np.array([r[0] for r in rows], dtype=np.float64),
        "count": np.array([r[1] for r in rows], dtype=np.int64),
        "cat": np.array([r[2] for r in rows], dtype=object),
        "flag": np.array([r[3] for r in rows], dtype=bool),
    }
    fast = distance(kind, X, cols, FEATURES)
    slow = [row_distance(kind, X, row, FEATURES) for row in rows_of(cols)]
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)

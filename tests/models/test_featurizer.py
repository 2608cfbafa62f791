"""Tests of the featurizer: encodings, scaling, errors and JSON round trips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfdb.errors import CfdbDataError, CfdbNotFittedError
from cfdb.models.featurizer import Featurizer
from cfdb.types import FeatureSpec

COLOR = FeatureSpec("color", "categorical")
FLAG = FeatureSpec("flag", "boolean")
AGE = FeatureSpec("age", "numeric")
N = FeatureSpec("n", "integer")


def columns() -> dict[str, np.ndarray]:
    return {
        "color": np.array(["red", "blue", "red", "green"], dtype=object),
        "flag": np.array([True, False, True, True]),
        "age": np.array([20.0, 30.0, 40.0, 50.0]),
        "n": np.array([1, 2, 3, 4]),
    }


def roundtrip(f: Featurizer) -> Featurizer:
    return Featurizer.from_dict(json.loads(json.dumps(f.to_dict())))


# ---- one-hot ----------------------------------------------------------------------------------


def test_onehot_exact_matrix() -> None:
    f = Featurizer([COLOR, FLAG, AGE]).fit(columns(), None)
    assert f.output_names_ == ["color=blue", "color=green", "color=red", "flag=true", "age"]
    expected = np.array(
        [
            [0, 0, 1, 1, 20],
            [1, 0, 0, 0, 30],
            [0, 0, 1, 1, 40],
            [0, 1, 0, 1, 50],
        ],
        dtype=np.float64,
    )
    out = f.transform(columns())
    assert out.dtype == np.float64
    assert np.array_equal(out, expected)


def test_onehot_declared_domain_order_and_unseen_value() -> None:
    spec = FeatureSpec("color", "categorical", domain=("red", "green", "blue", "purple"))
    f = Featurizer([spec]).fit(columns())
    assert f.output_names_ == ["color=red", "color=green", "color=blue", "color=purple"]
    out = f.transform({"color": np.array(["blue", "yellow", "purple"], dtype=object)})
    assert np.array_equal(out, [[0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]])


def test_unseen_value_gives_zeros() -> None:
    f = Featurizer([COLOR]).fit(columns())
    out = f.transform({"color": np.array(["yellow", "red"], dtype=object)})
    assert np.array_equal(out, [[0, 0, 0], [0, 0, 1]])


def test_booleans_normalized_from_strings_and_numbers() -> None:
    f = Featurizer([FLAG]).fit(columns())
    values = [
        np.array(["True", "false", "1", "no"], dtype=object),
        np.array([1, 0, 1, 0]),
        np.array([1.0, 0.0, 1.0, 0.0]),
        np.array([True, False, True, False], dtype=object),
    ]
    expected = [[1], [0], [1], [0]]
    for v in values:
        assert np.array_equal(f.transform({"flag": v}), expected)
    with pytest.raises(CfdbDataError, match=r"'flag'.*'maybe'"):
        f.transform({"flag": np.array(["maybe"], dtype=object)})


def test_categorical_values_compared_as_strings() -> None:
    f = Featurizer([FeatureSpec("code", "categorical")]).fit({"code": np.array([3, 1, 2])})
    assert f.output_names_ == ["code=1", "code=2", "code=3"]
    out = f.transform({"code": np.array(["2", 3], dtype=object)})
    assert np.array_equal(out, [[0, 1, 0], [0, 0, 1]])


def test_integer_and_extra_columns_ignored() -> None:
    f = Featurizer([N]).fit(columns())
    assert np.array_equal(f.transform(columns()), [[1], [2], [3], [4]])


# ---- scaling ----------------------------------------------------------------------------------


def test_scaling_standardizes_numeric_only() -> None:
    f = Featurizer([COLOR, AGE, N], scale=True).fit(columns())
    out = f.transform(columns())
    std = math.sqrt(125.0)
    assert np.allclose(out[:, 3], (np.array([20, 30, 40, 50]) - 35) / std, rtol=0, atol=1e-15)
    assert np.allclose(out[:, 4], (np.array([1, 2, 3, 4]) - 2.5) / math.sqrt(1.25), atol=1e-15)
    assert set(np.unique(out[:, :3])) == {0.0, 1.0}
    block = f.blocks()[1]
    assert (block.mean, block.std) == (35.0, std)


def test_scaling_constant_column_uses_std_one() -> None:
    f = Featurizer([AGE], scale=True).fit({"age": np.full(3, 7.0)})
    assert f.blocks()[0].std == 1.0
    assert np.array_equal(f.transform({"age": np.array([7.0, 9.0])}), [[0.0], [2.0]])


# ---- target encoding --------------------------------------------------------------------------


def test_target_encoding_binary_exact() -> None:
    y = np.array([1, 0, 1, 0])
    f = Featurizer([COLOR, FLAG], encoding="target", smoothing=1.0).fit(columns(), y)
    assert f.output_names_ == ["te(color)", "flag=true"]
    out = f.transform({"color": np.array(["red", "blue", "green", "yellow"], dtype=object),
                       "flag": np.array([True, True, False, False])})  # fmt: skip
    expected = np.array([[2.5 / 3, 1], [0.25, 1], [0.25, 0], [0.5, 0]])
    assert np.allclose(out, expected, rtol=0, atol=1e-15)
    block = f.blocks()[0]
    assert block.target_of("yellow") == (0.5,)
    assert block.target_of("red") == pytest.approx((2.5 / 3,), abs=1e-15)


def test_target_encoding_multiclass_exact() -> None:
    y = np.array([0, 1, 2, 2])
    f = Featurizer([COLOR], encoding="target", smoothing=1.0).fit(columns(), y)
    assert f.output_names_ == ["te(color)[0]", "te(color)[1]", "te(color)[2]"]
    out = f.transform({"color": np.array(["red", "blue", "green", "pink"], dtype=object)})
    expected = np.array(
        [
            [1.25 / 3, 0.25 / 3, 1.5 / 3],
            [0.125, 0.625, 0.25],
            [0.125, 0.125, 0.75],
            [0.25, 0.25, 0.5],
        ]
    )
    assert np.allclose(out, expected, rtol=0, atol=1e-15)
    assert np.allclose(out.sum(axis=1), 1.0)


def test_target_encoding_needs_labels() -> None:
    with pytest.raises(CfdbDataError, match="labels"):
        Featurizer([COLOR], encoding="target").fit(columns(), None)


def test_unknown_encoding() -> None:
    with pytest.raises(CfdbDataError, match="'ordinal'"):
        Featurizer([COLOR], encoding="ordinal")


# ---- blocks -----------------------------------------------------------------------------------


def test_blocks_describe_output_columns() -> None:
    f = Featurizer([AGE, COLOR, FLAG], scale=True).fit(columns())
    age, color, flag = f.blocks()
    assert (age.start, age.stop, age.encoding) == (0, 1, "numeric")
    assert (color.start, color.stop, color.encoding) == (1, 4, "onehot")
    assert color.categories == ("blue", "green", "red")
    assert color.column_of("red") == 3
    assert color.column_of("yellow") is None
    assert (flag.start, flag.stop, flag.encoding) == (4, 5, "boolean")
    assert flag.column_of("true") == 4
    assert flag.column_of("false") is None
    assert np.array_equal(color.encode_value("green"), [0, 1, 0])
    assert f.n_outputs == 5


# ---- errors -----------------------------------------------------------------------------------


def test_null_in_object_column() -> None:
    cols = columns()
    cols["color"] = np.array(["red", None, None, "blue"], dtype=object)
    with pytest.raises(CfdbDataError, match=r"'color' has 2 NULL rows"):
        Featurizer([COLOR]).fit(cols)


def test_nan_in_float_column() -> None:
    cols = columns()
    cols["age"] = np.array([1.0, np.nan, 3.0, 4.0])
    with pytest.raises(CfdbDataError, match=r"'age' has 1 NULL row"):
        Featurizer([AGE]).fit(cols)
    f = Featurizer([AGE]).fit(columns())
    with pytest.raises(CfdbDataError, match=r"'age' has 1 NULL row"):
        f.transform({"age": np.array([None, 2.0], dtype=object)})


def test_null_in_boolean_column() -> None:
    with pytest.raises(CfdbDataError, match=r"'flag' has 1 NULL row"):
        Featurizer([FLAG]).fit({"flag": np.array([True, None], dtype=object)})


def test_non_numeric_value() -> None:
    with pytest.raises(CfdbDataError, match=r"'age'.*'abc'"):
        Featurizer([AGE]).fit({"age": np.array(["1.5", "abc", "3"], dtype=object)})


def test_numeric_strings_are_accepted() -> None:
    f = Featurizer([AGE]).fit({"age": np.array(["1.5", "2"], dtype=object)})
    assert np.array_equal(f.transform({"age": np.array(["1.5", "2"], dtype=object)}), [[1.5], [2]])


def test_missing_column() -> None:
    with pytest.raises(CfdbDataError, match="model needs feature 'age', which the input lacks"):
        Featurizer([AGE]).fit({"color": columns()["color"]})
    f = Featurizer([COLOR, AGE]).fit(columns())
    with pytest.raises(CfdbDataError, match="feature 'age'"):
        f.transform({"color": columns()["color"]})


def test_columns_of_different_lengths() -> None:
    cols = columns()
    cols["age"] = cols["age"][:2]
    with pytest.raises(CfdbDataError, match="differ in length"):
        Featurizer([COLOR, AGE]).fit(cols)


def test_not_fitted() -> None:
    with pytest.raises(CfdbNotFittedError):
        Featurizer([AGE]).transform(columns())


def test_bad_feature_type_and_duplicate() -> None:
    with pytest.raises(CfdbDataError, match=r"'when'.*'date'"):
        Featurizer([FeatureSpec("when", "date")])
    with pytest.raises(CfdbDataError, match="'age' is listed twice"):
        Featurizer([AGE, AGE])


def test_zero_rows() -> None:
    with pytest.raises(CfdbDataError, match="zero rows"):
        Featurizer([AGE]).fit({"age": np.zeros(0)})
    f = Featurizer([AGE, COLOR]).fit(columns())
    empty = {"age": np.zeros(0), "color": np.zeros(0, dtype=object)}
    assert f.transform(empty).shape == (0, 4)


# ---- state ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "scale", "y"),
    [
        ("onehot", False, None),
        ("onehot", True, np.array([0, 1, 0, 1])),
        ("target", True, np.array([0, 1, 1, 1])),
        ("target", False, np.array([0, 1, 2, 1])),
    ],
)
def test_json_round_trip(encoding: str, scale: bool, y: np.ndarray | None) -> None:
    f = Featurizer([COLOR, FLAG, AGE, N], encoding=encoding, scale=scale).fit(columns(), y)
    g = roundtrip(f)
    fresh = {
        "color": np.array(["green", "pink", "red"], dtype=object),
        "flag": np.array([False, True, False]),
        "age": np.array([-3.25, 1e6, 0.1]),
        "n": np.array([7, 0, -2]),
    }
    assert g.output_names_ == f.output_names_
    assert g.blocks() == f.blocks()
    assert np.array_equal(g.transform(fresh), f.transform(fresh))
    assert np.array_equal(g.transform(columns()), f.transform(columns()))


def test_from_dict_rejects_other_formats() -> None:
    with pytest.raises(CfdbDataError, match="not a stored featurizer"):
        Featurizer.from_dict({"format": "other", "version": 1})


CATS = st.sampled_from(["a", "b", "c", "d", "é x", ""])
FLOATS = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)


@st.composite
def datasets(draw: st.DrawFn) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    n = draw(st.integers(1, 12))
    cols = {
        "c": np.array(draw(st.lists(CATS, min_size=n, max_size=n)), dtype=object),
        "b": np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        "x": np.array(draw(st.lists(FLOATS, min_size=n, max_size=n))),
        "i": np.array(draw(st.lists(st.integers(-1000, 1000), min_size=n, max_size=n))),
    }
    k = draw(st.integers(2, 4))
    y = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    m = draw(st.integers(1, 5))
    fresh = {
        "c": np.array(draw(st.lists(CATS | st.just("zz"), min_size=m, max_size=m)), dtype=object),
        "b": np.array(draw(st.lists(st.booleans(), min_size=m, max_size=m))),
        "x": np.array(draw(st.lists(FLOATS, min_size=m, max_size=m))),
        "i": np.array(draw(st.lists(st.integers(-1000, 1000), min_size=m, max_size=m))),
    }
    return cols, y, fresh


@settings(max_examples=60, deadline=None)
@given(
    data=datasets(),
    encoding=st.sampled_from(["onehot", "target"]),
    scale=st.booleans(),
    smoothing=st.sampled_from([0.0, 1.0, 10.0, 2.5]),
)
def test_round_trip_randomized(
    data: tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]],
    encoding: str,
    scale: bool,
    smoothing: float,
) -> None:
    cols, y, fresh = data
    feats = [
        FeatureSpec("c", "categorical"),
        FeatureSpec("b", "boolean"),
        FeatureSpec("x", "numeric"),
        FeatureSpec("i", "integer"),
    ]
    f = Featurizer(feats, encoding=encoding, scale=scale, smoothing=smoothing).fit(cols, y)
    g = roundtrip(f)
    for data_cols in (cols, fresh):
        a, b = f.transform(data_cols), g.transform(data_cols)
        assert a.shape == (len(data_cols["x"]), f.n_outputs)
        assert np.all(np.isfinite(a))
        assert np.array_equal(a, b)

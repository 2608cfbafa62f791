"""Fixtures of the generator tests: the dataset, its features and trained models."""

from __future__ import annotations

import numpy as np
import pytest

from cfdb.models import Model, train
from cfdb.types import FeatureSpec
from tests.generators.helpers import dataset, score, spec_of


@pytest.fixture(scope="session")
def data() -> dict[str, np.ndarray]:
    return dataset()


@pytest.fixture(scope="session")
def features(data: dict[str, np.ndarray]) -> list[FeatureSpec]:
    return [
        spec_of("income", "numeric", data["income"]),
        spec_of("age", "integer", data["age"]),
        spec_of("home", "categorical", data["home"]),
        spec_of("student", "boolean", data["student"]),
        spec_of("sex", "categorical", data["sex"], mutable=False),
    ]


@pytest.fixture(scope="session")
def binary_labels(data: dict[str, np.ndarray]) -> np.ndarray:
    return np.where(score(data) > 25, "accepted", "rejected").astype(object)


@pytest.fixture(scope="session")
def models(
    data: dict[str, np.ndarray], features: list[FeatureSpec], binary_labels: np.ndarray
) -> dict[str, Model]:
    s = score(data)
    three = np.where(
        s < np.quantile(s, 1 / 3), "low", np.where(s < np.quantile(s, 2 / 3), "mid", "high")
    )
    return {
        "logistic_regression": train(
            "logistic_regression", {}, features, data, binary_labels, name="lr"
        ),
        "random_forest": train(
            "random_forest",
            {"n_estimators": 25, "max_depth": 6},
            features,
            data,
            binary_labels,
            name="rf",
        ),
        "multiclass": train("logistic_regression", {}, features, data, three, name="lr3"),
    }

"""Shared fixtures: an in-memory database, the CFDB paper's Figure 1 database, toy data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cfdb

# The CFDB paper's Figure 1 (Ben Arie et al., EDBT 2024), entered by hand with plain SQL.
FIGURE1_SQL = """
CREATE TABLE Instances (InstanceId BIGINT, Income INTEGER, Amount INTEGER, Home VARCHAR,
                        GroundTruth VARCHAR);
INSERT INTO Instances VALUES
  (1, 20, 5, 'rent', 'rejected'), (2, 60, 20, 'rent', 'accepted'),
  (3, 20, 15, 'rent', 'rejected'), (4, 80, 100, 'own', 'accepted');
INSERT INTO Models (ModelId, Name, Kind) VALUES (1, 'tree1', 'decision_tree'),
                                                (2, 'tree2', 'decision_tree');
INSERT INTO Predictions (PredictionId, ModelId, InstanceId, Label) VALUES
  (1, 1, 1, 'rejected'), (2, 1, 2, 'accepted'), (3, 1, 3, 'rejected'), (4, 1, 4, 'rejected'),
  (5, 2, 1, 'rejected'), (6, 2, 2, 'rejected'), (7, 2, 3, 'rejected'), (8, 2, 4, 'accepted');
"""


@pytest.fixture
def db():
    database = cfdb.connect()
    yield database
    database.close()


@pytest.fixture
def figure1(db):
    db.sql(FIGURE1_SQL)
    return db


def toy_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """A small loan-like dataset: the label depends on income, amount and home."""
    rng = np.random.default_rng(seed)
    income = rng.integers(10, 120, n)
    amount = rng.integers(1, 100, n)
    home = rng.choice(["own", "rent", "mortgage"], n)
    student = rng.random(n) < 0.3
    score = income - 0.6 * amount + np.where(home == "own", 15, 0) - 10 * student
    noise = rng.normal(0, 5, n)
    label = np.where(score + noise > 30, "accepted", "rejected")
    return pd.DataFrame(
        {
            "applicant": np.arange(100, 100 + n),
            "income": income.astype(float),
            "amount": amount,
            "home": home,
            "student": student,
            "decision": label,
            "part": np.where(np.arange(n) % 4 == 0, "test", "train"),
        }
    )


@pytest.fixture
def toy(db):
    db.load_instances(toy_frame(), id="applicant", label="decision", split="part")
    return db

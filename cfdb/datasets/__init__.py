"""Real public datasets shipped inside cfdb, so a fresh machine needs no network.

Each dataset is a SQL query over its bundled files plus the ``LOAD INSTANCES`` options that
type it; ``LOAD DATASET name`` runs both. Files keep their original bytes (gzip-compressed);
each folder under ``data/`` has a ``SOURCE.md`` with provenance, license and citation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfdb.registry import Registry

DATA_DIR = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Dataset:
    """A bundled dataset.

    Attributes:
        name: the name used in ``LOAD DATASET``.
        description: one line for listings.
        citation: how to cite it.
        query: a DuckDB SELECT over the files; ``{dir}`` is replaced by the dataset folder.
        options: ``LOAD INSTANCES`` options (id, label, split, immutable, ...).
    """

    name: str
    description: str
    citation: str
    query: str
    options: dict[str, Any] = field(default_factory=dict)

    def source_sql(self) -> str:
        folder = (DATA_DIR / self.name).as_posix().replace("'", "''")
        return self.query.replace("{dir}", folder)


DATASETS: Registry[Dataset] = Registry("dataset")

_ADULT_COLUMNS = (
    "{'age': 'BIGINT', 'workclass': 'VARCHAR', 'fnlwgt': 'BIGINT', 'education': 'VARCHAR', "
    "'education_num': 'BIGINT', 'marital_status': 'VARCHAR', 'occupation': 'VARCHAR', "
    "'relationship': 'VARCHAR', 'race': 'VARCHAR', 'sex': 'VARCHAR', 'capital_gain': 'BIGINT', "
    "'capital_loss': 'BIGINT', 'hours_per_week': 'BIGINT', 'native_country': 'VARCHAR', "
    "'income': 'VARCHAR'}"
)

# The eight features of the CFDB paper's Adult setup (as prepared for DiCE, Mothilal et al.
# 2020): rows with a missing value ('?') in them are dropped, as there. adult.test's first
# line is a banner and its labels carry a trailing period.
DATASETS.register(
    "adult",
    Dataset(
        name="adult",
        description="UCI Adult (Census Income, 1994): income above $50K, 46,033 rows complete in the eight features",
        citation="Becker, B. & Kohavi, R. (1996). Adult. UCI Machine Learning Repository. "
        "https://doi.org/10.24432/C5XW20 (CC BY 4.0)",
        query=f"""
WITH raw AS (
    SELECT *, 'train' AS split FROM read_csv('{{dir}}/adult.data.gz', header = false,
        delim = ',', columns = {_ADULT_COLUMNS}, null_padding = true)
    UNION ALL
    SELECT *, 'test' AS split FROM read_csv('{{dir}}/adult.test.gz', header = false,
        delim = ',', skip = 1, columns = {_ADULT_COLUMNS}, null_padding = true)
), clean AS (
    SELECT age, trim(workclass) AS workclass, trim(education) AS education,
           trim(marital_status) AS marital_status, trim(occupation) AS occupation,
           trim(race) AS race, trim(sex) AS sex, hours_per_week,
           rtrim(trim(income), '.') AS income, split
    FROM raw WHERE age IS NOT NULL
)
SELECT * FROM clean
WHERE '?' NOT IN (workclass, education, marital_status, occupation, race, sex)
""",
        options={"label": "income", "split": "split", "immutable": ("race", "sex")},
    ),
)

# UCI Bank Marketing, bank-full.csv (Moro et al. 2014): 45,211 phone contacts, May 2008 to
# November 2010. `duration` is kept as a column but is not a feature: it is known only after
# the call, so it leaks the label (bank-names.txt). `split` is a fixed 80/20 split by a hash
# of the row's values.
DATASETS.register(
    "bank",
    Dataset(
        name="bank",
        description="UCI Bank Marketing (bank-full): term-deposit subscription after a phone contact, 45,211 rows",
        citation="Moro, S., Rita, P. & Cortez, P. (2014). Bank Marketing. UCI Machine Learning "
        "Repository. https://doi.org/10.24432/C5K306 (CC BY 4.0)",
        query="""
SELECT *, CASE WHEN hash(age, job, marital, education, balance, day, month, duration, campaign,
                         pdays, previous) % 5 = 0 THEN 'test' ELSE 'train' END AS split
FROM read_csv('{dir}/bank-full.csv.gz', header = true, delim = ';', quote = '"',
              types = {'y': 'VARCHAR'})
""",
        options={
            "label": "y",
            "split": "split",
            "features": (
                "age",
                "job",
                "marital",
                "education",
                "default",
                "balance",
                "housing",
                "loan",
                "contact",
                "day",
                "month",
                "campaign",
                "pdays",
                "previous",
                "poutcome",
            ),
        },
    ),
)

# ProPublica's two-year recidivism data with its own filters ("Machine Bias", 2016): a screening
# within 30 days of the arrest, a known recidivism outcome, no ordinary traffic offence ('O')
# and a COMPAS score; 6,172 rows. The five features usual in counterfactual work; every fifth
# id is a test row.
DATASETS.register(
    "compas",
    Dataset(
        name="compas",
        description="COMPAS recidivism (ProPublica, Broward County 2013-14): two-year recidivism, 6,172 rows",
        citation='J. Angwin, J. Larson, S. Mattu, L. Kirchner, "Machine Bias", ProPublica, '
        "2016. https://github.com/propublica/compas-analysis",
        query="""
SELECT id, age, sex, race, priors_count, c_charge_degree, two_year_recid,
       CASE WHEN id % 5 = 0 THEN 'test' ELSE 'train' END AS split
FROM read_csv('{dir}/compas-scores-two-years.csv.gz', header = true)
WHERE days_b_screening_arrest BETWEEN -30 AND 30 AND is_recid <> -1
  AND c_charge_degree <> 'O' AND score_text <> 'N/A'
""",
        options={
            "id": "id",
            "label": "two_year_recid",
            "split": "split",
            "immutable": ("race", "sex"),
        },
    ),
)

-- cfdb schema v1: the counterfactual-database core (CFDB paper, section 2.2 and Figure 1).
-- Feature-space tables (Instances, CFs) are not created here: their columns follow the
-- registered features, so the store creates them from the Features table.

CREATE TABLE IF NOT EXISTS cfdb_meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

-- One row per feature of the feature space.
CREATE TABLE Features (
    Name     VARCHAR PRIMARY KEY,
    Position INTEGER NOT NULL,
    Type     VARCHAR NOT NULL CHECK (Type IN ('numeric', 'integer', 'categorical', 'boolean')),
    Domain   VARCHAR[],          -- active domain of categorical / boolean features
    Min      DOUBLE,
    Max      DOUBLE,
    MAD      DOUBLE,             -- median absolute deviation x 1.4826, 0 replaced by 1
    Mutable  BOOLEAN NOT NULL DEFAULT TRUE
);

-- Models: the paper's Classifiers, generalized (section 4.4): Task says whether the output is
-- a class label or a number. A regressor has no Labels (NULL). Artifact is NULL for a model
-- entered by hand (its predictions exist, but cfdb cannot call it).
CREATE TABLE Models (
    ModelId      INTEGER PRIMARY KEY,
    Name         VARCHAR NOT NULL UNIQUE,
    Kind         VARCHAR NOT NULL,
    Task         VARCHAR NOT NULL DEFAULT 'classification'
                 CHECK (Task IN ('classification', 'regression')),
    Params       JSON,
    FeatureNames VARCHAR[],
    Labels       VARCHAR[],          -- class labels, sorted; NULL for a regressor
    LabelColumn  VARCHAR,            -- the training query's label column (PREDICT compares with it)
    Encoding     VARCHAR,
    Featurizer   JSON,
    Format       VARCHAR,            -- skops | xgboost-ubj | pickle | NULL
    Artifact     BLOB,
    Meta         JSON,
    TrainQuery   VARCHAR,
    TrainRows    BIGINT,
    Metrics      JSON,
    CreatedAt    TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE Predictions (
    PredictionId BIGINT PRIMARY KEY,
    ModelId      INTEGER NOT NULL,
    InstanceId   BIGINT NOT NULL,
    Label        VARCHAR,            -- the predicted class; NULL for a regressor
    Score        DOUBLE              -- the model's probability of Label; a regressor's output
);

CREATE TABLE Prediction_CFs (
    PredictionId BIGINT NOT NULL,
    CfId         BIGINT NOT NULL,
    QueryId      BIGINT,
    Distance     DOUBLE,
    Reused       BOOLEAN DEFAULT FALSE
);

CREATE TABLE CFQueries (
    QueryId      BIGINT PRIMARY KEY,
    BatchId      BIGINT,
    Position     INTEGER,            -- order of the FOREACH in its batch (1, 2, ...)
    Text         VARCHAR NOT NULL,
    Mode         VARCHAR,            -- run | explain
    Generator    VARCHAR,
    Params       JSON,
    Predictions  BIGINT,
    ModelIds     INTEGER[],
    GeneratorCalls BIGINT,
    Generated    BIGINT,
    Reused       BIGINT,
    Infeasible   BIGINT,
    Failed       BIGINT,
    MeanDistance DOUBLE,             -- mean distance of the CFs linked to its predictions
    SolverCalls  BIGINT,             -- of its batch (repeated on each query of the batch)
    GraphSeconds DOUBLE,             -- of its batch
    GenerationSeconds DOUBLE,        -- of its batch
    Seconds      DOUBLE,
    CreatedAt    TIMESTAMP DEFAULT current_timestamp
);

-- One row per batch of CFQL queries (a lone FOREACH is a batch of one): the optimizer's plan
-- and what it saved (CFDB paper, section 4).
CREATE TABLE CFBatches (
    BatchId          BIGINT PRIMARY KEY,
    Mode             VARCHAR,        -- run | explain
    Queries          INTEGER,
    Nodes            BIGINT,         -- feasible (query, prediction) conditions
    UniqueConditions BIGINT,         -- after merging identical conditions
    Classes          BIGINT,         -- equivalence classes (strongly connected components)
    Edges            BIGINT,         -- implications between distinct conditions
    Construction     VARCHAR,        -- naive | atoms
    SolverCalls      BIGINT,
    GraphSeconds     DOUBLE,
    NaiveSolverCalls BIGINT,         -- when both constructions ran (EXPLAIN ... construction = 'both')
    NaiveSeconds     DOUBLE,
    ReuseThreshold   DOUBLE,
    GeneratorCalls   BIGINT,
    Reused           BIGINT,
    CallsSaved       BIGINT,
    GenerationSeconds DOUBLE,
    MeanDistance     DOUBLE,
    Seconds          DOUBLE,
    CreatedAt        TIMESTAMP DEFAULT current_timestamp
);

-- Edges of a batch's implication graph between distinct conditions: the condition of
-- (FromQueryId, FromPredictionId) implies that of (ToQueryId, ToPredictionId). Identical
-- conditions are merged first; each edge joins their representatives (the first
-- (query, prediction) holding that condition); Conditions.ClassId groups equivalent ones.
CREATE TABLE ImplicationEdges (
    BatchId          BIGINT NOT NULL,
    FromQueryId      BIGINT NOT NULL,
    FromPredictionId BIGINT NOT NULL,
    ToQueryId        BIGINT NOT NULL,
    ToPredictionId   BIGINT NOT NULL
);

CREATE TABLE Conditions (
    QueryId      BIGINT NOT NULL,
    PredictionId BIGINT NOT NULL,
    InstanceId   BIGINT,
    Condition    VARCHAR NOT NULL,   -- a DuckDB boolean expression over the CF feature columns
    Hash         VARCHAR NOT NULL,   -- hash of the canonical form
    Status       VARCHAR,            -- pending | satisfied | reused | infeasible | failed
    Error        VARCHAR,            -- why generation failed, when it did
    BatchId      BIGINT,
    ClassId      BIGINT
);

-- The paper's Classifiers relation: the models whose output is a class label.
CREATE VIEW Classifiers AS
SELECT ModelId AS ClassifierId, ModelId, Name, Kind AS ClassifierType, Labels, CreatedAt
FROM Models WHERE Task = 'classification';

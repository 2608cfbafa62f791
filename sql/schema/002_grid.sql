-- cfdb schema v2: counterfactuals of the training data: the data-counterfactual grid
-- (Nick Vincent, "Exploring Data Counterfactuals").

CREATE TABLE Grids (
    Name        VARCHAR PRIMARY KEY,
    TrainQuery  VARCHAR NOT NULL,
    UnitsBy     VARCHAR,
    Design      VARCHAR NOT NULL,
    DesignArgs  JSON,
    EvalQuery   VARCHAR NOT NULL,
    SliceBy     VARCHAR,
    ModelKind   VARCHAR NOT NULL,
    ModelParams JSON,
    Metrics     VARCHAR[] NOT NULL,
    Seed        BIGINT,
    CreatedAt   TIMESTAMP DEFAULT current_timestamp
);

-- Rows of a grid: one training subset each.
CREATE TABLE TrainSubsets (
    Grid      VARCHAR NOT NULL,
    SubsetId  BIGINT NOT NULL,
    Design    VARCHAR NOT NULL,
    Size      BIGINT NOT NULL,
    Seed      BIGINT,
    Info      JSON,
    PRIMARY KEY (Grid, SubsetId)
);

CREATE TABLE TrainSubsetMembers (
    Grid      VARCHAR NOT NULL,
    SubsetId  BIGINT NOT NULL,
    UnitId    VARCHAR NOT NULL
);

-- Columns of a grid: evaluation slices.
CREATE TABLE EvalSlices (
    Grid      VARCHAR NOT NULL,
    SliceId   BIGINT NOT NULL,
    Name      VARCHAR NOT NULL,
    Predicate VARCHAR,
    PRIMARY KEY (Grid, SliceId)
);

CREATE TABLE GridCells (
    Grid      VARCHAR NOT NULL,
    SubsetId  BIGINT NOT NULL,
    SliceId   BIGINT NOT NULL,
    Metric    VARCHAR NOT NULL,
    Value     DOUBLE,
    ModelKind VARCHAR,
    Seconds   DOUBLE,
    Status    VARCHAR DEFAULT 'ok',  -- ok | failed
    Error     VARCHAR,
    CreatedAt TIMESTAMP DEFAULT current_timestamp
);

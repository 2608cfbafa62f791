-- cfdb schema v3: data values over provenance (DataScope, Karlas et al.).

-- Provenance polynomial of each row of a training view: a sum of monomials, each a product
-- of base-tuple variables.
CREATE TABLE Provenance (
    ViewName  VARCHAR NOT NULL,
    RowId     BIGINT NOT NULL,
    Monomial  INTEGER NOT NULL,
    Relation  VARCHAR NOT NULL,
    TupleId   BIGINT NOT NULL
);

CREATE TABLE ValuationRuns (
    RunId     BIGINT PRIMARY KEY,
    Method    VARCHAR NOT NULL,
    Params    JSON,
    Statement VARCHAR,
    Seconds   DOUBLE,
    CreatedAt TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE DataValues (
    RunId     BIGINT NOT NULL,
    Relation  VARCHAR NOT NULL,
    TupleId   BIGINT NOT NULL,
    Method    VARCHAR NOT NULL,
    Value     DOUBLE
);

-- cfdb schema v5: keys and feature columns are recorded, not guessed.
-- Instances.InstanceId becomes the primary key when a file is opened (the store declares it on
-- Instances, whose columns follow the feature space, so it is not created in these files).

-- Which columns a valuation run used as features, and which were the base tables' keys.
ALTER TABLE ValuationRuns ADD COLUMN FeatureColumns VARCHAR[];
ALTER TABLE ValuationRuns ADD COLUMN KeyColumns VARCHAR[];

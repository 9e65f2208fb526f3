-- A backfill from a join where one visit in ten has no clinic (clinics 91..100 are gone), so
-- the expression yields NULL for 2,000 rows however often it runs.
CREATE TABLE clinics (id bigint PRIMARY KEY, region text NOT NULL);
INSERT INTO clinics SELECT g, 'region-' || (g % 7) FROM generate_series(1, 90) g;
CREATE TABLE visits (id bigint PRIMARY KEY, clinic_id bigint NOT NULL, region text);
INSERT INTO visits SELECT g, 1 + g % 100 FROM generate_series(1, 20000) g;
ANALYZE clinics; ANALYZE visits;

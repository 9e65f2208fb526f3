-- A range-partitioned table whose default partition holds the rows outside 2023 and 2024.
CREATE TABLE readings (id bigint NOT NULL, taken_on date NOT NULL, celsius numeric(5,2) NOT NULL,
                       PRIMARY KEY (id, taken_on)) PARTITION BY RANGE (taken_on);
CREATE TABLE readings_2023 PARTITION OF readings FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE readings_2024 PARTITION OF readings FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE readings_other PARTITION OF readings DEFAULT;
INSERT INTO readings SELECT g, date '2022-07-01' + (g % 1100), (g % 500) / 10.0 FROM generate_series(1, 20000) g;
ANALYZE readings;

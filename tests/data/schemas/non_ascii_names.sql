-- Non-ASCII letters and spaces in the names of the table, its key and its columns.
CREATE TABLE "Größe x" ("Maß ID" bigint PRIMARY KEY, "alter Wert" text NOT NULL);
INSERT INTO "Größe x" SELECT g, 'Wert Nr. ' || g || ' ä' FROM generate_series(1, 20000) g;
ANALYZE "Größe x";

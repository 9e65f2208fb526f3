-- A double quote inside the table's name: Größe "x".
CREATE TABLE "Größe ""x""" (id bigint PRIMARY KEY, "alter Wert" text NOT NULL);
INSERT INTO "Größe ""x""" SELECT g, 'Wert ' || g FROM generate_series(1, 20000) g;
ANALYZE "Größe ""x""";

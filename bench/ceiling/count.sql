-- Rows committed so far.
SELECT pg_catalog.count(*) FROM ceiling_rows;

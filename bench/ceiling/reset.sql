-- Start every run from an empty table and a fresh checkpoint.
TRUNCATE ceiling_rows;
CHECKPOINT;

-- Every run starts with the same stock in the naive and slot tables (the
-- orderflow SKU has far more than any run takes), empty allocation tables
-- and a fresh checkpoint.
TRUNCATE bench_rows, bench_alloc;
TRUNCATE bench_stock, bench_slots;
INSERT INTO bench_stock VALUES ('HOT', 100000000);
INSERT INTO bench_slots SELECT 'HOT', s, 100000000 / 16 FROM generate_series(0, 15) s;
VACUUM ANALYZE bench_stock, bench_slots;
CHECKPOINT;

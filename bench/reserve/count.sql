-- Successful allocations so far: orderflow holds of HOT, rows allocated
-- by the naive and SKIP LOCKED scripts, and baseline rows.
SELECT (SELECT count(*) FROM orderflow.reservations r
          JOIN orderflow.skus s ON s.id = r.sku_id
         WHERE s.code = 'HOT' AND r.status = 'held')
     + (SELECT count(*) FROM bench_alloc)
     + (SELECT count(*) FROM bench_rows);

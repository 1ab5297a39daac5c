-- Cancel what earlier runs allocated (which releases their holds), queue
-- fresh approved orders, start from a checkpoint.  The queue must outlast
-- a run: 200000 orders is more than 10 s take at the rates seen on 2 cores
-- (up to about 10000 allocations per second).
-- writes.pgbench's holds never went through the counters: remove them
-- before the cancel would give them back.
DELETE FROM orderflow.reservations r
 WHERE r.status = 'held' AND r.order_id IS NOT NULL AND r.lot_id IS NULL;
SELECT count(orderflow.transition(o.id, 'cancelled', 'bench reset'))
  FROM orderflow.orders o WHERE o.state::text IN ('approved', 'allocated', 'backordered');
TRUNCATE bench_rows;
CALL bench_make_orders(200000);
VACUUM ANALYZE;
CHECKPOINT;

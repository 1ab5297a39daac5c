-- Start from a checkpoint, cancel what earlier runs allocated (which
-- releases their holds) and queue fresh approved orders.  The queue is
-- written after the checkpoint, as orders that have just arrived are, so
-- allocating them does not log their pages in full a second time (which a
-- checkpoint between every order's arrival and its allocation would cause;
-- bench/run keeps checkpoints out of the runs).  The queue must outlast a
-- run: 200000 orders is more than 10 s of allocate3 take at the rates seen
-- on 2 cores (up to about 15000 allocations per second).  writes_holds,
-- faster, may pass the last queued order in a 10 s turn; its holds need
-- no order row, and are removed like the others.
CHECKPOINT;
-- writes.pgbench's holds never went through the counters: remove them
-- before the cancel would give them back.
DELETE FROM orderflow.reservations r
 WHERE r.status = 'held' AND r.order_id IS NOT NULL AND r.lot_id IS NULL;
SELECT count(orderflow.transition(o.id, 'cancelled', 'bench reset'))
  FROM orderflow.orders o WHERE o.state::text IN ('approved', 'allocated', 'backordered');
TRUNCATE bench_rows;
CALL bench_make_orders(200000);
VACUUM ANALYZE;

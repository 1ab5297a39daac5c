-- Before each run: clean up the dead row versions of the previous run and
-- start from a fresh checkpoint, so no variant pays for another's garbage
-- or checkpoint.
VACUUM ANALYZE orderflow.orders, orderflow.order_events,
	bench_naive.orders, bench_naive.order_events,
	bench_plpgsql.orders, bench_plpgsql.order_events;
CHECKPOINT;

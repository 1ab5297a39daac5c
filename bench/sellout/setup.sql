-- Sell-out: 1000 units of one SKU, every client reserving one unit at a
-- time until none are left (run it with -c 64).  Exactly 1000
-- reservations must succeed in each run ("count"), and at the end nothing
-- is available and the counter agrees with the ledger (check.sql, which
-- bench/run does not run: see bench/README.md).
SELECT orderflow.add_warehouse('W1', 'bench warehouse');
SELECT orderflow.add_bin('W1', 'B1');
SELECT orderflow.add_sku('SOLD', 'bench sell-out SKU', 10);
SELECT orderflow.receive_stock('SOLD', 'W1', 'B1', 1000);

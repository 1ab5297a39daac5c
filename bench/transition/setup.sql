-- bench/transition: the cost of a guarded, audited state change.
--
-- Run once by bench/run in a fresh database that has the extension (psql,
-- as a superuser; \ir pulls in the PL/pgSQL trigger beside this file).
--
-- Three tables of the same shape, indexes and data, 20000 orders each, all
-- in state 'allocated' with a three-event history.  Every pgbench
-- transaction picks a random order and flips it allocated <-> picking, a
-- pair of transitions in the default graph, so an order can flip forever
-- (a pair that releases no stock, so only the transition itself is timed):
--
--   trigger.pgbench   orderflow.orders with the extension's C trigger
--                     (validation against the cached graph, SHA-256 chain,
--                     audit row written as the history owner)
--   naive.pgbench     bench_naive.orders, no trigger: the same UPDATE plus a
--                     hand-written INSERT of an unhashed history row in the
--                     same statement, no validation (baseline a)
--   plpgsql.pgbench   bench_plpgsql.orders with plpgsql_trigger.sql, the
--                     same work as the C trigger in PL/pgSQL (baseline b)

\set ON_ERROR_STOP 1
SET client_min_messages = warning;

SELECT orderflow.add_shop('bench shop', 'generic');

-- Orders 1..20000, created paid, approved and allocated through the C
-- trigger, so each has three audit events and a real hash chain.
INSERT INTO orderflow.orders (id, shop_id, order_no, state, total_amount, paid_amount)
SELECT g, s.id, 'BENCH-' || g, 'paid', 99.00, 99.00
  FROM generate_series(1, 20000) AS g,
	   (SELECT id FROM orderflow.shops WHERE name = 'bench shop') AS s;
UPDATE orderflow.orders SET state = 'approved';
UPDATE orderflow.orders SET state = 'allocated';
-- Keep later default ids clear of the explicit ones.
SELECT setval(pg_get_serial_sequence('orderflow.orders', 'id'), 20000);

-- The copies: same columns, defaults, constraints and indexes as the real
-- tables (LIKE ... INCLUDING ALL), same rows, so every variant updates the
-- same three order indexes and inserts into the same two history indexes.
CREATE SCHEMA bench_naive;
CREATE TABLE bench_naive.orders (LIKE orderflow.orders INCLUDING ALL);
CREATE TABLE bench_naive.order_events (LIKE orderflow.order_events INCLUDING ALL);
INSERT INTO bench_naive.orders SELECT * FROM orderflow.orders;
INSERT INTO bench_naive.order_events SELECT * FROM orderflow.order_events;

CREATE SCHEMA bench_plpgsql;
CREATE TABLE bench_plpgsql.orders (LIKE orderflow.orders INCLUDING ALL);
CREATE TABLE bench_plpgsql.order_events (LIKE orderflow.order_events INCLUDING ALL);
INSERT INTO bench_plpgsql.orders SELECT * FROM orderflow.orders;
INSERT INTO bench_plpgsql.order_events SELECT * FROM orderflow.order_events;

\ir plpgsql_trigger.sql

VACUUM ANALYZE orderflow.orders, orderflow.order_events,
	bench_naive.orders, bench_naive.order_events,
	bench_plpgsql.orders, bench_plpgsql.order_events;

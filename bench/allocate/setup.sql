-- orderflow.allocate() of approved orders with three lines each, one unit
-- of each of three SKUs (the same three for every order, so the counters
-- are hot), versus the one-row INSERT ceiling (baseline.pgbench).
--
-- reset.sql queues enough approved orders for a run; each transaction of
-- allocate3.pgbench takes the next one from the queue (a sequence, so
-- clients never collide) and allocates it.  count.sql counts allocated
-- orders and baseline rows.
SELECT orderflow.add_shop('bench', 'generic');
SELECT orderflow.add_warehouse('W1', 'bench warehouse');
SELECT orderflow.add_bin('W1', 'B1');
SELECT orderflow.add_sku('A' || i, 'bench SKU ' || i, 10) FROM generate_series(1, 3) i;
SELECT orderflow.receive_stock('A' || i, 'W1', 'B1', 100000000) FROM generate_series(1, 3) i;

CREATE TABLE bench_rows (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    payload integer NOT NULL
);
CREATE FUNCTION bench_insert(p integer) RETURNS void
LANGUAGE sql VOLATILE
AS $$ INSERT INTO public.bench_rows (payload) VALUES (p) $$;

CREATE SEQUENCE bench_order_no;
-- The queue: the ids of the orders bench_make_orders made are consecutive,
-- and this sequence hands them out in turn, so that a transaction takes
-- the next order as a real caller passes its order id, with no query.
CREATE SEQUENCE bench_queue_next;

-- Create n approved orders of three lines (one unit of A1, A2, A3) and
-- queue them, set-based (the state trigger still checks and records every
-- order's paid -> approved change).
CREATE PROCEDURE bench_make_orders(n integer)
LANGUAGE plpgsql AS $$
DECLARE
    shop bigint := (SELECT id FROM orderflow.shops WHERE name = 'bench');
    first_id bigint;
    last_id bigint;
BEGIN
    CREATE TEMP TABLE new_orders ON COMMIT DROP AS
    WITH o AS (
        INSERT INTO orderflow.orders (shop_id, order_no, state, paid_at)
        SELECT shop, 'B' || nextval('bench_order_no'), 'paid', now()
          FROM generate_series(1, n)
        RETURNING id
    )
    SELECT id FROM o;
    INSERT INTO orderflow.order_lines (order_id, line_no, sku, qty, unit_price)
    SELECT o.id, s.line_no, s.sku, 1, 10
      FROM new_orders o, (VALUES (1, 'A1'), (2, 'A2'), (3, 'A3')) s(line_no, sku);
    UPDATE orderflow.orders SET state = 'approved' WHERE id IN (SELECT id FROM new_orders);
    SELECT min(id), max(id) INTO first_id, last_id FROM new_orders;
    IF last_id - first_id + 1 <> n THEN
        RAISE EXCEPTION 'the % new orders have ids % to %, not consecutive', n, first_id, last_id;
    END IF;
    PERFORM setval('bench_queue_next', first_id, false);
END $$;

-- A running system has a history of holds: allocate and cancel 5000
-- orders once, so that the first run, like every later one, plans its
-- queries on tables with rows and statistics (an empty, just-vacuumed
-- reservations table would get plans that read it whole).
CALL bench_make_orders(5000);
SELECT count(*) FROM orderflow.orders o, orderflow.allocate(o.id) a
 WHERE o.state::text = 'approved';
SELECT count(orderflow.transition(o.id, 'cancelled', 'bench history'))
  FROM orderflow.orders o WHERE o.state::text IN ('approved', 'allocated', 'backordered');

-- floor.pgbench's bare tables: no triggers, no checks, no index but the
-- keys and the holds' order (by which an order's holds are found to give
-- them back), and room on every page for an order's row to change in
-- place.
CREATE TABLE bench_floor_orders (id bigint PRIMARY KEY, state integer NOT NULL, pad text)
	WITH (fillfactor = 70);
INSERT INTO bench_floor_orders SELECT i, 0, repeat('x', 100) FROM generate_series(1, 1000000) i;
CREATE TABLE bench_floor_events (order_id bigint, seq integer, at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (order_id, seq));
CREATE TABLE bench_floor_holds (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	order_id bigint NOT NULL, line_no integer NOT NULL, qty integer NOT NULL);
CREATE INDEX ON bench_floor_holds (order_id, line_no);
CREATE SEQUENCE bench_floor_next;

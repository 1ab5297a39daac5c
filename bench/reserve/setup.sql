-- One hot SKU with plenty of stock, reserved one unit at a time by every
-- client, four ways:
--
--   baseline.pgbench    one-row INSERT committed through a SQL function:
--                       the machine's ceiling for one write transaction
--   reserve.pgbench     orderflow.reserve('HOT', 'W1', 1): escrow counter
--                       in shared memory plus the hold row
--   naive.pgbench       UPDATE stock SET available = available - 1 on one
--                       row, plus an allocation row: every client queues
--                       on the row lock of the hot SKU
--   skiplocked.pgbench  the stock split over 16 slot rows; take a free
--                       slot with FOR UPDATE SKIP LOCKED, decrement it,
--                       plus an allocation row
--
-- count.sql counts what the scripts write: holds, allocation rows and
-- baseline rows, so "count" is the number of successful allocations (or
-- baseline commits) of each run, read from the database.
SELECT orderflow.add_warehouse('W1', 'bench warehouse');
SELECT orderflow.add_bin('W1', 'B1');
SELECT orderflow.add_sku('HOT', 'bench hot SKU', 10);
SELECT orderflow.receive_stock('HOT', 'W1', 'B1', 100000000);

CREATE TABLE bench_rows (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    payload integer NOT NULL
);
CREATE FUNCTION bench_insert(p integer) RETURNS void
LANGUAGE sql VOLATILE
AS $$ INSERT INTO public.bench_rows (payload) VALUES (p) $$;

-- What the naive and the SKIP LOCKED versions allocate into.
CREATE TABLE bench_alloc (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku text NOT NULL,
    slot integer,
    qty integer NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);

-- Naive: one stock row per SKU.
CREATE TABLE bench_stock (
    sku text PRIMARY KEY,
    available integer NOT NULL CHECK (available >= 0)
);
CREATE FUNCTION bench_naive_reserve(p_sku text, p_qty integer) RETURNS bigint
LANGUAGE sql VOLATILE
AS $$
    WITH taken AS (
        UPDATE public.bench_stock SET available = available - p_qty
         WHERE sku = p_sku AND available >= p_qty
        RETURNING sku
    )
    INSERT INTO public.bench_alloc (sku, qty) SELECT sku, p_qty FROM taken
    RETURNING id
$$;

-- SKIP LOCKED: the stock of a SKU spread over 16 slot rows.
CREATE TABLE bench_slots (
    sku text NOT NULL,
    slot integer NOT NULL,
    available integer NOT NULL CHECK (available >= 0),
    PRIMARY KEY (sku, slot)
);
CREATE FUNCTION bench_slot_reserve(p_sku text, p_qty integer, p_start integer) RETURNS bigint
LANGUAGE sql VOLATILE
AS $$
    WITH free AS (
        SELECT slot FROM public.bench_slots
         WHERE sku = p_sku AND available >= p_qty
         ORDER BY (slot + 16 - p_start) % 16
         LIMIT 1
           FOR UPDATE SKIP LOCKED
    ), taken AS (
        UPDATE public.bench_slots s SET available = s.available - p_qty
          FROM free WHERE s.sku = p_sku AND s.slot = free.slot
        RETURNING s.sku, s.slot
    )
    INSERT INTO public.bench_alloc (sku, slot, qty) SELECT sku, slot, p_qty FROM taken
    RETURNING id
$$;

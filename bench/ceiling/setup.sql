-- The commit ceiling of this machine: how many one-row INSERT transactions
-- per second can commit (each one a WAL flush, fsync on), called through a
-- SQL function as orderflow's own calls are.  Other benchmarks compare their
-- write throughput against insert.pgbench's tps at the same client count.
CREATE TABLE ceiling_rows (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    payload integer NOT NULL
);

CREATE FUNCTION ceiling_insert(p integer) RETURNS void
LANGUAGE sql VOLATILE
AS $$ INSERT INTO public.ceiling_rows (payload) VALUES (p) $$;

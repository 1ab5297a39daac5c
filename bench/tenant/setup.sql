-- bench/tenant: what row-level security costs a tenant that reads its
-- orders.
--
-- Run once by bench/run in a fresh database that has the extension (psql,
-- as a superuser).  Two tenant roles (orderflow_operators) and 100 shops
-- of 2000 orders each; every pgbench transaction counts the orders of
-- tenant A's one shop:
--
--   baseline.pgbench  as the superuser (no row-level security), with the
--                     shop named in the query: the filter the policy
--                     replaces
--   tenant.pgbench    as tenant A, no filter: the tenant policy picks the
--                     rows (orderflow.visible_shops() once per query)
--   per_row.pgbench   as tenant A, with orderflow.shop_visible(shop_id) in
--                     the query as well: the same count with a visibility
--                     function called for each row the policy lets through
--
-- Each script sets its role and resets it, so all three make the same
-- three round trips.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;

DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'bench_tenant_a') THEN
		CREATE ROLE bench_tenant_a NOLOGIN IN ROLE orderflow_operator;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'bench_tenant_b') THEN
		CREATE ROLE bench_tenant_b NOLOGIN IN ROLE orderflow_operator;
	END IF;
END $$;

-- 100 shops of 2000 orders each: tenant A owns shop 'bench 1', tenant B
-- all the others.
SELECT count(orderflow.add_shop('bench ' || s, 'generic',
								pg_catalog.jsonb_build_object('owner_role',
									CASE WHEN s = 1 THEN 'bench_tenant_a' ELSE 'bench_tenant_b' END)))
  FROM generate_series(1, 100) s;
INSERT INTO orderflow.orders (shop_id, order_no)
SELECT orderflow.find_shop('bench ' || (g % 100 + 1)), 'T' || g
  FROM generate_series(1, 200000) g;
VACUUM ANALYZE;

-- Privileges and row-level security.  Nothing is granted to PUBLIC.

ALTER TABLE orderflow.orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON orderflow.orders
	USING (shop_id OPERATOR(pg_catalog.=) ANY ((SELECT orderflow.visible_shops())::bigint[]));
COMMENT ON POLICY tenant ON orderflow.orders IS 'a tenant sees and changes only the orders of shops whose owner role it belongs to (orderflow.visible_shops, asked once per query)';
-- Holds: a shop's checkout holds and the holds of the orders a tenant sees.
-- The stock functions write and close holds as the extension's owner,
-- checking the order or shop themselves; this governs reading the table.
ALTER TABLE orderflow.reservations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON orderflow.reservations
	USING (shop_id OPERATOR(pg_catalog.=) ANY ((SELECT orderflow.visible_shops())::bigint[])
		   OR EXISTS (SELECT FROM orderflow.orders o WHERE o.id OPERATOR(pg_catalog.=) order_id));
COMMENT ON POLICY tenant ON orderflow.reservations IS 'a tenant sees its shops'' checkout holds and the holds of the orders it sees';
ALTER TABLE orderflow.sku_map ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON orderflow.sku_map
	USING (shop_id IS NULL
		   OR shop_id OPERATOR(pg_catalog.=) ANY ((SELECT orderflow.visible_shops())::bigint[]));
COMMENT ON POLICY tenant ON orderflow.sku_map IS 'a tenant sees the platform-wide mappings and its own shops''';
-- The staff roles (those orderflow.sees_all_shops() names) see and change
-- every shop's rows through a policy of their own on each table whose
-- tenant policy compares shop_id with orderflow.visible_shops(); the
-- planner then drops the tenant filter from their queries.
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['orders', 'inbox_payloads', 'inbox_status', 'exceptions', 'outbox',
							 'reservations', 'sku_map']
	LOOP
		EXECUTE pg_catalog.format('CREATE POLICY staff ON orderflow.%I'
								  ' TO orderflow_admin, orderflow_auditor, orderflow_reporting, orderflow_warehouse'
								  ' USING (true)', t);
		EXECUTE pg_catalog.format('COMMENT ON POLICY staff ON orderflow.%I IS %L', t,
								  'the staff roles see and change the rows of every shop');
	END LOOP;
END
$$;
ALTER TABLE orderflow.order_lines ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON orderflow.order_lines
	USING (EXISTS (SELECT FROM orderflow.orders o WHERE o.id OPERATOR(pg_catalog.=) order_id));
COMMENT ON POLICY tenant ON orderflow.order_lines IS 'visible with the order';
ALTER TABLE orderflow.order_adjustments ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON orderflow.order_adjustments
	USING (EXISTS (SELECT FROM orderflow.orders o WHERE o.id OPERATOR(pg_catalog.=) order_id));
COMMENT ON POLICY tenant ON orderflow.order_adjustments IS 'visible with the order';
ALTER TABLE orderflow.order_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON orderflow.order_events
	USING (EXISTS (SELECT FROM orderflow.orders o WHERE o.id OPERATOR(pg_catalog.=) order_id));
COMMENT ON POLICY tenant ON orderflow.order_events IS 'visible with the order';

REVOKE ALL ON ALL TABLES IN SCHEMA orderflow FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA orderflow FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA orderflow FROM PUBLIC;
REVOKE ALL ON TYPE orderflow.order_state FROM PUBLIC;

GRANT USAGE ON TYPE orderflow.order_state TO orderflow_admin, orderflow_operator,
	orderflow_warehouse, orderflow_auditor, orderflow_reporting;

-- Type support and read-only state-machine functions: every group.
GRANT EXECUTE ON FUNCTION
	orderflow.order_state_in(pg_catalog.cstring),
	orderflow.order_state_out(orderflow.order_state),
	orderflow.order_state_recv(pg_catalog.internal),
	orderflow.order_state_send(orderflow.order_state),
	orderflow.order_state_eq(orderflow.order_state, orderflow.order_state),
	orderflow.order_state_ne(orderflow.order_state, orderflow.order_state),
	orderflow.order_state_lt(orderflow.order_state, orderflow.order_state),
	orderflow.order_state_le(orderflow.order_state, orderflow.order_state),
	orderflow.order_state_gt(orderflow.order_state, orderflow.order_state),
	orderflow.order_state_ge(orderflow.order_state, orderflow.order_state),
	orderflow.order_state_cmp(orderflow.order_state, orderflow.order_state),
	orderflow.order_state_smaller(orderflow.order_state, orderflow.order_state),
	orderflow.order_state_larger(orderflow.order_state, orderflow.order_state),
	orderflow.min(orderflow.order_state),
	orderflow.max(orderflow.order_state),
	orderflow.order_state_hash(orderflow.order_state),
	orderflow.order_state_hash_extended(orderflow.order_state, bigint),
	orderflow.label(orderflow.order_state, text),
	orderflow.states(),
	orderflow.can_transition(orderflow.order_state, orderflow.order_state),
	orderflow.next_states(orderflow.order_state),
	orderflow.state_graph(),
	orderflow.shop_visible(bigint),
	orderflow.sees_all_shops(),
	orderflow.visible_shops()
TO orderflow_admin, orderflow_operator, orderflow_warehouse, orderflow_auditor,
	orderflow_reporting;

-- Auditors read the history and the graph, and verify chains.
GRANT SELECT ON orderflow.order_events, orderflow.transitions, orderflow.initial_states
	TO orderflow_auditor;
GRANT SELECT (id, shop_id, order_no, state, history_seq, history_hash) ON orderflow.orders
	TO orderflow_auditor;
GRANT SELECT ON orderflow.shops TO orderflow_auditor;
GRANT EXECUTE ON FUNCTION orderflow.verify_history(bigint) TO orderflow_auditor;

-- Reporting tools read everything.
GRANT SELECT ON ALL TABLES IN SCHEMA orderflow TO orderflow_reporting;

-- Operators handle orders.
GRANT SELECT ON ALL TABLES IN SCHEMA orderflow TO orderflow_operator;
GRANT INSERT, UPDATE ON orderflow.orders, orderflow.order_lines TO orderflow_operator;
GRANT DELETE ON orderflow.order_lines TO orderflow_operator;
GRANT USAGE ON SEQUENCE orderflow.orders_id_seq TO orderflow_operator;
GRANT EXECUTE ON FUNCTION
	orderflow.transition(bigint, orderflow.order_state, text, orderflow.order_state),
	orderflow.find_order(bigint, text),
	orderflow.find_shop(text),
	orderflow.verify_history(bigint)
TO orderflow_operator;

-- Warehouse staff read orders and stock and move orders through fulfilment.
GRANT SELECT ON orderflow.orders, orderflow.order_lines, orderflow.skus,
	orderflow.warehouses, orderflow.bins, orderflow.shops, orderflow.transitions,
	orderflow.initial_states
TO orderflow_warehouse;
GRANT UPDATE (state) ON orderflow.orders TO orderflow_warehouse;
GRANT EXECUTE ON FUNCTION
	orderflow.transition(bigint, orderflow.order_state, text, orderflow.order_state),
	orderflow.find_order(bigint, text),
	orderflow.find_shop(text)
TO orderflow_warehouse;

-- Stock: everyone who handles orders may reserve, allocate and look at
-- availability; the ledger and holds are written only through functions.
GRANT EXECUTE ON FUNCTION
	orderflow.reserve(text, text, integer, text, interval, bigint),
	orderflow.release(bigint),
	orderflow.available(text, text),
	orderflow.hold(text, text, integer, text, timestamptz, bigint, integer, bigint, bigint, boolean),
	orderflow.release_holds(bigint, integer),
	orderflow.line_needs(bigint),
	orderflow.lot_stock(text, text),
	orderflow.bin_lot_on_hand(bigint, bigint),
	orderflow.line_refund(bigint, integer, integer),
	orderflow.check_price(numeric),
	orderflow.cancel_units(bigint, integer, integer, text),
	orderflow.lock_order(bigint),
	orderflow.allocate(bigint, text),
	orderflow.fill_backorders(integer),
	orderflow.cancel_line(bigint, integer, text),
	orderflow.substitute_line(bigint, integer, text, numeric, text),
	orderflow.trusted_write()
TO orderflow_operator, orderflow_warehouse;
GRANT EXECUTE ON FUNCTION
	orderflow.record_movement(text, text, text, text, integer, text, text, text, date, date),
	orderflow.receive_stock(text, text, text, integer, text, date, date),
	orderflow.adjust_stock(text, text, text, integer, text, text),
	orderflow.expire_reservations(integer),
	orderflow.compact_stock(interval)
TO orderflow_warehouse;
GRANT EXECUTE ON FUNCTION
	orderflow.check_stock(),
	orderflow.stock_counters(),
	orderflow.counter_drift(bigint, bigint)
TO orderflow_auditor, orderflow_operator, orderflow_warehouse;
GRANT INSERT ON orderflow.order_adjustments TO orderflow_operator, orderflow_warehouse;
-- Customer service settles refunds with the buyer.
GRANT UPDATE (settled_at) ON orderflow.order_adjustments TO orderflow_operator;
GRANT EXECUTE ON FUNCTION orderflow.settle_adjustment(bigint) TO orderflow_operator;
GRANT USAGE ON SEQUENCE orderflow.order_adjustments_id_seq TO orderflow_operator, orderflow_warehouse;
GRANT UPDATE (allocation_policy, total_amount, goods_amount) ON orderflow.orders TO orderflow_warehouse;
GRANT UPDATE (cancelled_qty) ON orderflow.order_lines TO orderflow_warehouse;
GRANT INSERT ON orderflow.order_lines TO orderflow_warehouse;
GRANT SELECT ON orderflow.reservations, orderflow.stock_movements, orderflow.stock_balances,
	orderflow.lots, orderflow.order_adjustments TO orderflow_warehouse;
GRANT SELECT ON orderflow.reservations, orderflow.stock_movements, orderflow.stock_balances,
	orderflow.lots, orderflow.skus, orderflow.warehouses, orderflow.bins TO orderflow_auditor;

-- Administrators configure the system.  No role but the extension owner
-- may INSERT, UPDATE, DELETE or TRUNCATE the history.
GRANT orderflow_operator TO orderflow_admin;
GRANT orderflow_warehouse TO orderflow_admin;
GRANT orderflow_auditor TO orderflow_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON orderflow.platforms, orderflow.shops,
	orderflow.warehouses, orderflow.bins, orderflow.skus, orderflow.transitions,
	orderflow.initial_states
TO orderflow_admin;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA orderflow TO orderflow_admin;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA orderflow TO orderflow_admin;

-- The sequences behind the identity columns.
DO $$
DECLARE
	s record;
BEGIN
	FOR s IN
		SELECT q.oid::pg_catalog.regclass AS seq, d.refobjid::pg_catalog.regclass AS tab, a.attname
		  FROM pg_catalog.pg_class q
		  JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
			   AND d.objid OPERATOR(pg_catalog.=) q.oid AND d.deptype OPERATOR(pg_catalog.=) 'i'
		  JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) d.refobjid
			   AND a.attnum OPERATOR(pg_catalog.=) d.refobjsubid
		 WHERE q.relkind OPERATOR(pg_catalog.=) 'S'
		   AND q.relnamespace OPERATOR(pg_catalog.=) 'orderflow'::pg_catalog.regnamespace
	LOOP
		EXECUTE pg_catalog.format('COMMENT ON SEQUENCE %s IS %L', s.seq,
								  pg_catalog.format('identity of %s.%I', s.tab, s.attname));
	END LOOP;
END
$$;

-- Who may touch the audit history, what PUBLIC may do, and row-level
-- security per shop.
--
-- Self-contained: run by `make pgtap` (pg_prove) against any database of a
-- server that has orderflow and pgTAP installed, as a superuser.  It creates
-- both extensions if they are missing, and its roles, shops and orders,
-- inside one transaction that it rolls back, so it leaves nothing behind
-- (CREATE ROLE is transactional too).

BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS orderflow;
SET LOCAL search_path = orderflow, public;

SELECT plan(105);

-- Roles of this test: a login role that is an orderflow_admin, two tenants
-- that work as operators, and a role nobody granted anything to.
CREATE ROLE tap_admin_login LOGIN IN ROLE orderflow_admin;
CREATE ROLE tap_tenant_a NOLOGIN IN ROLE orderflow_operator;
CREATE ROLE tap_tenant_b NOLOGIN IN ROLE orderflow_operator;
CREATE ROLE tap_nobody NOLOGIN;
CREATE ROLE tap_warehouse NOLOGIN IN ROLE orderflow_warehouse;

-- Two shops, one per tenant, one paid order each (so the history has rows
-- for UPDATE and DELETE to act on).
CREATE TEMP TABLE tap_ids AS
SELECT add_shop('tap shop A', 'generic', '{"owner_role": "tap_tenant_a"}') AS shop_a,
	   add_shop('tap shop B', 'generic', '{"owner_role": "tap_tenant_b"}') AS shop_b;
GRANT SELECT ON tap_ids TO PUBLIC;
INSERT INTO orders (shop_id, order_no, state)
SELECT shop_a, 'TAP-A-1', 'paid'::order_state FROM tap_ids
UNION ALL
SELECT shop_b, 'TAP-B-1', 'paid'::order_state FROM tap_ids;
ALTER TABLE tap_ids ADD order_a bigint, ADD order_b bigint;
UPDATE tap_ids SET order_a = find_order(shop_a, 'TAP-A-1'), order_b = find_order(shop_b, 'TAP-B-1');

----------------------------------------------------------------------------
-- Non-owner roles cannot write the history at all: no privilege (42501).
----------------------------------------------------------------------------

SET ROLE orderflow_admin;
SELECT throws_ok($$UPDATE orderflow.order_events SET reason = 'forged'$$, '42501', NULL, 'orderflow_admin: UPDATE of order_events is denied');
SELECT throws_ok($$DELETE FROM orderflow.order_events$$, '42501', NULL, 'orderflow_admin: DELETE of order_events is denied');
SELECT throws_ok($$TRUNCATE orderflow.order_events$$, '42501', NULL, 'orderflow_admin: TRUNCATE of order_events is denied');
SELECT throws_ok($$INSERT INTO orderflow.order_events (order_id, seq, to_state, at, session_role, acting_role, xid, hash) VALUES (1, 99, 'paid', now(), 'x', 'x', '1', '\x00')$$, '42501', NULL, 'orderflow_admin: INSERT into order_events is denied');
RESET ROLE;

SET ROLE orderflow_operator;
SELECT throws_ok($$UPDATE orderflow.order_events SET reason = 'forged'$$, '42501', NULL, 'orderflow_operator: UPDATE of order_events is denied');
SELECT throws_ok($$DELETE FROM orderflow.order_events$$, '42501', NULL, 'orderflow_operator: DELETE of order_events is denied');
SELECT throws_ok($$TRUNCATE orderflow.order_events$$, '42501', NULL, 'orderflow_operator: TRUNCATE of order_events is denied');
SELECT throws_ok($$INSERT INTO orderflow.order_events (order_id, seq, to_state, at, session_role, acting_role, xid, hash) VALUES (1, 99, 'paid', now(), 'x', 'x', '1', '\x00')$$, '42501', NULL, 'orderflow_operator: INSERT into order_events is denied');
RESET ROLE;

SET ROLE orderflow_warehouse;
SELECT throws_ok($$UPDATE orderflow.order_events SET reason = 'forged'$$, '42501', NULL, 'orderflow_warehouse: UPDATE of order_events is denied');
SELECT throws_ok($$DELETE FROM orderflow.order_events$$, '42501', NULL, 'orderflow_warehouse: DELETE of order_events is denied');
SELECT throws_ok($$TRUNCATE orderflow.order_events$$, '42501', NULL, 'orderflow_warehouse: TRUNCATE of order_events is denied');
SELECT throws_ok($$INSERT INTO orderflow.order_events (order_id, seq, to_state, at, session_role, acting_role, xid, hash) VALUES (1, 99, 'paid', now(), 'x', 'x', '1', '\x00')$$, '42501', NULL, 'orderflow_warehouse: INSERT into order_events is denied');
RESET ROLE;

SET ROLE orderflow_auditor;
SELECT throws_ok($$UPDATE orderflow.order_events SET reason = 'forged'$$, '42501', NULL, 'orderflow_auditor: UPDATE of order_events is denied');
SELECT throws_ok($$DELETE FROM orderflow.order_events$$, '42501', NULL, 'orderflow_auditor: DELETE of order_events is denied');
SELECT throws_ok($$TRUNCATE orderflow.order_events$$, '42501', NULL, 'orderflow_auditor: TRUNCATE of order_events is denied');
SELECT throws_ok($$INSERT INTO orderflow.order_events (order_id, seq, to_state, at, session_role, acting_role, xid, hash) VALUES (1, 99, 'paid', now(), 'x', 'x', '1', '\x00')$$, '42501', NULL, 'orderflow_auditor: INSERT into order_events is denied');
RESET ROLE;

SET ROLE orderflow_reporting;
SELECT throws_ok($$UPDATE orderflow.order_events SET reason = 'forged'$$, '42501', NULL, 'orderflow_reporting: UPDATE of order_events is denied');
SELECT throws_ok($$DELETE FROM orderflow.order_events$$, '42501', NULL, 'orderflow_reporting: DELETE of order_events is denied');
SELECT throws_ok($$TRUNCATE orderflow.order_events$$, '42501', NULL, 'orderflow_reporting: TRUNCATE of order_events is denied');
SELECT throws_ok($$INSERT INTO orderflow.order_events (order_id, seq, to_state, at, session_role, acting_role, xid, hash) VALUES (1, 99, 'paid', now(), 'x', 'x', '1', '\x00')$$, '42501', NULL, 'orderflow_reporting: INSERT into order_events is denied');
RESET ROLE;

SET ROLE tap_admin_login;
SELECT throws_ok($$UPDATE orderflow.order_events SET reason = 'forged'$$, '42501', NULL, 'login member of orderflow_admin: UPDATE of order_events is denied');
SELECT throws_ok($$DELETE FROM orderflow.order_events$$, '42501', NULL, 'login member of orderflow_admin: DELETE of order_events is denied');
SELECT throws_ok($$TRUNCATE orderflow.order_events$$, '42501', NULL, 'login member of orderflow_admin: TRUNCATE of order_events is denied');
SELECT throws_ok($$INSERT INTO orderflow.order_events (order_id, seq, to_state, at, session_role, acting_role, xid, hash) VALUES (1, 99, 'paid', now(), 'x', 'x', '1', '\x00')$$, '42501', NULL, 'login member of orderflow_admin: INSERT into order_events is denied');
RESET ROLE;

----------------------------------------------------------------------------
-- The owner of the history holds the privileges, but the append-only
-- trigger refuses UPDATE, DELETE and TRUNCATE (OF003).
----------------------------------------------------------------------------

SELECT is(set_config('role', tableowner, true), tableowner::text, 'acting as the owner of order_events')
  FROM pg_tables WHERE schemaname = 'orderflow' AND tablename = 'order_events';
SELECT throws_ok($$UPDATE orderflow.order_events SET reason = 'forged' WHERE order_id = (SELECT order_a FROM tap_ids)$$,
				 'OF003', 'UPDATE of the order history is not allowed', 'owner: UPDATE of order_events fails with OF003');
SELECT throws_ok($$DELETE FROM orderflow.order_events WHERE order_id = (SELECT order_a FROM tap_ids)$$,
				 'OF003', 'DELETE of the order history is not allowed', 'owner: DELETE of order_events fails with OF003');
SELECT throws_ok($$TRUNCATE orderflow.order_events$$,
				 'OF003', 'TRUNCATE of the order history is not allowed', 'owner: TRUNCATE of order_events fails with OF003');
RESET ROLE;

----------------------------------------------------------------------------
-- The auditor reads the history and verifies it.
----------------------------------------------------------------------------

SET ROLE orderflow_auditor;
SELECT results_eq(
	$$SELECT e.seq, e.from_state::text, e.to_state::text FROM orderflow.order_events e
	   WHERE e.order_id = (SELECT order_a FROM tap_ids) ORDER BY e.seq$$,
	$$VALUES (1, NULL::text, 'paid'::text)$$,
	'auditor reads the history of an order');
SELECT is_empty(
	$$SELECT * FROM orderflow.verify_history((SELECT order_a FROM tap_ids))$$,
	'auditor verifies the hash chain of an order');
SELECT lives_ok(
	$$SELECT * FROM orderflow.check_stock()$$,
	'auditor checks the stock counters against the ledger');
SELECT throws_ok(
	$$SELECT orderflow.reserve('X', 'Y', 1)$$, '42501', NULL,
	'auditor cannot reserve stock');
RESET ROLE;

----------------------------------------------------------------------------
-- Nothing in the schema is granted to PUBLIC: a fresh role holds no
-- privilege on any table, sequence, function, the schema or the type.
----------------------------------------------------------------------------

SELECT is_empty(
	$$SELECT c.relname FROM pg_class c
	   WHERE CASE WHEN c.relnamespace = 'orderflow'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
				  THEN has_table_privilege('tap_nobody', c.oid,
										   'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') END$$,
	'PUBLIC has no privilege on any table or view of orderflow');
SELECT is_empty(
	$$SELECT c.relname FROM pg_class c
	   WHERE CASE WHEN c.relnamespace = 'orderflow'::regnamespace AND c.relkind = 'S'
				  THEN has_sequence_privilege('tap_nobody', c.oid, 'USAGE, SELECT, UPDATE') END$$,
	'PUBLIC has no privilege on any sequence of orderflow');
SELECT is_empty(
	$$SELECT p.oid::regprocedure::text FROM pg_proc p
	   WHERE p.pronamespace = 'orderflow'::regnamespace
		 AND has_function_privilege('tap_nobody', p.oid, 'EXECUTE')$$,
	'PUBLIC cannot execute any function of orderflow');
SELECT ok(NOT has_schema_privilege('tap_nobody', 'orderflow', 'USAGE, CREATE'),
		  'PUBLIC has no privilege on schema orderflow');
SELECT ok(NOT has_type_privilege('tap_nobody', 'orderflow.order_state', 'USAGE'),
		  'PUBLIC cannot use type orderflow.order_state');

----------------------------------------------------------------------------
-- Row-level security: a tenant (the owner_role of its shop, working as an
-- operator) sees and changes only its own shop's orders and history.
----------------------------------------------------------------------------

SET ROLE tap_tenant_a;
SELECT results_eq(
	$$SELECT order_no FROM orderflow.orders
	   WHERE shop_id IN ((SELECT shop_a FROM tap_ids), (SELECT shop_b FROM tap_ids))$$,
	$$VALUES ('TAP-A-1')$$,
	'tenant A sees only shop A''s orders');
SELECT is(
	(SELECT count(*) FROM orderflow.order_events WHERE order_id = (SELECT order_b FROM tap_ids)),
	0::bigint,
	'tenant A sees none of shop B''s history');
SELECT lives_ok(
	$$SELECT orderflow.transition((SELECT order_a FROM tap_ids), 'approved', 'tenant A approves', 'paid')$$,
	'tenant A moves its own order');
RESET ROLE;
CREATE POLICY tap_no_hold ON orderflow.orders AS RESTRICTIVE FOR UPDATE TO tap_tenant_a
	USING (true) WITH CHECK (state OPERATOR(orderflow.<>) 'on_hold'::orderflow.order_state);
SET ROLE tap_tenant_a;
SELECT throws_ok(
	$$SELECT orderflow.transition((SELECT order_a FROM tap_ids), 'on_hold', 'tenant A holds')$$,
	'42501', NULL,
	'a policy on the changed row applies to a tenant''s transition()');
RESET ROLE;
DROP POLICY tap_no_hold ON orderflow.orders;
SET ROLE tap_tenant_a;
SELECT throws_ok(
	$$SELECT orderflow.transition((SELECT order_b FROM tap_ids), 'approved', 'tenant A meddles', 'paid')$$,
	'OF004', NULL,
	'tenant A cannot move shop B''s order: to it the order does not exist');
SELECT throws_ok(
	$$INSERT INTO orderflow.orders (shop_id, order_no) SELECT shop_b, 'TAP-B-FORGED' FROM tap_ids$$,
	'42501', NULL,
	'tenant A cannot create an order in shop B');
SELECT is(
	(SELECT count(*) FROM orderflow.order_events WHERE order_id = (SELECT order_a FROM tap_ids)),
	2::bigint,
	'tenant A sees both events of its order');
SELECT throws_ok(
	$$INSERT INTO orderflow.order_adjustments (order_id, kind, amount, reason)
	  SELECT order_b, 'line_cancelled', 0, 'forged' FROM tap_ids$$,
	'OF012', NULL,
	'tenant A cannot record an adjustment (and so notify the buyer) for shop B''s order');
SELECT throws_ok(
	$$SELECT orderflow.enqueue('order_cancelled', NULL, '{}', 'customer',
							   'orderflow:order_cancelled:' || (SELECT order_b FROM tap_ids))$$,
	'22023', NULL,
	'tenant A cannot take the key of a notice orderflow would queue for shop B''s order');
RESET ROLE;

-- The inbox (payloads and their status rows): each tenant ingests, sees and
-- syncs only its own shop's payloads.
CREATE TEMP TABLE tap_ingested AS
SELECT orderflow.ingest(shop_b, '{"order_no": "TAP-B-2", "status": "paid", "created_at": "2026-11-26T10:00:00Z",
								  "receiver": {"name": "B", "phone": "13900000002", "address": "B road 2"},
								  "lines": [{"sku": "TAP-SKU", "qty": 1, "unit_price": "1.00"}]}')
  FROM tap_ids;
SET ROLE tap_tenant_a;
SELECT lives_ok(
	$$SELECT orderflow.ingest(shop_a, '{"order_no": "TAP-A-2", "status": "paid", "created_at": "2026-11-26T10:00:00Z",
										"receiver": {"name": "A", "phone": "13900000001", "address": "A road 1"},
										"lines": [{"sku": "TAP-SKU", "qty": 1, "unit_price": "1.00"}]}')
		FROM tap_ids$$,
	'tenant A ingests a payload of its own shop');
SELECT throws_ok(
	$$SELECT orderflow.ingest(shop_b, '{"order_no": "TAP-B-3"}') FROM tap_ids$$,
	'42501', NULL,
	'tenant A cannot put a payload into shop B''s inbox');
SELECT results_eq(
	$$SELECT order_no || ':' || status FROM orderflow.inbox$$,
	$$VALUES ('TAP-A-2:pending')$$,
	'tenant A sees only its own shop''s inbox');
SELECT results_eq(
	$$SELECT new, rejected FROM orderflow.sync(10)$$,
	$$VALUES (1, 0)$$,
	'tenant A''s sync applies its own payload and leaves shop B''s alone');
RESET ROLE;
SELECT results_eq(
	$$SELECT order_no || ':' || status FROM orderflow.inbox ORDER BY id$$,
	$$VALUES ('TAP-B-2:pending'), ('TAP-A-2:done')$$,
	'shop B''s payload still waits for a sync that may see it');

-- Holds of an order are written and closed by the extension's functions as
-- its owner; they still act only on orders the caller may see.
-- (Stock received in this transaction is held as incoming stock.)
CREATE TEMP TABLE tap_stock AS
SELECT add_warehouse('TAP-W', 'tap warehouse'), add_bin('TAP-W', 'TAP-BIN'),
	   add_sku('TAP-STOCK', 'tap stock', 1.00), receive_stock('TAP-STOCK', 'TAP-W', 'TAP-BIN', 10);
ALTER TABLE tap_ids ADD hold_b bigint;
UPDATE tap_ids SET hold_b = hold('TAP-STOCK', 'TAP-W', 2, NULL, NULL, order_b, 1, NULL, NULL, true);
SET ROLE tap_tenant_a;
SELECT throws_ok(
	$$SELECT orderflow.release(hold_b) FROM tap_ids$$,
	'OF004', NULL,
	'tenant A cannot release a hold of shop B''s order');
SELECT throws_ok(
	$$SELECT orderflow.release_holds(order_b) FROM tap_ids$$,
	'OF004', NULL,
	'tenant A cannot release the holds of shop B''s order');
SELECT throws_ok(
	$$SELECT orderflow.hold('TAP-STOCK', 'TAP-W', 1, NULL, NULL, order_b, 1, NULL, NULL, true) FROM tap_ids$$,
	'OF004', NULL,
	'tenant A cannot hold stock for shop B''s order');
SELECT is(
	(SELECT count(*) FROM orderflow.reservations r WHERE r.order_id = (SELECT order_b FROM tap_ids)),
	0::bigint,
	'tenant A does not see the holds of shop B''s order');
RESET ROLE;
SET ROLE tap_tenant_b;
SELECT is(
	(SELECT count(*) FROM orderflow.reservations r WHERE r.order_id = (SELECT order_b FROM tap_ids)),
	1::bigint,
	'tenant B sees the hold of its own order');
RESET ROLE;
SELECT results_eq(
	$$SELECT r.status, r.qty FROM orderflow.reservations r WHERE r.order_id = (SELECT order_b FROM tap_ids)$$,
	$$VALUES ('held'::text, 2)$$,
	'shop B''s order still holds its stock, and nothing else was held for it');
SET ROLE tap_tenant_b;
SELECT ok(orderflow.release(hold_b), 'tenant B releases the hold of its own order') FROM tap_ids;
SELECT is(orderflow.release(hold_b), false, 'a second release says the hold is released already') FROM tap_ids;
RESET ROLE;
SELECT is(
	(SELECT r.status FROM orderflow.reservations r WHERE r.id = (SELECT hold_b FROM tap_ids)),
	'released',
	'the hold is released once');

-- A checkout hold placed for a shop is its tenants': another tenant can
-- neither place one for that shop nor release it.  (The hold is made from
-- stock received in this transaction, then given to shop B, as reserve()
-- with shop B would write it once the stock is committed.)
ALTER TABLE tap_ids ADD checkout_b bigint;
UPDATE tap_ids SET checkout_b = hold('TAP-STOCK', 'TAP-W', 1, 'TAP-B-9', NULL, NULL, NULL, NULL, NULL, true);
UPDATE orderflow.reservations r SET shop_id = t.shop_b FROM tap_ids t WHERE r.id = t.checkout_b;
SET ROLE tap_tenant_a;
SELECT throws_ok(
	$$SELECT orderflow.reserve('TAP-STOCK', 'TAP-W', 1, 'TAP-B-9', NULL, shop_b) FROM tap_ids$$,
	'OF005', NULL,
	'tenant A cannot place a checkout hold for shop B');
SELECT throws_ok(
	$$SELECT orderflow.release(checkout_b) FROM tap_ids$$,
	'OF020', NULL,
	'tenant A cannot release shop B''s checkout hold: to it the hold does not exist');
SELECT is(orderflow.reserve('TAP-STOCK', 'TAP-W', 1, 'TAP-A-9', NULL, shop_a), NULL,
	'tenant A may place holds for its own shop (none here: no committed stock)') FROM tap_ids;
SELECT is(
	(SELECT count(*) FROM orderflow.reservations r WHERE r.id = (SELECT checkout_b FROM tap_ids)),
	0::bigint,
	'tenant A does not see shop B''s checkout hold');
RESET ROLE;

-- SKU mappings: the platform-wide ones are everyone's, a shop's own are
-- its tenants'.
CREATE TEMP TABLE tap_maps AS
SELECT map_sku('generic', 'TAP-PLATFORM-SKU', 'TAP-STOCK') AS platform_wide,
       map_sku('generic', 'TAP-B-SKU', 'TAP-STOCK', shop_b) AS shop_b_own FROM tap_ids;
SET ROLE tap_tenant_a;
SELECT results_eq(
	$$SELECT m.platform_sku FROM orderflow.sku_map m WHERE m.platform_sku LIKE 'TAP-%' ORDER BY 1$$,
	$$VALUES ('TAP-PLATFORM-SKU'::text)$$,
	'tenant A sees the platform-wide mapping, not shop B''s');
RESET ROLE;
SET ROLE tap_tenant_b;
SELECT results_eq(
	$$SELECT m.platform_sku FROM orderflow.sku_map m WHERE m.platform_sku LIKE 'TAP-%' ORDER BY 1$$,
	$$VALUES ('TAP-B-SKU'::text), ('TAP-PLATFORM-SKU'::text)$$,
	'tenant B sees its own mapping too');
RESET ROLE;
SET ROLE tap_tenant_b;
SELECT ok(orderflow.release(checkout_b), 'tenant B releases its shop''s checkout hold') FROM tap_ids;
RESET ROLE;

-- What an approved order owes changes only with a refund record, through
-- orderflow.cancel_line and orderflow.substitute_line: the warehouse role
-- holds the table privileges those functions use, but not to use them
-- directly.
INSERT INTO orders (shop_id, order_no, state) SELECT shop_a, 'TAP-A-3', 'paid' FROM tap_ids;
ALTER TABLE tap_ids ADD order_a3 bigint;
UPDATE tap_ids SET order_a3 = find_order(shop_a, 'TAP-A-3');
INSERT INTO order_lines (order_id, sku, qty, unit_price) SELECT order_a3, 'TAP-STOCK', 2, 1.00 FROM tap_ids;
UPDATE orders SET goods_amount = 2.00, total_amount = 2.00, paid_amount = 2.00
 WHERE id = (SELECT order_a3 FROM tap_ids);
CREATE TEMP TABLE tap_approved AS SELECT transition(order_a3, 'approved') FROM tap_ids;
SET ROLE tap_warehouse;
SELECT throws_ok(
	$$UPDATE orderflow.order_lines SET cancelled_qty = 2 WHERE order_id = (SELECT order_a3 FROM tap_ids)$$,
	'OF012', NULL,
	'warehouse cannot cancel units by updating the line');
SELECT throws_ok(
	$$INSERT INTO orderflow.order_lines (order_id, sku, qty, unit_price, substitutes)
	  SELECT order_a3, 'TAP-STOCK', 1, 0, 1 FROM tap_ids$$,
	'OF012', NULL,
	'warehouse cannot add a substitution line directly');
SELECT throws_ok(
	$$UPDATE orderflow.orders SET total_amount = 0 WHERE id = (SELECT order_a3 FROM tap_ids)$$,
	'OF012', NULL,
	'warehouse cannot change the amount of an approved order');
SELECT throws_ok(
	$$INSERT INTO orderflow.order_adjustments (order_id, line_no, kind, amount, reason)
	  SELECT order_a3, 1, 'line_cancelled', 2.00, 'forged' FROM tap_ids$$,
	'OF012', NULL,
	'warehouse cannot record a refund directly');
SELECT throws_ok(
	$$SELECT orderflow.cancel_units(order_a3, 1, 2, 'skipping the hold release') FROM tap_ids$$,
	'OF012', NULL,
	'warehouse cannot call the unit cancellation step on its own');
SELECT is(orderflow.cancel_line(order_a3, 1, 'customer changed mind'), 2.00::numeric,
		  'warehouse cancels the line through cancel_line: refund 2.00')
  FROM tap_ids;
RESET ROLE;
SELECT results_eq(
	$$SELECT o.state::text, o.total_amount, l.cancelled_qty
		FROM orderflow.orders o JOIN orderflow.order_lines l ON l.order_id = o.id
	   WHERE o.id = (SELECT order_a3 FROM tap_ids)$$,
	$$VALUES ('cancelled'::text, 0.00::numeric, 2)$$,
	'the order is cancelled, its amount lowered and the line cancelled once');
SELECT results_eq(
	$$SELECT kind, amount FROM orderflow.order_adjustments WHERE order_id = (SELECT order_a3 FROM tap_ids)$$,
	$$VALUES ('line_cancelled'::text, 2.00::numeric)$$,
	'one refund record, written by cancel_line');

-- A tenant cancelling its own paid order gets the refund recorded (by the
-- extension, whatever the tenant may write), and cannot forge one.
INSERT INTO orders (shop_id, order_no, state, total_amount, paid_amount)
SELECT shop_a, 'TAP-A-4', 'paid', 5.00, 5.00 FROM tap_ids;
SET ROLE tap_tenant_a;
SELECT throws_ok(
	$$INSERT INTO orderflow.order_adjustments (order_id, kind, amount, reason)
	  SELECT find_order(shop_a, 'TAP-A-4'), 'order_cancelled', 50.00, 'forged' FROM tap_ids$$,
	'OF012', NULL,
	'tenant cannot record the refund of a cancelled order itself');
SELECT is(transition(find_order(shop_a, 'TAP-A-4'), 'cancelled', 'buyer asked')::text, 'paid',
		  'tenant cancels its own paid order')
  FROM tap_ids;
SELECT results_eq(
	$$SELECT a.kind, a.amount FROM orderflow.order_adjustments a
	   WHERE a.order_id = (SELECT find_order(shop_a, 'TAP-A-4') FROM tap_ids)$$,
	$$VALUES ('order_cancelled'::text, 5.00::numeric)$$,
	'the tenant sees one refund of what was paid');
RESET ROLE;

-- Settling that refund: tenant B cannot see it (OF025), warehouse staff
-- may not settle, tenant A settles it once (now, not backdated), and
-- nobody changes it after.
CREATE TEMP TABLE tap_refund AS
SELECT a.id FROM orderflow.order_adjustments a
 WHERE a.order_id = (SELECT find_order(shop_a, 'TAP-A-4') FROM tap_ids);
GRANT SELECT ON tap_refund TO PUBLIC;
SET ROLE tap_tenant_b;
SELECT throws_ok($$SELECT orderflow.settle_adjustment(id) FROM tap_refund$$, 'OF025', NULL,
				 'tenant B cannot settle shop A''s refund: it does not exist for B');
RESET ROLE;
SET ROLE tap_warehouse;
SELECT throws_ok($$SELECT orderflow.settle_adjustment(id) FROM tap_refund$$, '42501', NULL,
				 'warehouse staff cannot settle refunds');
SELECT throws_ok($$UPDATE orderflow.order_adjustments SET settled_at = now() WHERE id = (SELECT id FROM tap_refund)$$,
				 '42501', NULL, '... nor mark one settled directly');
RESET ROLE;
SET ROLE tap_tenant_a;
SELECT throws_ok($$UPDATE orderflow.order_adjustments SET settled_at = now() - interval '1 day'
				   WHERE id = (SELECT id FROM tap_refund)$$,
				 'OF012', NULL, 'tenant A cannot mark its refund settled at another time than now');
SELECT is(orderflow.settle_adjustment(id), true, 'tenant A settles its refund') FROM tap_refund;
SELECT is(orderflow.settle_adjustment(id), false, '... and a second call settles nothing') FROM tap_refund;
SELECT throws_ok($$UPDATE orderflow.order_adjustments SET settled_at = NULL WHERE id = (SELECT id FROM tap_refund)$$,
				 'OF012', NULL, 'tenant A cannot mark the refund outstanding again');
RESET ROLE;
SELECT throws_ok($$UPDATE orderflow.order_adjustments SET amount = 1 WHERE id = (SELECT id FROM tap_refund)$$,
				 'OF012', NULL, 'nor can a superuser change a settled refund');

SET ROLE tap_tenant_b;
SELECT results_eq(
	$$SELECT order_no || ':' || state FROM orderflow.orders
	   WHERE shop_id IN ((SELECT shop_a FROM tap_ids), (SELECT shop_b FROM tap_ids))$$,
	$$VALUES ('TAP-B-1:paid')$$,
	'tenant B sees only shop B''s order, still paid');
RESET ROLE;

-- The tenant policies ask which shops the role sees once per query, not
-- once per row: a tenant's scan of its orders calls visible_shops() once
-- (the whole test is one transaction, so its call counts are this one's).
SET LOCAL track_functions = 'all';
INSERT INTO orders (shop_id, order_no) SELECT shop_a, 'TAP-A-' || i FROM tap_ids, generate_series(10, 14) i;
SET ROLE tap_tenant_a;
SELECT is(visible_shops(), ARRAY[(SELECT shop_a FROM tap_ids)], 'tenant A''s visible shops are shop A');
SELECT is(sees_all_shops(), false, 'a tenant does not see every shop');
SELECT is((SELECT count(*) FROM orderflow.orders WHERE order_no LIKE 'TAP-%'), 9::bigint,
		  'tenant A counts its own nine orders');
SELECT is(pg_stat_get_xact_function_calls('orderflow.visible_shops()'::regprocedure), 2::bigint,
		  'one call of visible_shops() for the count (after the direct one), not one per order');
RESET ROLE;
SET ROLE tap_warehouse;
SELECT is(sees_all_shops(), true, 'warehouse staff see every shop');
SELECT is((SELECT count(DISTINCT shop_id) FROM orderflow.orders WHERE order_no LIKE 'TAP-%'), 2::bigint,
		  'warehouse staff see the orders of both shops');
SELECT is(pg_stat_get_xact_function_calls('orderflow.visible_shops()'::regprocedure), 2::bigint,
		  '... through the staff policy, without asking which shops they own');
RESET ROLE;
CREATE ROLE tap_tenant_c NOLOGIN IN ROLE orderflow_operator;
SET ROLE tap_tenant_c;
SELECT is(visible_shops(), NULL::bigint[], 'an operator that owns no shop has no visible shops');
SELECT is((SELECT count(*) FROM orderflow.orders), 0::bigint, '... and sees no order');
RESET ROLE;

-- A tenant cannot open an exception on another shop's order, nor move one
-- there.
SET ROLE tap_tenant_a;
SELECT throws_ok(
	$$INSERT INTO orderflow.exceptions (kind, order_id, shop_id) SELECT 'missing_contact', order_b, shop_a FROM tap_ids$$,
	'OF004', NULL,
	'tenant A cannot open an exception on shop B''s order under its own shop');
SELECT lives_ok(
	$$INSERT INTO orderflow.exceptions (kind, order_id, shop_id) SELECT 'missing_contact', order_a, shop_a FROM tap_ids$$,
	'tenant A opens one on its own order');
SELECT throws_ok(
	$$UPDATE orderflow.exceptions SET order_id = (SELECT order_b FROM tap_ids) WHERE kind = 'missing_contact'$$,
	'42501', NULL,
	'nor can it point an exception at another order');
RESET ROLE;

-- Stock totals count every shop's holds, also for a tenant that may not
-- read them one by one.
CREATE TEMP TABLE tap_lots AS SELECT planned, free FROM lot_stock('TAP-STOCK', 'TAP-W');
CREATE TEMP TABLE tap_checks AS SELECT * FROM check_stock();
GRANT SELECT ON tap_lots, tap_checks TO PUBLIC;
SET ROLE tap_tenant_a;
SELECT results_eq($$SELECT planned, free FROM orderflow.lot_stock('TAP-STOCK', 'TAP-W')$$,
	$$SELECT planned, free FROM tap_lots$$,
	'a tenant''s lot_stock counts the holds of other shops'' orders');
SELECT set_eq($$SELECT * FROM orderflow.check_stock()$$, $$SELECT * FROM tap_checks$$,
	'a tenant''s check_stock finds what the owner''s finds');
RESET ROLE;

-- Compaction runs for the roles it is granted to, which cannot delete
-- from the ledger themselves.
SET ROLE tap_warehouse;
SELECT throws_ok($$SELECT orderflow.compact_stock('-1 day')$$, '22023', NULL,
	'a negative compaction age is refused');
SELECT throws_ok($$SELECT orderflow.compact_stock(NULL)$$, '22004', NULL,
	'so is none');
SELECT lives_ok($$SELECT orderflow.compact_stock('0 seconds')$$,
	'warehouse staff can run the compaction');
SELECT throws_ok($$DELETE FROM orderflow.stock_movements$$, '42501', NULL,
	'but cannot delete movements themselves');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;

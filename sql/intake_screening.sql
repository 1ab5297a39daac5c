-- Intake screening and the exception queue: exact duplicates merged,
-- suspected duplicates (same receiver phone and lines within the shop's
-- duplicate_window), missing contact details.
SET search_path = orderflow, public;
SET timezone = 'UTC';

SELECT add_sku('SC-A', 'A', 10.00) > 0 AS a, add_sku('SC-B', 'B', 5.00) > 0 AS b;
SELECT add_shop('sc-web', 'generic', '{"duplicate_window": "2 hours"}') AS web \gset

CREATE FUNCTION pg_temp.doc(no text, at text, phone text, lines jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('order_no', no, 'status', 'paid', 'created_at', at, 'currency', 'CNY',
		'receiver', jsonb_build_object('name', '孙八', 'phone', phone, 'address', '某街2号',
									   'province', '江苏省', 'city', '南京市'),
		'lines', lines)
$$;

-- Exact duplicates: the same platform order number delivered with other
-- bytes but the same content is merged into the one order.
SELECT ingest(:web, pg_temp.doc('SC-1', '2026-03-01T10:00:00Z', '13100131000',
	'[{"sku": "SC-A", "qty": 1, "unit_price": "10"}, {"sku": "SC-B", "qty": 2, "unit_price": "5"}]')) > 0;
SELECT * FROM sync();
SELECT ingest(:web, pg_temp.doc('SC-1', '2026-03-01T10:00:00Z', '13100131000',
	'[{"sku": "SC-A", "qty": 1, "unit_price": "10"}, {"sku": "SC-B", "qty": 2, "unit_price": "5"}]') || '{"x": 1}') > 0;
SELECT * FROM sync();
SELECT count(*) AS orders FROM orders WHERE shop_id = :web;

-- Suspected duplicates: same phone, same lines (in another order of
-- lines) an hour later -> exception; three hours later (outside the
-- window), another phone, or other quantities -> none.
SELECT ingest(:web, pg_temp.doc('SC-2', '2026-03-01T11:00:00Z', '13100131000',
	'[{"sku": "SC-B", "qty": 2, "unit_price": "5"}, {"sku": "SC-A", "qty": 1, "unit_price": "10"}]')) > 0;
SELECT ingest(:web, pg_temp.doc('SC-3', '2026-03-01T13:30:00Z', '13100131000',
	'[{"sku": "SC-A", "qty": 1, "unit_price": "10"}, {"sku": "SC-B", "qty": 2, "unit_price": "5"}]')) > 0;
SELECT ingest(:web, pg_temp.doc('SC-4', '2026-03-01T10:30:00Z', '13200132000',
	'[{"sku": "SC-A", "qty": 1, "unit_price": "10"}, {"sku": "SC-B", "qty": 2, "unit_price": "5"}]')) > 0;
SELECT ingest(:web, pg_temp.doc('SC-5', '2026-03-01T10:30:00Z', '13100131000',
	'[{"sku": "SC-A", "qty": 2, "unit_price": "10"}, {"sku": "SC-B", "qty": 2, "unit_price": "5"}]')) > 0;
SELECT * FROM sync();
SELECT o.order_no, e.kind, e.detail->'similar_orders' @> jsonb_build_array(jsonb_build_object('order_no', 'SC-1')) AS names_sc1,
	   e.detail->>'window' AS window
  FROM exceptions e JOIN orders o ON o.id = e.order_id
 WHERE o.shop_id = :web ORDER BY o.order_no;

-- Missing contact details: no phone, no address.
SELECT ingest(:web, pg_temp.doc('SC-6', '2026-03-02T10:00:00Z', NULL,
	'[{"sku": "SC-A", "qty": 1, "unit_price": "10"}]') #- '{receiver,address}') > 0;
SELECT * FROM sync();
SELECT e.kind, e.detail FROM exceptions e WHERE e.order_id = find_order(:web, 'SC-6');

-- The queue: one open exception per kind and order (opening again merges
-- the detail), assignment, resolution once.
SELECT open_exception('missing_contact', find_order(:web, 'SC-6'), '{"note": "called buyer"}') =
	   (SELECT id FROM exceptions WHERE order_id = find_order(:web, 'SC-6')) AS same_exception;
SELECT detail FROM exceptions WHERE order_id = find_order(:web, 'SC-6');
SELECT assign_exception(id, 'alice') FROM exceptions WHERE order_id = find_order(:web, 'SC-6');
SELECT resolve_exception(id, 'phone added by customer service') FROM exceptions WHERE order_id = find_order(:web, 'SC-6');
SET client_min_messages = warning;
SELECT resolve_exception(id, 'again') FROM exceptions WHERE order_id = find_order(:web, 'SC-6');
RESET client_min_messages;
SELECT kind, owner, resolution, resolved_at IS NOT NULL AS resolved FROM exceptions WHERE order_id = find_order(:web, 'SC-6');
-- Once resolved, a new one of the same kind can open.
SELECT open_exception('missing_contact', find_order(:web, 'SC-6')) <>
	   (SELECT id FROM exceptions WHERE order_id = find_order(:web, 'SC-6') AND resolved_at IS NOT NULL) AS new_exception;
-- Shop-level exceptions have no order.
SELECT open_exception('platform_unreachable', NULL, '{"http": 503}', shop_id => :web) > 0 AS opened;
\set VERBOSITY sqlstate
SELECT open_exception('Bad Kind', find_order(:web, 'SC-6'));
SELECT open_exception('x', NULL);
SELECT open_exception('x', -1);
SELECT open_exception('x', find_order(:web, 'SC-6'), '[]');
SELECT resolve_exception(-1, 'x');
SELECT resolve_exception(1, ' ');
\set VERBOSITY default

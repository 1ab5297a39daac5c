-- Intake flow: idempotent ingest, updates from the platform moving orders
-- through the trigger, malformed payloads rejected with their reason,
-- SKU mapping, a user-registered adapter, reconcile and the sync-lag view.
SET search_path = orderflow, public;
SET timezone = 'UTC';

SELECT add_sku('FL-TEA', 'Tea', 20.00) > 0 AS sku;
SELECT add_shop('fl-web', 'generic', '{"payment_timeout": "2 hours"}') AS web \gset

CREATE TEMP TABLE p (name text PRIMARY KEY, doc jsonb);
INSERT INTO p VALUES ('base', '{"order_no": "FL-1", "status": "pending_payment",
	"created_at": "2026-01-05T09:00:00+08:00", "currency": "CNY",
	"receiver": {"name": "赵六", "phone": "13600136000", "province": "北京市", "city": "北京市",
				 "district": "海淀区", "address": "中关村大街1号", "postcode": "100080"},
	"lines": [{"sku": "FL-TEA", "qty": 2, "unit_price": "20.00"}], "total": "40.00"}');

-- 1. The same payload twice is stored once: same inbox id, two deliveries.
SELECT ingest(:web, doc) AS first FROM p WHERE name = 'base' \gset
SELECT ingest(:web, doc) = :first AS same_row FROM p WHERE name = 'base';
SELECT order_no, status, deliveries, paid FROM inbox WHERE shop_id = :web;
SELECT * FROM sync();
SELECT order_no, state, total_amount, paid_amount, payment_deadline - created_at AS deadline_after
  FROM orders WHERE shop_id = :web;
-- Delivered again after sync: still one row, nothing to do.
SELECT ingest(:web, doc) = :first AS same_row FROM p WHERE name = 'base';
SELECT * FROM sync();

-- 2. The same order with keys in another order and an unknown key is the
-- same document once normalized: a duplicate, merged into the order.
SELECT ingest(:web, jsonb_set(doc, '{source}', '"app"')) <> :first AS new_row FROM p WHERE name = 'base';
SELECT * FROM sync();

-- 3. Payment arrives: pending_payment -> paid through the trigger, audited.
SELECT ingest(:web, doc || '{"status": "paid", "paid_at": "2026-01-05T09:30:00+08:00",
	"payment": {"method": "wechat", "amount": "40.00", "transaction_id": "W1"}}') > 0 AS stored
  FROM p WHERE name = 'base';
SELECT * FROM sync();
SELECT order_no, state, paid_amount, paid_at, payment_method, payment_deadline FROM orders WHERE shop_id = :web;
SELECT method, amount, transaction_id FROM order_payments WHERE order_id = find_order(:web, 'FL-1');

-- 4. The platform cancels: paid -> cancelled (the allocator releases
-- holdings on that transition).
SELECT ingest(:web, doc || '{"status": "cancelled"}') > 0 AS stored FROM p WHERE name = 'base';
SELECT * FROM sync();
SELECT e.seq, e.from_state, e.to_state, regexp_replace(e.reason, '[0-9]+$', 'N') AS reason
  FROM order_events e WHERE e.order_id = find_order(:web, 'FL-1') ORDER BY e.seq;
-- A late payment report for the cancelled order opens an exception and
-- leaves the order cancelled.
SELECT ingest(:web, doc || '{"status": "paid", "payment": {"amount": "40.00"}, "note": "late"}') > 0 AS stored
  FROM p WHERE name = 'base';
SELECT * FROM sync();
SELECT state FROM orders WHERE id = find_order(:web, 'FL-1');
SELECT kind, detail->>'paid_amount' AS paid FROM exceptions WHERE order_id = find_order(:web, 'FL-1');

-- 5. A changed payload that arrives while an older one waits supersedes it;
-- paid payloads are processed first.
SELECT ingest(:web, jsonb_set(doc, '{order_no}', '"FL-2"')) AS old2 FROM p WHERE name = 'base' \gset
SELECT ingest(:web, jsonb_set(doc, '{order_no}', '"FL-2"') || '{"note": "v2"}') AS new2 FROM p WHERE name = 'base' \gset
SELECT ingest(:web, jsonb_set(doc, '{order_no}', '"FL-3"') || '{"status": "paid"}') AS paid3 FROM p WHERE name = 'base' \gset
SELECT id = :old2 AS is_old, status FROM inbox WHERE id IN (:old2, :new2) ORDER BY id;
SELECT * FROM sync(1);
SELECT order_no FROM orders WHERE shop_id = :web ORDER BY id;
SELECT * FROM sync();
SELECT order_no, buyer_note FROM orders WHERE shop_id = :web ORDER BY id;

-- 6. Malformed payloads: each is rejected with its reason kept in the
-- inbox, creates no order, and does not stop the rest of the batch (the
-- one without a currency is fine: it takes the shop's).
INSERT INTO p VALUES
	('no order_no', '{"status": "paid"}'),
	('bad status', '{"order_no": "BAD-1", "status": "shipped"}'),
	('no lines', '{"order_no": "BAD-2", "status": "paid", "created_at": "2026-01-05T09:00:00Z", "currency": "CNY", "lines": []}'),
	('bad qty', '{"order_no": "BAD-3", "status": "paid", "created_at": "2026-01-05T09:00:00Z", "currency": "CNY", "lines": [{"sku": "FL-TEA", "qty": -1, "unit_price": "1"}]}'),
	('float money', '{"order_no": "BAD-4", "status": "paid", "created_at": "2026-01-05T09:00:00Z", "currency": "CNY", "lines": [{"sku": "FL-TEA", "qty": 1, "unit_price": "1.005"}]}'),
	('text money', '{"order_no": "BAD-5", "status": "paid", "created_at": "2026-01-05T09:00:00Z", "currency": "CNY", "lines": [{"sku": "FL-TEA", "qty": 1, "unit_price": "twenty"}]}'),
	('bad time', '{"order_no": "BAD-6", "status": "paid", "created_at": "yesterday", "currency": "CNY", "lines": [{"sku": "FL-TEA", "qty": 1, "unit_price": "1"}]}'),
	('wrong total', '{"order_no": "BAD-7", "status": "paid", "created_at": "2026-01-05T09:00:00Z", "currency": "CNY", "lines": [{"sku": "FL-TEA", "qty": 1, "unit_price": "20"}], "shipping_fee": "5", "total": "20.00"}'),
	('bad discount', '{"order_no": "BAD-8", "status": "paid", "created_at": "2026-01-05T09:00:00Z", "currency": "CNY", "lines": [{"sku": "FL-TEA", "qty": 1, "unit_price": "20"}], "discounts": [{"kind": "bogo"}]}'),
	('too much off', '{"order_no": "BAD-9", "status": "paid", "created_at": "2026-01-05T09:00:00Z", "currency": "CNY", "lines": [{"sku": "FL-TEA", "qty": 1, "unit_price": "20"}], "discounts": [{"kind": "coupon", "amount": "25"}]}'),
	('lines not array', '{"order_no": "BAD-10", "status": "paid", "created_at": "2026-01-05T09:00:00Z", "currency": "CNY", "lines": {"sku": "FL-TEA"}}'),
	('no currency: shop default', '{"order_no": "FL-4", "status": "paid", "created_at": "2026-01-05T09:00:00Z", "lines": [{"sku": "FL-TEA", "qty": 1, "unit_price": "20"}]}');
SELECT name, ingest(:web, doc) > 0 AS stored FROM p WHERE name NOT IN ('base') ORDER BY name;
SELECT * FROM sync();
SELECT coalesce(i.order_no, '-') AS order_no, i.status, i.error_code, i.error, i.error_detail
  FROM inbox i WHERE i.shop_id = :web AND i.status = 'rejected' ORDER BY i.id;
SELECT count(*) AS partial_orders FROM orders WHERE shop_id = :web AND order_no LIKE 'BAD-%';
-- A fixed adapter or data can be retried.
SELECT requeue(id) FROM inbox WHERE shop_id = :web AND order_no = 'BAD-1';
SELECT * FROM sync();

-- 7. Bad arguments get specific SQLSTATEs.
\set VERBOSITY sqlstate
SELECT ingest(NULL, '{}');
SELECT ingest(-1, '{}');
SELECT ingest(:web, '[1, 2]');
SELECT sync(0);
SELECT reconcile(:web, NULL);
SELECT reconcile(:web, ARRAY['x', NULL]);
SELECT requeue(-1);
SELECT add_shop('fl-jd', 'jd') AS jd \gset
SELECT ingest(:jd, '{"order_no": "J1"}');
\set VERBOSITY default

-- 8. Unknown SKUs open an exception without failing the batch; a mapping
-- resolves later orders.
SELECT add_shop('fl-tb', 'taobao') AS tb \gset
SELECT ingest(:tb, '{"tid": 9001, "status": "WAIT_SELLER_SEND_GOODS", "created": "2026-01-05 10:00:00",
	"pay_time": "2026-01-05 10:01:00", "payment": "20.00", "post_fee": "0.00",
	"receiver_name": "钱七", "receiver_mobile": "13500135000", "receiver_address": "某路1号",
	"orders": {"order": [{"oid": 1, "sku_id": "777", "outer_sku_id": "X-1", "num": 1, "price": "20.00"}]}}') > 0 AS stored;
SELECT * FROM sync();
SELECT kind, detail FROM exceptions WHERE order_id = find_order(:tb, '9001');
SELECT map_sku('taobao', '777', 'FL-TEA', :tb) > 0 AS mapped;
SELECT ingest(:tb, '{"tid": 9002, "status": "WAIT_BUYER_PAY", "created": "2026-01-05 10:00:00",
	"payment": "20.00", "receiver_name": "钱七", "receiver_mobile": "13500135000", "receiver_address": "某路1号",
	"orders": {"order": [{"oid": 2, "sku_id": "777", "num": 1, "price": "20.00"}]}}') > 0 AS stored;
SELECT * FROM sync();
SELECT o.order_no, l.sku, l.platform_sku FROM order_lines l JOIN orders o ON o.id = l.order_id
 WHERE o.shop_id = :tb ORDER BY 1;
\set VERBOSITY sqlstate
SELECT map_sku('taobao', '778', 'NO-SUCH-SKU');
SELECT map_sku('nosuch', '778', 'FL-TEA');
\set VERBOSITY default

-- 9. A user adapter for a platform of their own.
CREATE FUNCTION pg_temp.adapter_csvshop(payload jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('order_no', payload->>'no', 'status', 'paid', 'currency', 'CNY',
		'created_at', payload->>'at', 'receiver', jsonb_build_object('name', payload->>'who',
		'phone', payload->>'tel', 'address', payload->>'addr'),
		'lines', jsonb_build_array(jsonb_build_object('sku', payload->>'sku', 'qty', payload->'n',
		'unit_price', payload->'price')))
$$;
SELECT register_adapter('csvshop', 'pg_temp.adapter_csvshop(jsonb)', description => 'CSV exports');
SELECT add_shop('fl-csv', 'csvshop') AS csv \gset
SELECT ingest(:csv, '{"no": "C-1", "at": "2026-01-05T10:00:00Z", "who": "A", "tel": "13400134000",
	"addr": "x", "sku": "FL-TEA", "n": 3, "price": "20"}') > 0 AS stored;
SELECT * FROM sync();
SELECT order_no, state, total_amount, receiver_name FROM orders WHERE shop_id = :csv;
SELECT order_no, paid FROM inbox WHERE shop_id = :csv;
\set VERBOSITY sqlstate
SELECT register_adapter('csvshop', 'pg_catalog.upper(text)');
SELECT register_adapter('Bad Name', 'pg_temp.adapter_csvshop(jsonb)');
\set VERBOSITY default

-- 10. Reconcile both ways: numbers the platform has that we lack (with
-- their inbox status), and our orders the platform list lacks.
SELECT * FROM reconcile(:web, ARRAY['FL-1', 'FL-2', 'BAD-3', 'NEVER-SEEN']);
SELECT * FROM reconcile(:web, ARRAY['FL-1', 'FL-2', 'FL-3'], since => '2026-01-01', until => '2026-02-01');

-- 11. Sync lag per shop.
SELECT shop, platform, pending, errors, last_error, last_payload_at IS NOT NULL AS has_payloads
  FROM sync_lag WHERE shop LIKE 'fl-%' ORDER BY shop;

-- Sync applies runs of new generic orders set-based (intake_normalize_set,
-- intake_insert_new) and everything else payload by payload
-- (intake_apply).  Shown here: both paths give the same documents, rows
-- and exceptions; screening inside one batch; mixed batches keep their order.
SET search_path = orderflow, public;
SET timezone = 'UTC';

SELECT add_sku('BT-A', 'A', 10.00) > 0 AS a, add_sku('BT-B', 'B', 5.00) > 0 AS b;
SELECT add_shop('bt-set', 'generic', '{"duplicate_window": "2 hours"}') AS s1 \gset
SELECT add_shop('bt-one', 'generic', '{"duplicate_window": "2 hours"}') AS s2 \gset

-- 1. intake_normalize_set returns exactly intake_normalize's document
-- (compared as text: doc_hash depends on it), or NULL where it does not
-- vouch for the document.  Mutated copies of a few documents, seeded.
CREATE FUNCTION pg_temp.norm(d jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	RETURN orderflow.intake_normalize(d)::text;
EXCEPTION WHEN others THEN
	RETURN NULL;
END
$$;
CREATE TEMP TABLE seeds (n int, doc jsonb);
INSERT INTO seeds VALUES
	(0, '{"order_no": "N-1", "status": "paid", "created_at": "2026-11-26T10:00:00+08:00", "paid_at": "2026-11-26T10:01:00+08:00",
		  "buyer": {"id": "u1", "name": "李四", "phone": "13900139000"}, "currency": "CNY", "note": " 周末 ",
		  "receiver": {"name": "张三", "phone": "13800138000", "country": "CN", "province": "浙江省", "city": "杭州市",
					   "district": "西湖区", "address": "文三路100号", "postcode": "310000"},
		  "lines": [{"sku": "BT-A", "name": "A", "qty": 2, "unit_price": "59.00", "discount": "0.00"}],
		  "discounts": [{"kind": "coupon", "code": "C10", "amount": "10.00"}, {"kind": "threshold", "threshold": "100.00", "amount": "20.00"}],
		  "shipping_fee": "8.00", "total": "96.00", "payment": {"method": "alipay", "amount": "96.00", "transaction_id": "T1"}, "allow_split": false}'),
	(1, '{"order_no": 12, "status": " paid ", "created_at": "2026-02-28 23:59:59.123456-0330", "currency": "EUR",
		  "lines": [{"platform_sku": "P1", "qty": "3", "unit_price": 10.5, "discount": 1}, {"sku": "BT-B", "qty": 1, "unit_price": 59}],
		  "discounts": [{"kind": "threshold", "threshold": 10, "amount": 3, "per_step": true}, {"kind": "percent", "percent": "12.5"},
						{"kind": "platform", "amount": "1.00", "allocated": true}],
		  "payment": {"amount": 5, "paid_at": ""}, "receiver": {"country": "DE"}, "allow_split": true, "tax": "1.10"}'),
	(2, '{"order_no": "X", "status": "cancelled", "created_at": "2024-02-29T00:00", "lines": [{"sku": "A", "qty": 1, "unit_price": 0}],
		  "discounts": null, "payment": null, "buyer": null, "receiver": null, "allow_split": null}');
-- Every path to a value inside a document.
CREATE FUNCTION pg_temp.paths(doc jsonb) RETURNS SETOF text[] LANGUAGE sql AS $$
	WITH RECURSIVE t(path, v) AS (
		SELECT ARRAY[k], doc->k FROM jsonb_object_keys(doc) k
		UNION ALL
		SELECT t.path || c.k, c.v
		  FROM t, LATERAL (
			SELECT k, t.v->k AS v FROM jsonb_object_keys(CASE WHEN jsonb_typeof(t.v) = 'object' THEN t.v ELSE '{}' END) k
			UNION ALL
			SELECT (i - 1)::text, e FROM jsonb_array_elements(CASE WHEN jsonb_typeof(t.v) = 'array' THEN t.v ELSE '[]' END)
				WITH ORDINALITY AS a(e, i)) c)
	SELECT path FROM t
$$;
CREATE TEMP TABLE docs (i serial, doc jsonb);
DO $$
DECLARE
	s record;
	p text[];
	doc jsonb;
	junk jsonb[] := ARRAY['null', '""', '-1', '0', '1e30', '"x"', '[]', '{}', 'true', '"1.005"', '" 12.5 "', '"12."',
						  '"2026-02-29T10:00:00Z"', '"2024-02-29T10:00:00"', '"2026-04-31T10:00:00Z"', '"2026-01-01T24:00:00Z"',
						  '"paid"', '"pending_payment"', '"cancelled"', '"coupon"', '"threshold"', '"percent"', '"true"',
						  'false', '100', '"100.00"', '101', '[{}]', '" \t "', '"١٢٣"', '5']::jsonb[];
BEGIN
	PERFORM setseed(0.77);
	FOR m IN 1..600 LOOP
		SELECT * INTO s FROM seeds ORDER BY n OFFSET (m % 3) LIMIT 1;
		doc := s.doc;
		FOR j IN 1..1 + floor(random() * 2)::int LOOP
			SELECT x INTO p FROM pg_temp.paths(doc) x
			 ORDER BY x OFFSET floor(random() * (SELECT count(*) FROM pg_temp.paths(doc)))::int LIMIT 1;
			EXIT WHEN p IS NULL;
			IF random() < 0.25 THEN
				doc := doc #- p;
			ELSE
				doc := jsonb_set(doc, p, junk[1 + floor(random() * array_length(junk, 1))::int]);
			END IF;
		END LOOP;
		INSERT INTO docs (doc) VALUES (doc);
	END LOOP;
END
$$;
INSERT INTO docs (doc) SELECT doc FROM seeds ORDER BY n;
CREATE TEMP TABLE cmp AS
SELECT d.i, s.n::text AS set_doc, pg_temp.norm(d.doc) AS one_doc
  FROM docs d
  JOIN intake_normalize_set((SELECT array_agg(doc ORDER BY i) FROM docs)) s ON s.ord = d.i;
SELECT count(*) AS documents,
	   count(one_doc) AS valid,
	   count(set_doc) AS vouched,
	   count(*) FILTER (WHERE set_doc IS NOT NULL AND set_doc IS DISTINCT FROM one_doc) AS different,
	   count(*) FILTER (WHERE set_doc IS NOT NULL AND one_doc IS NULL) AS vouched_but_invalid
  FROM cmp;
-- The seeds themselves are vouched for.
SELECT i - 600 AS seed, set_doc = one_doc AS same FROM cmp WHERE i > 600 ORDER BY i;
-- intake_doc_hashes computes doc_hash and content_hash as their SQL
-- definition does, for these documents, their normalized forms and a few
-- other shapes (escapes, non-ASCII text, arrays, nested payment keys, empty
-- containers, escaped and empty keys).
SELECT count(*) AS hashed,
	   count(*) FILTER (WHERE h.doc_hash IS DISTINCT FROM sha256(convert_to(x.n::text, 'UTF8'))
						  OR h.content_hash IS DISTINCT FROM
							 sha256(convert_to((x.n - ARRAY['status', 'paid_at', 'payment', 'paid_amount'])::text,
											   'UTF8'))) AS different
  FROM (SELECT d.doc AS n FROM docs d
		UNION ALL SELECT c.one_doc::jsonb FROM cmp c WHERE c.one_doc IS NOT NULL
		UNION ALL VALUES ('{}'::jsonb), ('[]'), ('[1, "status", {"status": null}]'),
						 ('{"a": "\u0001 \" \\ é 中", "status": 1, "x": {"paid_at": [true, -0.50, 1e3]}}'),
						 ('{"e": {}, "f": [], "g": [{}, [], [[]], {"h": {}}], "k\n\t": "\b\f\r/\u001f", "": ""}')) x,
	   intake_doc_hashes(x.n) h
 WHERE jsonb_typeof(x.n) IN ('object', 'array');

-- 2. Both paths write the same rows.  The same payloads go to two shops:
-- bt-set through sync (set-based), bt-one through intake_apply, one by one.
CREATE TEMP TABLE pl (k int, doc jsonb);
INSERT INTO pl
SELECT k, jsonb_build_object('order_no', 'BT-' || k, 'status', CASE WHEN k % 3 = 0 THEN 'pending_payment' ELSE 'paid' END,
		'created_at', '2026-03-01T10:00:00Z', 'currency', 'CNY',
		'receiver', jsonb_build_object('name', CASE WHEN k <> 4 THEN '孙八' END, 'phone', '1310013100' || (k % 3),
									   'address', '某街2号'),
		'lines', CASE WHEN k % 2 = 0
					  THEN '[{"sku": "BT-A", "qty": 1, "unit_price": "10"}, {"sku": "BT-B", "qty": 2, "unit_price": "5"}]'
					  ELSE '[{"sku": "BT-B", "qty": 2, "unit_price": "5"}, {"sku": "BT-A", "qty": 1, "unit_price": "10"},
							 {"sku": "NOPE", "platform_sku": "777", "qty": 1, "unit_price": "1.50", "discount": "0.50"}]' END::jsonb,
		'discounts', '[{"kind": "percent", "percent": "10"}, {"kind": "threshold", "threshold": "5", "amount": "1", "per_step": true}]'::jsonb,
		'payment', jsonb_build_object('method', 'wechat', 'transaction_id', 'W' || k))
  FROM generate_series(1, 8) k;
SELECT count(ingest(:s1, doc)) AS ingested, count(ingest(:s2, doc)) AS ingested FROM pl;
-- The per-payload path, for bt-one only.
SELECT intake_apply(i) AS applied, count(*) FROM (SELECT i FROM inbox i WHERE shop_id = :s2 ORDER BY paid DESC, id) x
 GROUP BY 1;
SELECT * FROM sync();
CREATE FUNCTION pg_temp.shop_rows(shop bigint) RETURNS SETOF text LANGUAGE sql AS $$
	SELECT format('order %s %s %s %s %s %s %s %s %s %s', o.order_no, o.state, o.goods_amount, o.discount_amount,
				  o.total_amount, o.paid_amount, o.paid_at IS NOT NULL, o.payment_deadline, o.receiver_phone, o.payment_method)
	  FROM orderflow.orders o WHERE o.shop_id = shop
	UNION ALL
	SELECT format('line %s %s %s %s %s %s %s', o.order_no, l.line_no, l.sku, l.platform_sku, l.qty, l.unit_price, l.discount)
	  FROM orderflow.order_lines l JOIN orderflow.orders o ON o.id = l.order_id WHERE o.shop_id = shop
	UNION ALL
	SELECT format('discount %s %s %s %s', o.order_no, d.seq, d.kind, d.amount)
	  FROM orderflow.order_discounts d JOIN orderflow.orders o ON o.id = d.order_id WHERE o.shop_id = shop
	UNION ALL
	SELECT format('payment %s %s %s %s %s', o.order_no, p.method, p.amount, p.transaction_id, p.paid_at)
	  FROM orderflow.order_payments p JOIN orderflow.orders o ON o.id = p.order_id WHERE o.shop_id = shop
	UNION ALL
	SELECT format('intake %s %s %s %s %s', o.order_no, encode(io.doc_hash, 'hex'), encode(io.content_hash, 'hex'),
				  io.computed_total, io.lines_signature)
	  FROM orderflow.intake_orders io JOIN orderflow.orders o ON o.id = io.order_id WHERE o.shop_id = shop
	UNION ALL
	SELECT format('exception %s %s %s', o.order_no, e.kind,
				  regexp_replace(e.detail::text, '"order_id": [0-9]+', '"order_id": N', 'g'))
	  FROM orderflow.exceptions e JOIN orderflow.orders o ON o.id = e.order_id WHERE o.shop_id = shop
	UNION ALL
	SELECT format('event %s %s %s %s', o.order_no, v.seq, v.to_state, regexp_replace(v.reason, '[0-9]+$', 'N'))
	  FROM orderflow.order_events v JOIN orderflow.orders o ON o.id = v.order_id WHERE o.shop_id = shop
	UNION ALL
	SELECT format('inbox %s %s %s', i.order_no, i.status, i.result)
	  FROM orderflow.inbox i WHERE i.shop_id = shop
$$;
-- bt-set took the set-based path: its orders were written by one
-- statement (the per-payload path gives each its own subtransaction).
SELECT count(DISTINCT xmin::text) AS xids, count(*) AS orders FROM orders WHERE shop_id = :s1;
SELECT count(*) AS rows_per_shop FROM pg_temp.shop_rows(:s1);
(SELECT * FROM pg_temp.shop_rows(:s1) EXCEPT ALL SELECT * FROM pg_temp.shop_rows(:s2))
UNION ALL
(SELECT * FROM pg_temp.shop_rows(:s2) EXCEPT ALL SELECT * FROM pg_temp.shop_rows(:s1));
-- The audit reason names each order's own payload.
SELECT count(*) AS events_naming_their_payload
  FROM order_events v JOIN intake_orders io ON io.order_id = v.order_id
 WHERE io.shop_id = :s1 AND v.reason = 'intake: generic payload ' || io.inbox_id;

-- 3. Suspected duplicates within one batch: the later order names the
-- earlier one (paid first, then arrival), never the other way round.
SELECT o.order_no, jsonb_path_query_array(e.detail->'similar_orders', '$[*].order_no') AS similar
  FROM exceptions e JOIN orders o ON o.id = e.order_id
 WHERE o.shop_id = :s1 AND e.kind = 'suspected_duplicate'
 ORDER BY e.id;
SELECT o.order_no, e.kind FROM exceptions e JOIN orders o ON o.id = e.order_id
 WHERE o.shop_id = :s1 ORDER BY e.id;

-- 4. A mixed batch keeps its order: an update to an existing order, a
-- payload of another platform, a rejected one and new orders, in one sync.
SELECT add_shop('bt-tb', 'taobao') AS tb \gset
SELECT ingest(:s1, doc || '{"status": "paid", "note": "now paid"}') > 0 AS update_3 FROM pl WHERE k = 3;
SELECT ingest(:s1, jsonb_set(doc, '{order_no}', '"BT-20"')) > 0 AS new_20 FROM pl WHERE k = 2;
SELECT ingest(:tb, '{"tid": 8001, "status": "WAIT_SELLER_SEND_GOODS", "created": "2026-03-01 10:00:00",
	"payment": "10.00", "receiver_name": "钱七", "receiver_mobile": "13500135000", "receiver_address": "某路1号",
	"orders": {"order": [{"oid": 1, "outer_sku_id": "BT-A", "num": 1, "price": "10.00"}]}}') > 0 AS taobao;
SELECT ingest(:s1, jsonb_set(doc, '{order_no}', '"BT-21"') || '{"total": "1.00"}') > 0 AS bad_total FROM pl WHERE k = 5;
SELECT ingest(:s1, jsonb_set(doc, '{order_no}', '"BT-22"')) > 0 AS new_22 FROM pl WHERE k = 8;
SELECT * FROM sync();
SELECT i.order_no, i.status, i.result, i.error FROM inbox i
 WHERE i.id > (SELECT max(id) FROM inbox WHERE shop_id = :s2) ORDER BY i.id;
SELECT o.order_no, e.kind, jsonb_array_length(e.detail->'similar_orders') AS similar
  FROM exceptions e JOIN orders o ON o.id = e.order_id
 WHERE o.order_no IN ('BT-20', 'BT-22') ORDER BY e.id;

-- Platform adapters on published example payloads (test/fixtures/intake,
-- sources in SOURCES.md), field by field.  Each fixture is ingested into a
-- shop of its platform and synced; the order, its lines, discounts,
-- payment and the exceptions intake opened are shown.
SET search_path = orderflow, public;
SET timezone = 'UTC';
\getenv abs_srcdir PG_ABS_SRCDIR
\set fx :abs_srcdir '/test/fixtures/intake/'

SELECT add_sku('SKU-1', 'Longjing tea 250g', 59.00) > 0 AS sku1,
	   add_sku('SKU-2', 'Tea set', 120.50) > 0 AS sku2;
SELECT add_shop('ad-web', 'generic') AS web \gset
SELECT add_shop('ad-taobao', 'taobao') AS tb \gset
SELECT add_shop('ad-shopify', 'shopify') AS sh \gset
SELECT add_shop('ad-woo', 'woocommerce') AS wc \gset

-- A view of everything intake wrote for one shop's orders.
CREATE TEMP VIEW shown AS
SELECT o.order_no, o.state, o.currency, o.goods_amount, o.discount_amount, o.shipping_fee,
	   io.tax_amount AS tax, o.total_amount, io.computed_total, o.paid_amount,
	   o.created_at, o.paid_at, o.payment_deadline IS NOT NULL AS has_deadline,
	   o.buyer_id, o.buyer_name, o.buyer_phone, o.receiver_name, o.receiver_phone,
	   o.receiver_country, o.receiver_province, o.receiver_city, o.receiver_district,
	   o.receiver_address, o.receiver_postcode, o.buyer_note, o.seller_note, o.payment_method,
	   o.allow_split, io.platform_ref, s.name AS shop
  FROM orderflow.orders o JOIN orderflow.intake_orders io ON io.order_id = o.id
  JOIN orderflow.shops s ON s.id = o.shop_id;
CREATE TEMP VIEW shown_lines AS
SELECT o.order_no, l.line_no, l.sku, l.platform_sku, l.name, l.qty, l.unit_price, l.discount, s.name AS shop
  FROM orderflow.order_lines l JOIN orderflow.orders o ON o.id = l.order_id
  JOIN orderflow.shops s ON s.id = o.shop_id;
CREATE TEMP VIEW shown_extras AS
SELECT o.order_no, 'discount' AS what, d.seq, d.kind, d.code, d.amount, d.allocated::text AS note, o.shop_id AS sid
  FROM orderflow.order_discounts d JOIN orderflow.orders o ON o.id = d.order_id
UNION ALL
SELECT o.order_no, 'payment', p.seq, p.method, p.transaction_id, p.amount, p.paid_at::text, o.shop_id
  FROM orderflow.order_payments p JOIN orderflow.orders o ON o.id = p.order_id
UNION ALL
SELECT o.order_no, 'exception', 0, e.kind, NULL, NULL,
	   regexp_replace(e.detail::text, '"order_id": [0-9]+', '"order_id": N', 'g'), o.shop_id
  FROM orderflow.exceptions e JOIN orderflow.orders o ON o.id = e.order_id;

-- generic: the SPEC example.  2 x 59.00 = 118.00, - 10.00 coupon - 20.00
-- threshold (118 >= 100) + 8.00 shipping = 96.00.
SELECT ingest(:web, pg_read_file(:'fx' || 'generic_order_paid.json')::jsonb) > 0 AS stored;
-- per_step threshold and percent: 3 x 59 - 7 + 120.50 = 290.50 goods after
-- line discounts; 15.00 per full 100.00 = 30.00; 5 % of 290.50 = 14.53
-- (rounded half up); 290.50 - 30.00 - 14.53 + 0 shipping = 245.97.
SELECT ingest(:web, pg_read_file(:'fx' || 'generic_order_pending_steps.json')::jsonb) > 0 AS stored;
SELECT * FROM sync();
SELECT order_no, error FROM inbox WHERE shop_id = :web ORDER BY id;
\x on
SELECT * FROM shown WHERE shop = 'ad-web' ORDER BY order_no;
\x off
SELECT * FROM shown_lines WHERE shop = 'ad-web' ORDER BY 1, 2;
SELECT order_no, what, seq, kind, code, amount, note FROM shown_extras WHERE sid = :web ORDER BY 1, 2, 3;

-- taobao: three published TOP trades.  Times are China time without an
-- offset; tid 1604615437261148287 exceeds 2^53 and must stay exact.
SELECT f, ingest(:tb, pg_read_file(:'fx' || f)::jsonb) > 0 AS stored
  FROM unnest(ARRAY['taobao_trade_wait_seller_send_goods_2lines.json',
					'taobao_trade_closed_by_taobao_promotion.json',
					'taobao_trade_closed_by_taobao_post_fee.json']) f;
-- TOP responses relayed by integrators also carry tid and oid as strings
-- and amounts as JSON numbers: the first trade so rewritten (tid 500001099,
-- every money field of the trade and of its lines a number) reads the same.
SELECT ingest(:tb, jsonb_set(d, '{trade_fullinfo_get_response,trade}', t
		|| jsonb_build_object('tid', '500001099')
		|| (SELECT jsonb_object_agg(k, (t->>k)::numeric)
			  FROM unnest(ARRAY['payment', 'total_fee', 'post_fee', 'discount_fee', 'adjust_fee']) k)
		|| jsonb_build_object('orders', jsonb_build_object('order',
			(SELECT jsonb_agg(o || jsonb_build_object('oid', o->>'oid')
						|| (SELECT jsonb_object_agg(k, (o->>k)::numeric)
							  FROM unnest(ARRAY['price', 'payment', 'total_fee', 'discount_fee', 'adjust_fee']) k)
							  ORDER BY n)
			   FROM jsonb_array_elements(t #> '{orders,order}') WITH ORDINALITY AS x(o, n)))))) > 0 AS stored
  FROM (SELECT d, d #> '{trade_fullinfo_get_response,trade}' AS t
		  FROM (SELECT pg_read_file(:'fx' || 'taobao_trade_wait_seller_send_goods_2lines.json')::jsonb AS d) f) f;
SELECT jsonb_typeof(t->'tid') AS tid, jsonb_typeof(t->'payment') AS payment,
	   jsonb_typeof(t #> '{orders,order,0,oid}') AS oid, jsonb_typeof(t #> '{orders,order,1,price}') AS price
  FROM (SELECT payload #> '{trade_fullinfo_get_response,trade}' AS t FROM inbox
		 WHERE shop_id = :tb AND order_no = '500001099') x;
SELECT * FROM sync();
\x on
SELECT * FROM shown WHERE shop = 'ad-taobao' ORDER BY order_no;
\x off
SELECT * FROM shown_lines WHERE shop = 'ad-taobao' ORDER BY 1, 2;
SELECT order_no, what, seq, kind, code, amount, note FROM shown_extras WHERE sid = :tb ORDER BY 1, 2, 3, 4;
-- The cancelled-on-arrival trades were created, then cancelled, each step audited.
SELECT o.order_no, e.seq, e.from_state, e.to_state,
	   regexp_replace(e.reason, '[0-9]+$', 'N') AS reason
  FROM order_events e JOIN orders o ON o.id = e.order_id
 WHERE o.shop_id = :tb ORDER BY 1, 2;

-- shopify: the REST Admin API examples.  order_no is the order id (the
-- "#1002" name is shared by two examples and kept as platform_ref); line
-- discounts come from discount_allocations; the paid example captured only
-- 50.00 of 181.09, so paid_amount is 50.00 (total_price - total_outstanding).
SELECT f, ingest(:sh, pg_read_file(:'fx' || f)::jsonb) > 0 AS stored
  FROM unnest(ARRAY['shopify_order_paid_discount_code.json',
					'shopify_order_pending.json',
					'shopify_order_450789469_partially_refunded.json']) f;
SELECT * FROM sync();
\x on
SELECT * FROM shown WHERE shop = 'ad-shopify' ORDER BY order_no;
\x off
SELECT * FROM shown_lines WHERE shop = 'ad-shopify' ORDER BY 1, 2;
SELECT order_no, what, seq, kind, code, amount, note FROM shown_extras WHERE sid = :sh ORDER BY 1, 2, 3, 4;

-- woocommerce: the REST API v3 examples.  Dates come from the *_gmt fields;
-- the &ndash; entity in a product name is decoded; the receiver phone falls
-- back to billing.phone; tax is added on top of prices.
SELECT f, ingest(:wc, pg_read_file(:'fx' || f)::jsonb) > 0 AS stored
  FROM unnest(ARRAY['woocommerce_order_727_processing.json',
					'woocommerce_order_728_pending.json']) f;
SELECT * FROM sync();
\x on
SELECT * FROM shown WHERE shop = 'ad-woo' ORDER BY order_no;
\x off
SELECT * FROM shown_lines WHERE shop = 'ad-woo' ORDER BY 1, 2;
SELECT order_no, what, seq, kind, code, amount, note FROM shown_extras WHERE sid = :wc ORDER BY 1, 2, 3, 4;

-- Every intake order's history is intact.
SELECT count(*) AS broken_chains
  FROM orders o, LATERAL verify_history(o.id) v
 WHERE o.shop_id IN (:web, :tb, :sh, :wc);

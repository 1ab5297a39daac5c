-- Fuzz: 1000 mutated copies of the intake fixtures (seeded, so the run is
-- repeatable) go through ingest and sync.  Invariants: nothing crashes,
-- no order is partial (every order has its lines, totals that match them
-- and its intake record), and every rejected payload keeps a reason.
SET search_path = orderflow, public;
SET timezone = 'UTC';
\getenv abs_srcdir PG_ABS_SRCDIR
\set fx :abs_srcdir '/test/fixtures/intake/'

SELECT add_shop('fz-web', 'generic') AS web \gset
SELECT add_shop('fz-taobao', 'taobao') AS tb \gset
SELECT add_shop('fz-shopify', 'shopify') AS sh \gset
SELECT add_shop('fz-woo', 'woocommerce') AS wc \gset

CREATE TEMP TABLE seeds (n serial, shop bigint, doc jsonb);
INSERT INTO seeds (shop, doc)
SELECT CASE WHEN f LIKE 'generic%' THEN :web WHEN f LIKE 'taobao%' THEN :tb
			WHEN f LIKE 'shopify%' THEN :sh ELSE :wc END,
	   pg_read_file(:'fx' || f)::jsonb
  FROM unnest(ARRAY['generic_order_paid.json', 'generic_order_pending_steps.json',
					'taobao_trade_wait_seller_send_goods_2lines.json',
					'taobao_trade_closed_by_taobao_promotion.json',
					'taobao_trade_closed_by_taobao_post_fee.json',
					'shopify_order_paid_discount_code.json', 'shopify_order_pending.json',
					'shopify_order_450789469_partially_refunded.json',
					'woocommerce_order_727_processing.json', 'woocommerce_order_728_pending.json']) f;

-- Every path to a scalar, object or array inside a document.
CREATE FUNCTION pg_temp.paths(doc jsonb) RETURNS SETOF text[] LANGUAGE sql AS $$
	WITH RECURSIVE t(path, v) AS (
		SELECT ARRAY[k], doc->k FROM jsonb_object_keys(doc) k
		UNION ALL
		SELECT t.path || c.k, c.v
		  FROM t, LATERAL (
			SELECT k, t.v->k AS v FROM jsonb_object_keys(CASE WHEN jsonb_typeof(t.v) = 'object' THEN t.v ELSE '{}' END) k
			UNION ALL
			SELECT (i - 1)::text, e FROM jsonb_array_elements(CASE WHEN jsonb_typeof(t.v) = 'array' THEN t.v ELSE '[]' END)
				WITH ORDINALITY AS a(e, i)) c
		 WHERE cardinality(t.path) < 6)
	SELECT path FROM t
$$;

CREATE TEMP TABLE fuzz_log (i int, ingest_error text);
DO $$
DECLARE
	i integer;
	s record;
	npaths integer;
	p text[];
	doc jsonb;
	r double precision;
	junk jsonb[] := ARRAY['null', '""', '-1', '0', '1e30', '99999999999999999999', '"x"', '[]', '{}',
						  'true', '"9999999999999.999"', '"2026-02-30T25:61:00Z"', '[{}]', '"<b>&amp;</b>"', '"١٢٣"']::jsonb[];
BEGIN
	PERFORM setseed(0.4242);
	FOR i IN 1..1000 LOOP
		SELECT * INTO s FROM seeds ORDER BY n OFFSET (i % (SELECT count(*) FROM seeds)) LIMIT 1;
		doc := s.doc;
		-- one to three mutations
		FOR k IN 1..1 + floor(random() * 3)::int LOOP
			SELECT count(*) INTO npaths FROM pg_temp.paths(doc) x;
			EXIT WHEN npaths = 0;
			SELECT x INTO p FROM pg_temp.paths(doc) x ORDER BY x OFFSET floor(random() * npaths)::int LIMIT 1;
			r := random();
			IF r < 0.3 THEN
				doc := doc #- p;
			ELSIF r < 0.85 THEN
				doc := jsonb_set(doc, p, junk[1 + floor(random() * array_length(junk, 1))::int]);
			ELSIF r < 0.95 THEN
				-- numbers as strings and strings as numbers
				doc := jsonb_set(doc, p, CASE jsonb_typeof(doc #> p)
					WHEN 'number' THEN to_jsonb((doc #>> p) || '0')
					WHEN 'string' THEN to_jsonb(length(doc #>> p))
					ELSE coalesce(to_jsonb(doc #>> p), 'null') END);
			ELSE
				doc := jsonb_set(doc, p, to_jsonb(repeat('长', 3000)));
			END IF;
		END LOOP;
		BEGIN
			PERFORM orderflow.ingest(s.shop, doc);
		EXCEPTION WHEN OTHERS THEN
			INSERT INTO fuzz_log VALUES (i, SQLSTATE || ': ' || SQLERRM);
		END;
		PERFORM orderflow.sync(10);
	END LOOP;
END
$$;

-- Nothing ingested was refused (every mutation is still a JSON object).
SELECT count(*) AS ingest_errors FROM fuzz_log;
SELECT count(*) >= 900 AS most_stored, count(*) FILTER (WHERE status = 'pending') AS left_pending
  FROM inbox WHERE shop_id IN (:web, :tb, :sh, :wc);
-- Every rejection has a reason.
SELECT count(*) AS rejections_without_reason
  FROM inbox WHERE shop_id IN (:web, :tb, :sh, :wc) AND status = 'rejected'
   AND (coalesce(error, '') = '' OR error_code IS NULL);
-- Every rejection is a payload error (OF030) naming the field, never an
-- internal error or a raw cast failure.
SELECT count(*) FILTER (WHERE status = 'rejected' AND error_code <> 'OF030') AS other_errors,
	   count(*) FILTER (WHERE status = 'rejected') > 0 AS some_rejected,
	   count(*) FILTER (WHERE status = 'done') > 0 AS some_applied
  FROM inbox WHERE shop_id IN (:web, :tb, :sh, :wc);
-- No partial order: every order has lines, an intake record, and amounts
-- that agree with its lines.
SELECT count(*) AS orders_without_lines FROM orders o
 WHERE o.shop_id IN (:web, :tb, :sh, :wc) AND NOT EXISTS (SELECT FROM order_lines l WHERE l.order_id = o.id);
SELECT count(*) AS orders_without_intake FROM orders o
 WHERE o.shop_id IN (:web, :tb, :sh, :wc) AND NOT EXISTS (SELECT FROM intake_orders i WHERE i.order_id = o.id);
SELECT count(*) AS goods_mismatch FROM orders o
 WHERE o.shop_id IN (:web, :tb, :sh, :wc)
   AND o.goods_amount <> (SELECT sum(l.unit_price * l.qty) FROM order_lines l WHERE l.order_id = o.id);
SELECT count(*) AS computed_total_mismatch FROM orders o JOIN intake_orders i ON i.order_id = o.id
 WHERE o.shop_id IN (:web, :tb, :sh, :wc)
   AND i.computed_total <> o.goods_amount - o.discount_amount + o.shipping_fee + i.tax_amount;
-- Every state change is legal and audited once: the chains verify.
SELECT count(*) AS broken_chains FROM orders o, LATERAL verify_history(o.id) v
 WHERE o.shop_id IN (:web, :tb, :sh, :wc);
SELECT count(*) AS orders_without_history FROM orders o
 WHERE o.shop_id IN (:web, :tb, :sh, :wc) AND o.history_seq < 1;

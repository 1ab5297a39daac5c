#!/bin/sh
# Intake benchmark: orderflow.sync() of N generic payloads against a bare
# INSERT ... SELECT from jsonb_to_record into the same tables (orders,
# order_lines and order_discounts, with the same triggers and foreign keys;
# the payloads carry no payment, so sync writes no order_payments either),
# in the same run and database.
#
#   bench/intake/run.sh [N] [dbname]        (default 100000, orderflow_bench)
#
# Uses psql from PATH and the usual PG* environment variables.  The database
# is dropped and recreated.  Prints the time of both; orders/second = N / time.
set -eu
N=${1:-100000}
DB=${2:-orderflow_bench}
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -v n="$N" <<'SQL'
CREATE EXTENSION orderflow;
SELECT orderflow.add_sku('BN-A', 'A', 59.00), orderflow.add_sku('BN-B', 'B', 12.50);
SELECT orderflow.add_shop('bench-sync', 'generic') AS sync_shop \gset
SELECT orderflow.add_shop('bench-bare', 'generic') AS bare_shop \gset
-- N payloads in the generic format, two lines and a coupon each.
CREATE TABLE payloads AS
SELECT i, jsonb_build_object(
	'order_no', 'BN-' || i, 'status', CASE WHEN i % 3 = 0 THEN 'pending_payment' ELSE 'paid' END,
	'created_at', '2026-11-26T10:00:00+08:00', 'currency', 'CNY',
	'buyer', jsonb_build_object('id', 'u' || i),
	'receiver', jsonb_build_object('name', '张三', 'phone', (13800000000 + i)::text, 'province', '浙江省',
								   'city', '杭州市', 'district', '西湖区', 'address', '文三路' || i || '号',
								   'postcode', '310000'),
	'lines', jsonb_build_array(
		jsonb_build_object('sku', 'BN-A', 'qty', 2, 'unit_price', '59.00'),
		jsonb_build_object('sku', 'BN-B', 'qty', 1 + i % 4, 'unit_price', '12.50')),
	'discounts', jsonb_build_array(jsonb_build_object('kind', 'coupon', 'code', 'C10', 'amount', '10.00')),
	'shipping_fee', '8.00',
	'total', (118 + 12.5 * (1 + i % 4) - 10 + 8)::numeric(14,2)::text) AS doc
  FROM generate_series(1, :n) i;
SELECT count(orderflow.ingest(:sync_shop, doc)) AS ingested FROM payloads;
-- A shop's history: N earlier orders, so that tables and planner statistics
-- look like a running system rather than an empty one (with empty tables
-- both sides would run on plans made for empty tables).
SELECT orderflow.add_shop('bench-history', 'generic') AS hist_shop \gset
INSERT INTO orderflow.orders (shop_id, order_no, state, receiver_phone, created_at)
SELECT :hist_shop, 'H-' || i, 'paid', (13800000000 + i)::text, '2026-01-01'
  FROM generate_series(1, :n) i;
INSERT INTO orderflow.order_lines (order_id, line_no, sku, qty, unit_price)
SELECT o.id, 1, 'BN-A', 1, 59.00 FROM orderflow.orders o WHERE o.shop_id = :hist_shop;
CHECKPOINT;
VACUUM ANALYZE;

\timing on
\echo == sync
SELECT * FROM orderflow.sync(:n);
\echo == bare insert
BEGIN;
INSERT INTO orderflow.orders (shop_id, order_no, state, currency, total_amount, shipping_fee,
							  receiver_name, receiver_phone, receiver_province, receiver_city,
							  receiver_district, receiver_address, receiver_postcode, buyer_id, created_at)
SELECT :bare_shop, r.order_no, r.status::orderflow.order_state, r.currency, r.total, r.shipping_fee,
	   rc.name, rc.phone, rc.province, rc.city, rc.district, rc.address, rc.postcode, p.doc #>> '{buyer,id}', r.created_at
  FROM payloads p,
	   jsonb_to_record(p.doc) AS r(order_no text, status text, currency text, total numeric,
								   shipping_fee numeric, created_at timestamptz),
	   jsonb_to_record(p.doc->'receiver') AS rc(name text, phone text, province text, city text,
												district text, address text, postcode text);
INSERT INTO orderflow.order_lines (order_id, line_no, sku, qty, unit_price)
SELECT o.id, l.ord, l.sku, l.qty, l.unit_price
  FROM payloads p
  JOIN orderflow.orders o ON o.shop_id = :bare_shop AND o.order_no = p.doc->>'order_no',
	   ROWS FROM (jsonb_to_recordset(p.doc->'lines') AS (sku text, qty int, unit_price numeric))
		   WITH ORDINALITY AS l(sku, qty, unit_price, ord);
INSERT INTO orderflow.order_discounts (order_id, seq, kind, code, amount)
SELECT o.id, d.ord, d.kind, d.code, d.amount
  FROM payloads p
  JOIN orderflow.orders o ON o.shop_id = :bare_shop AND o.order_no = p.doc->>'order_no',
	   ROWS FROM (jsonb_to_recordset(p.doc->'discounts') AS (kind text, code text, amount numeric))
		   WITH ORDINALITY AS d(kind, code, amount, ord);
COMMIT;
\timing off
SQL

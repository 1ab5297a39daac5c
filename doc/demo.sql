-- orderflow demo: a shop, two warehouses, stock, a flash sale and orders
-- walked through the whole flow; then the audit history, verified.
\pset footer off
SET search_path = orderflow, public;
SET application_name = 'orderflow-demo';
\echo
\echo '== Setup: a web shop and a Tmall store, two warehouses, three SKUs'
SELECT add_shop('demo-web', 'generic', '{"payment_timeout": "30 minutes"}') AS web_shop,
       add_shop('demo-tmall', 'taobao', '{"allow_split": true}') AS tmall_shop,
       add_warehouse('HZ', 'Hangzhou DC', 10) AS hz, add_warehouse('NB', 'Ningbo DC', 20) AS nb;
SELECT add_bin('HZ', 'A-01-01') > 0 AS bins_ok, add_bin('HZ', 'A-01-02') > 0, add_bin('NB', 'B-02-01') > 0;
SELECT add_sku('TEA-250', 'West Lake Longjing 250 g', 59.00, '{"weight_g": 260}') > 0 AS skus_ok,
       add_sku('CUP-CELADON', 'Celadon tea cup', 35.00, '{"fragile": true}') > 0,
       add_sku('POT-ZISHA', 'Zisha tea pot', 268.00, '{"fragile": true, "valuable": true}') > 0;

\echo
\echo '== Stock arrives, by bin and lot (first expiry, first out)'
SELECT receive_stock('TEA-250', 'HZ', 'A-01-01', 40, 'LJ-2026-03', '2026-03-20', '2027-03-19') > 0 AS received,
       receive_stock('TEA-250', 'HZ', 'A-01-02', 40, 'LJ-2026-05', '2026-05-10', '2027-05-09') > 0,
       receive_stock('CUP-CELADON', 'HZ', 'A-01-01', 12) > 0,
       receive_stock('POT-ZISHA', 'NB', 'B-02-01', 2) > 0;
SELECT s.code AS sku, w.code AS warehouse, available(s.code, w.code) AS available
  FROM skus s CROSS JOIN warehouses w WHERE s.code IN ('TEA-250', 'CUP-CELADON', 'POT-ZISHA') ORDER BY 1, 2;

\echo
\echo '== Flash sale: 100 checkouts race for 12 celadon cups'
SELECT count(*) FILTER (WHERE id IS NOT NULL) AS reserved, count(*) FILTER (WHERE id IS NULL) AS sold_out
  FROM (SELECT reserve('CUP-CELADON', 'HZ', 1, 'cart-' || g, '15 minutes') AS id
          FROM generate_series(1, 100) g) r;
SELECT available('CUP-CELADON', 'HZ') AS cups_left;
\echo 'Carts 1-5 give up; their holds come back:'
SELECT count(*) FILTER (WHERE release(r.id)) AS released
  FROM reservations r WHERE r.ref IN ('cart-1', 'cart-2', 'cart-3', 'cart-4', 'cart-5');
SELECT available('CUP-CELADON', 'HZ') AS cups_left;

\echo
\echo '== Orders arrive: two from the web shop (generic JSON), one from Tmall (a TOP trade), one malformed'
SELECT reserve('TEA-250', 'HZ', 2, 'WEB-1001', '15 minutes', find_shop('demo-web')) IS NOT NULL AS checkout_hold_for_web_1001;
SELECT ingest(find_shop('demo-web'), '{
  "order_no": "WEB-1001", "status": "paid",
  "created_at": "2026-11-26T10:00:00+08:00", "paid_at": "2026-11-26T10:01:00+08:00",
  "buyer": {"id": "u123", "name": "张三", "phone": "13800138000"},
  "receiver": {"name": "张三", "phone": "13800138000", "country": "CN", "province": "浙江省",
               "city": "杭州市", "district": "西湖区", "address": "文三路100号", "postcode": "310000"},
  "note": "周末送货", "currency": "CNY",
  "lines": [{"sku": "TEA-250", "qty": 2, "unit_price": "59.00"},
            {"sku": "CUP-CELADON", "qty": 1, "unit_price": "35.00"}],
  "discounts": [{"kind": "coupon", "code": "C10", "amount": "10.00"},
                {"kind": "threshold", "threshold": "100.00", "amount": "20.00"}],
  "shipping_fee": "8.00", "total": "131.00",
  "payment": {"method": "alipay", "amount": "131.00", "transaction_id": "2026112622001"}
}') > 0 AS stored;
SELECT ingest(find_shop('demo-web'), '{
  "order_no": "WEB-1002", "status": "pending_payment", "created_at": "2026-11-26T10:05:00+08:00",
  "receiver": {"name": "王五", "phone": "13700137000", "province": "浙江省", "city": "杭州市",
               "district": "上城区", "address": "解放路8号"},
  "lines": [{"sku": "TEA-250", "qty": 1, "unit_price": "59.00"}], "total": "59.00"
}') > 0 AS stored;
SELECT ingest(find_shop('demo-tmall'), '{"trade_fullinfo_get_response": {"trade": {
  "tid": 3300123456789, "status": "WAIT_SELLER_SEND_GOODS",
  "created": "2026-11-26 10:10:00", "pay_time": "2026-11-26 10:11:00",
  "buyer_nick": "tb_lisi", "receiver_name": "李四", "receiver_mobile": "13900139000",
  "receiver_state": "浙江省", "receiver_city": "宁波市", "receiver_district": "鄞州区",
  "receiver_address": "中山东路1号", "receiver_zip": "315000",
  "post_fee": "0.00", "payment": "863.00", "alipay_no": "2026112622002",
  "orders": {"order": [
    {"oid": 1, "outer_sku_id": "POT-ZISHA", "title": "Zisha tea pot", "num": 3, "price": "268.00"},
    {"oid": 2, "outer_sku_id": "TEA-250", "title": "Longjing 250 g", "num": 1, "price": "59.00"}]}
}}}') > 0 AS stored;
SELECT ingest(find_shop('demo-web'), '{"order_no": "WEB-1003", "status": "paid", "lines": []}') > 0 AS stored;
\echo 'sync normalizes the inbox (paid first); the malformed payload keeps its reason:'
SELECT * FROM sync();
SELECT payload->>'order_no' AS order_no, status, error FROM inbox WHERE status <> 'done' ORDER BY id;
SELECT o.order_no, o.state, o.goods_amount, o.discount_amount, o.shipping_fee, o.total_amount, o.paid_amount
  FROM orders o WHERE o.order_no IN ('WEB-1001', 'WEB-1002', '3300123456789') ORDER BY o.order_no;

\echo
\echo '== Review passes; allocation claims the checkout hold, and splits the Tmall order (only 2 pots in stock)'
SELECT transition(id, 'approved', 'review passed') AS was FROM orders WHERE order_no IN ('WEB-1001', '3300123456789') ORDER BY order_no;
SELECT 'WEB-1001' AS order_no, a.* FROM allocate(find_order(find_shop('demo-web'), 'WEB-1001')) a;
SELECT '3300123456789' AS order_no, a.* FROM allocate(find_order(find_shop('demo-tmall'), '3300123456789'), 'split') a;
SELECT r.id, s.code AS sku, w.code AS warehouse, b.code AS bin, l.code AS lot, r.qty
  FROM reservations r JOIN orders o ON o.id = r.order_id JOIN skus s ON s.id = r.sku_id
  JOIN warehouses w ON w.id = r.warehouse_id LEFT JOIN bins b ON b.id = r.bin_id LEFT JOIN lots l ON l.id = r.lot_id
 WHERE r.status = 'held' AND o.order_no IN ('WEB-1001', '3300123456789') ORDER BY r.id;

\echo
\echo '== A pot arrives: the back-order is filled from the receipt itself'
SELECT receive_stock('POT-ZISHA', 'NB', 'B-02-01', 1) > 0 AS received;
SELECT * FROM line_needs(find_order(find_shop('demo-tmall'), '3300123456789'));

\echo
\echo '== WEB-1001 goes through the warehouse to the customer'
SELECT transition(o.id, s.to_state, s.reason)
  FROM orders o,
       (VALUES (1, 'picking'::order_state, 'pick list PL-1'), (2, 'picked', 'all lines scanned'),
               (3, 'packed', 'box S, 1.2 kg'), (4, 'shipped', 'SF Express SF1234567890'),
               (5, 'delivered', 'signed by receiver'), (6, 'completed', 'auto-complete')) AS s(n, to_state, reason)
 WHERE o.order_no = 'WEB-1001'
 ORDER BY s.n;

\echo
\echo '== Illegal moves are refused, with the allowed next states'
\set ON_ERROR_STOP 0
UPDATE orders SET state = 'shipped' WHERE order_no = 'WEB-1002';
\set ON_ERROR_STOP 1

\echo
\echo '== WEB-1002 is never paid: at its deadline the sweep cancels it; the Tmall buyer cancels and the stock comes back'
UPDATE orders SET payment_deadline = now() - interval '1 minute' WHERE order_no = 'WEB-1002';
SELECT expire_unpaid() AS cancelled_unpaid;
SELECT available('POT-ZISHA', 'NB') AS pots_before_cancel;
SELECT transition(id, 'cancelled', 'buyer cancelled') FROM orders WHERE order_no = '3300123456789';
SELECT available('POT-ZISHA', 'NB') AS pots_after_cancel;
\echo 'The Tmall buyer had paid: the refund due is recorded, and customer service settles it once paid back:'
SELECT a.kind, a.amount, a.reason FROM order_adjustments a JOIN orders o ON o.id = a.order_id
 WHERE o.order_no = '3300123456789';
SELECT settle_adjustment(a.id) AS settled FROM order_adjustments a JOIN orders o ON o.id = a.order_id
 WHERE o.order_no = '3300123456789';

\echo
\echo '== Where every order ended'
SELECT order_no, state, label(state, 'zh') AS 状态, history_seq AS events FROM orders
 WHERE order_no IN ('WEB-1001', '3300123456789', 'WEB-1002') ORDER BY order_no;

\echo
\echo '== The audit history of WEB-1001 (append-only, hash-chained)'
SELECT e.seq, e.from_state, e.to_state, e.session_role, e.application_name, e.reason,
       encode(substr(e.hash, 1, 6), 'hex') AS hash_prefix
  FROM order_events e JOIN orders o ON o.id = e.order_id
 WHERE o.order_no = 'WEB-1001' ORDER BY e.seq;
\echo 'verify_history on every order (no rows = intact):'
SELECT o.order_no, v.* FROM orders o, verify_history(o.id) v;
SELECT count(*) AS orders_verified FROM orders o WHERE NOT EXISTS (SELECT FROM verify_history(o.id));
\echo 'Stock counters against the ledger (no rows = healthy):'
SELECT * FROM check_stock();
\echo 'Notifications queued in the outbox for the applications (NOTIFY orderflow_outbox):'
SELECT topic, count(*) FROM outbox GROUP BY topic ORDER BY topic;

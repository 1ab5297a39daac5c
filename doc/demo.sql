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
\echo '== Orders: WEB-1001 (paid at checkout, holds placed under its number), TM-2001 (split allowed), WEB-1002 (never paid)'
SELECT reserve('TEA-250', 'HZ', 2, 'WEB-1001', '15 minutes') IS NOT NULL AS checkout_hold;
INSERT INTO orders (shop_id, order_no, state, paid_at, goods_amount, total_amount, paid_amount,
                    receiver_name, receiver_phone, receiver_province, receiver_city, receiver_district, receiver_address)
VALUES (find_shop('demo-web'), 'WEB-1001', 'paid', now(), 153.00, 153.00, 153.00,
        '张三', '13800138000', '浙江省', '杭州市', '西湖区', '文三路100号'),
       (find_shop('demo-tmall'), 'TM-2001', 'paid', now(), 594.00, 594.00, 594.00,
        '李四', '13900139000', '浙江省', '宁波市', '鄞州区', '中山东路1号'),
       (find_shop('demo-web'), 'WEB-1002', 'pending_payment', NULL, 59.00, 59.00, 0,
        '王五', '13700137000', '浙江省', '杭州市', '上城区', '解放路8号');
INSERT INTO order_lines (order_id, sku, qty, unit_price)
SELECT o.id, l.sku, l.qty, s.unit_price
  FROM (VALUES ('WEB-1001', 'TEA-250', 2), ('WEB-1001', 'CUP-CELADON', 1),
               ('TM-2001', 'POT-ZISHA', 3), ('TM-2001', 'TEA-250', 1),
               ('WEB-1002', 'TEA-250', 1)) AS l(no, sku, qty)
  JOIN orders o ON o.order_no = l.no JOIN skus s ON s.code = l.sku;

\echo
\echo '== Review passes; allocation claims the checkout hold, and splits TM-2001 (only 2 pots in stock)'
SELECT transition(id, 'approved', 'review passed') AS was FROM orders WHERE order_no IN ('WEB-1001', 'TM-2001') ORDER BY order_no;
SELECT 'WEB-1001' AS order_no, a.* FROM allocate(find_order(find_shop('demo-web'), 'WEB-1001')) a;
SELECT 'TM-2001' AS order_no, a.* FROM allocate(find_order(find_shop('demo-tmall'), 'TM-2001'), 'split') a;
SELECT r.id, s.code AS sku, w.code AS warehouse, b.code AS bin, l.code AS lot, r.qty
  FROM reservations r JOIN orders o ON o.id = r.order_id JOIN skus s ON s.id = r.sku_id
  JOIN warehouses w ON w.id = r.warehouse_id LEFT JOIN bins b ON b.id = r.bin_id LEFT JOIN lots l ON l.id = r.lot_id
 WHERE r.status = 'held' AND o.order_no IN ('WEB-1001', 'TM-2001') ORDER BY r.id;

\echo
\echo '== A pot arrives: the back-order is filled from the receipt itself'
SELECT receive_stock('POT-ZISHA', 'NB', 'B-02-01', 1) > 0 AS received;
SELECT * FROM line_needs(find_order(find_shop('demo-tmall'), 'TM-2001'));

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
\echo '== WEB-1002 is never paid and is cancelled; TM-2001 is cancelled by the buyer and gives its stock back'
SELECT transition(id, 'cancelled', 'payment deadline passed') FROM orders WHERE order_no = 'WEB-1002';
SELECT available('POT-ZISHA', 'NB') AS pots_before_cancel;
SELECT transition(id, 'cancelled', 'buyer cancelled') FROM orders WHERE order_no = 'TM-2001';
SELECT available('POT-ZISHA', 'NB') AS pots_after_cancel;

\echo
\echo '== Where every order ended'
SELECT order_no, state, label(state, 'zh') AS 状态, history_seq AS events FROM orders
 WHERE order_no IN ('WEB-1001', 'TM-2001', 'WEB-1002') ORDER BY order_no;

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

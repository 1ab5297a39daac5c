-- Setup functions: shops, warehouses, bins and SKUs, idempotent on their
-- natural keys, refusing bad arguments with a specific SQLSTATE.
SET search_path = orderflow, public;
\set SHOW_CONTEXT never
\set VERBOSITY default

-- Shops: calling again with the same name returns the same id and applies
-- the settings given; another platform for the same name is a conflict.
SELECT add_shop('setup-web', 'generic') = add_shop('setup-web', 'generic', '{"payment_timeout": "15 minutes", "allow_split": true}') AS same_id;
SELECT name, platform, owner_role, payment_timeout, allow_split, auto_complete_after, currency
  FROM shops WHERE name = 'setup-web';
SELECT add_shop('setup-web', 'taobao');
SELECT add_shop('setup-tmall', 'taobao', '{"currency": "CNY", "auto_complete_after": "10 days", "owner_role": "orderflow_operator"}') > 0 AS created;
SELECT add_shop('', 'generic');
SELECT add_shop('setup-x', 'ebay');
SELECT add_shop('setup-x', NULL);
SELECT add_shop('setup-x', 'generic', '[]');
SELECT add_shop('setup-x', 'generic', '{"payment_timeuot": "1 hour"}');
SELECT add_shop('setup-x', 'generic', '{"payment_timeout": "-5 minutes"}');
SELECT add_shop('setup-x', 'generic', '{"payment_timeout": "soon"}');
SELECT add_shop('setup-x', 'generic', '{"allow_split": "yes"}');
SELECT add_shop('setup-x', 'generic', '{"currency": "yuan"}');
SELECT add_shop('setup-x', 'generic', '{"owner_role": "no_such_role_xyz"}');
SELECT count(*) AS no_partial_shop FROM shops WHERE name = 'setup-x';

-- Warehouses: same code, same id; name and priority are updated.
SELECT add_warehouse('SW1', 'Hangzhou') = add_warehouse('SW1', 'Hangzhou North', 10) AS same_id;
SELECT code, name, priority FROM warehouses WHERE code = 'SW1';
SELECT add_warehouse('SW 2', 'bad code');
SELECT add_warehouse(NULL, 'no code');
SELECT add_warehouse('SW2', '');
SELECT add_warehouse('SW2', 'Ningbo', -1);
SELECT count(*) FROM warehouses WHERE code LIKE 'SW2%';

-- Bins belong to a warehouse; adding one twice is a no-op.
SELECT add_bin('SW1', 'A-01-01') = add_bin('SW1', 'A-01-01') AS same_id;
SELECT add_bin('NOPE', 'A-01-01');
SELECT add_bin('SW1', '');
SELECT count(*) FROM bins b JOIN warehouses w ON w.id = b.warehouse_id WHERE w.code = 'SW1';

-- SKUs: same code, same id; name, price and attributes are updated.
SELECT add_sku('SET-TEA', 'Longjing tea 250g', 59.00) = add_sku('SET-TEA', 'Longjing tea 250 g', 61.50, '{"fragile": false, "weight_g": 260}') AS same_id;
SELECT code, name, unit_price, attrs FROM skus WHERE code = 'SET-TEA';
SELECT add_sku('SET-BAD', 'negative', -1);
SELECT add_sku('SET-BAD', 'fractional cent', 1.005);
SELECT add_sku('SET-BAD', 'not a number', 'NaN');
\echo :LAST_ERROR_SQLSTATE
SELECT add_sku('SET-BAD', 'no price', NULL);
SELECT add_sku('SET-BAD', 'attrs', 1, '"fragile"');
SELECT add_sku('-BAD', 'leading dash', 1);
SELECT count(*) FROM skus WHERE code LIKE '%BAD';

-- find_order maps a shop's platform order number to our id.
INSERT INTO orders (id, shop_id, order_no) SELECT 9201, id, 'WEB-1' FROM shops WHERE name = 'setup-web';
SELECT find_order((SELECT id FROM shops WHERE name = 'setup-web'), 'WEB-1');
SELECT find_order((SELECT id FROM shops WHERE name = 'setup-web'), 'WEB-404') IS NULL AS missing;

-- Applications insert orders and lines directly; only shop_id and order_no
-- are required; lines are numbered when line_no is omitted.
INSERT INTO orders (shop_id, order_no) SELECT id, 'WEB-2' FROM shops WHERE name = 'setup-web'
RETURNING state, total_amount, currency, receiver_country, history_seq;
INSERT INTO order_lines (order_id, sku, qty, unit_price) VALUES (9201, 'SET-TEA', 2, 61.50), (9201, 'SET-TEA', 1, 61.50);
SELECT line_no, sku, qty FROM order_lines WHERE order_id = 9201 ORDER BY line_no;
-- The same platform order number twice in one shop is refused.
\set VERBOSITY sqlstate
INSERT INTO orders (shop_id, order_no) SELECT id, 'WEB-1' FROM shops WHERE name = 'setup-web';
\set VERBOSITY default
-- Lines are bad input when the SKU is unknown or the quantity not positive.
INSERT INTO order_lines (order_id, sku, qty) VALUES (9201, 'NO-SUCH-SKU', 1);
INSERT INTO order_lines (order_id, sku, qty) VALUES (9201, 'SET-TEA', 0);
INSERT INTO order_lines (order_id, sku, qty, unit_price) VALUES (9201, 'SET-TEA', 1, 'NaN');
\echo :LAST_ERROR_SQLSTATE
-- Once the order is approved its lines are frozen.
SELECT transition(9201, 'paid');
SELECT transition(9201, 'approved');
INSERT INTO order_lines (order_id, sku, qty) VALUES (9201, 'SET-TEA', 1);
UPDATE order_lines SET qty = 5 WHERE order_id = 9201 AND line_no = 1;
DELETE FROM order_lines WHERE order_id = 9201;
-- Nor can a line leave it for another order.
UPDATE order_lines SET order_id = 9299, line_no = 99 WHERE order_id = 9201 AND line_no = 1;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*), sum(qty) FROM order_lines WHERE order_id = 9201;

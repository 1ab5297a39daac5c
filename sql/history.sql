-- The audit history: one row per accepted state change, written in the
-- same transaction, append-only and hash-chained per order.
SET search_path = orderflow, public;
\set SHOW_CONTEXT never
SELECT set_config('my.shop', add_shop('history-shop', 'generic')::text, false) IS NOT NULL AS shop_created;

-- Creating an order and moving it writes one event per change, with who,
-- when, from which application and why.
SET application_name = 'history-test';
INSERT INTO orders (id, shop_id, order_no) VALUES (9101, current_setting('my.shop')::bigint, 'H-1');
SELECT transition(9101, 'paid', 'alipay callback');
BEGIN;
SET LOCAL orderflow.reason = 'address verified';
UPDATE orders SET state = 'approved' WHERE id = 9101;
COMMIT;
UPDATE orders SET state = 'on_hold' WHERE id = 9101;
-- A rolled-back change leaves no event.
BEGIN;
SELECT transition(9101, 'cancelled', 'customer asked');
ROLLBACK;
-- Updating other columns is not a transition and writes no event.
UPDATE orders SET seller_note = 'call first' WHERE id = 9101;
SELECT seq, from_state, to_state, session_role = session_user AS by_session_user,
       acting_role = current_user AS by_current_user, application_name, reason,
       at <= now() AS at_ok,
       (prev_hash IS NULL) = (seq = 1) AS chained, length(hash) AS hash_bytes
  FROM order_events WHERE order_id = 9101 ORDER BY seq;
SELECT state, history_seq, history_hash = (SELECT hash FROM order_events WHERE order_id = 9101 AND seq = 4) AS head_ok
  FROM orders WHERE id = 9101;
RESET application_name;

-- Every event of a transaction carries its transaction id; the time of the
-- event is the order's state_changed_at.
BEGIN;
SELECT transition(9101, 'approved');
SELECT e.xid = pg_current_xact_id() AS same_xact, e.at = o.state_changed_at AS stamped
  FROM order_events e JOIN orders o ON o.id = e.order_id
 WHERE e.order_id = 9101 AND e.seq = o.history_seq;
COMMIT;

-- An INSERT that ON CONFLICT skips writes no event: events are written
-- once the row change has really happened.
SELECT count(*) AS events_before FROM order_events \gset
INSERT INTO orders (shop_id, order_no) VALUES (current_setting('my.shop')::bigint, 'H-1')
ON CONFLICT (shop_id, order_no) DO NOTHING;
SELECT count(*) - :events_before AS new_events FROM order_events;
SELECT count(*) AS orphan_events FROM order_events e WHERE NOT EXISTS (SELECT FROM orders o WHERE o.id = e.order_id);

-- An intact chain verifies: no rows.
SELECT * FROM verify_history(9101);
SELECT * FROM verify_history(-5);

-- The history is append-only, even for its owner.
UPDATE order_events SET reason = 'rewritten' WHERE order_id = 9101;
DELETE FROM order_events WHERE order_id = 9101;
TRUNCATE order_events;
SELECT count(*) FROM order_events WHERE order_id = 9101;

-- Tampering behind the trigger's back (a superuser disabling it) is
-- detected.  Each case is undone by rolling back.
INSERT INTO orders (id, shop_id, order_no) VALUES (9102, current_setting('my.shop')::bigint, 'H-2');
SELECT transition(9102, 'paid');
SELECT transition(9102, 'approved');
SELECT transition(9102, 'allocated');
ALTER TABLE order_events DISABLE TRIGGER history_immutable;
-- a changed reason
BEGIN;
UPDATE order_events SET reason = 'forged' WHERE order_id = 9102 AND seq = 2;
SELECT * FROM verify_history(9102);
ROLLBACK;
-- a changed target state
BEGIN;
UPDATE order_events SET to_state = 'cancelled' WHERE order_id = 9102 AND seq = 3;
SELECT * FROM verify_history(9102);
ROLLBACK;
-- a removed event in the middle
BEGIN;
DELETE FROM order_events WHERE order_id = 9102 AND seq = 2;
SELECT * FROM verify_history(9102);
ROLLBACK;
-- the newest event removed
BEGIN;
DELETE FROM order_events WHERE order_id = 9102 AND seq = 4;
SELECT * FROM verify_history(9102);
ROLLBACK;
-- a replaced hash on the newest event
BEGIN;
UPDATE order_events SET hash = sha256(hash) WHERE order_id = 9102 AND seq = 4;
SELECT * FROM verify_history(9102);
ROLLBACK;
-- two events swapped in order
BEGIN;
UPDATE order_events SET seq = -seq WHERE order_id = 9102 AND seq IN (2, 3);
UPDATE order_events SET seq = 5 WHERE order_id = 9102 AND seq = -2;
UPDATE order_events SET seq = 2 WHERE order_id = 9102 AND seq = -3;
UPDATE order_events SET seq = 3 WHERE order_id = 9102 AND seq = 5;
SELECT * FROM verify_history(9102);
ROLLBACK;
ALTER TABLE order_events ENABLE TRIGGER history_immutable;
SELECT * FROM verify_history(9102);

-- The recipe of doc/history.md recomputes every hash without the C code.
SELECT count(*) AS events,
       count(*) FILTER (WHERE sha256(coalesce(e.prev_hash, '\x'::bytea)
                  || int8send(e.order_id) || int4send(e.seq)
                  || coalesce(orderflow.order_state_send(e.from_state), '\xff'::bytea)
                  || orderflow.order_state_send(e.to_state)
                  || int8send((extract(epoch FROM e.at - '2000-01-01 00:00:00+00'::timestamptz)
                               * 1000000)::bigint)
                  || int8send(e.xid::text::bigint)
                  || (SELECT string_agg(CASE WHEN f IS NULL THEN '\xffffffff'::bytea
                                             ELSE int4send(octet_length(f)) || convert_to(f, 'UTF8') END,
                                        ''::bytea ORDER BY n)
                        FROM unnest(ARRAY[e.session_role::text, e.acting_role::text,
                                          e.application_name, e.reason]) WITH ORDINALITY AS t(f, n))
                 ) = e.hash) AS recomputed
  FROM orderflow.order_events e WHERE e.order_id IN (9101, 9102);

-- Every order in this database verifies.
SELECT count(*) FILTER (WHERE EXISTS (SELECT FROM verify_history(o.id))) AS broken
  FROM orders o;

-- The transition graph and the trigger that enforces it.
SET search_path = orderflow, public;
\set SHOW_CONTEXT never

-- The default graph, as a DBA reads it.
SELECT from_state, array_agg(to_state ORDER BY to_state) AS to_states
  FROM transitions GROUP BY from_state ORDER BY from_state;
SELECT state FROM initial_states ORDER BY state;
SELECT next_states('packed'), next_states('completed'), next_states('cancelled');

-- All 14 x 14 pairs.  For each source state an order is walked there along
-- legal transitions, then every target is attempted through the trigger in
-- a subtransaction.  The trigger must accept exactly the pairs in
-- orderflow.transitions, agree with can_transition(), and refuse the
-- others with OF001.
SELECT set_config('my.shop', add_shop('transitions-shop', 'generic')::text, false) IS NOT NULL AS shop_created;
CREATE TEMP TABLE matrix (from_state order_state, to_state order_state,
                          in_table boolean, accepted boolean, sqlstate text);
DO $$
DECLARE
	src order_state;
	dst order_state;
	path order_state[];
	oid bigint;
	n int := 0;
	st text;
	ok boolean;
BEGIN
	FOR src IN SELECT state FROM states() LOOP
		FOR dst IN SELECT state FROM states() LOOP
			-- shortest legal path from an initial state to src
			WITH RECURSIVE walk(state, path) AS (
				SELECT state, ARRAY[state] FROM initial_states
				UNION ALL
				SELECT t.to_state, w.path || t.to_state
				  FROM walk w JOIN transitions t ON t.from_state = w.state
				 WHERE NOT t.to_state = ANY (w.path)
			)
			SELECT w.path INTO path FROM walk w WHERE w.state = src
			 ORDER BY cardinality(w.path) LIMIT 1;
			n := n + 1;
			INSERT INTO orders (shop_id, order_no, state)
			VALUES (current_setting('my.shop')::bigint, 'M-' || n, path[1])
			RETURNING id INTO oid;
			FOR i IN 2 .. cardinality(path) LOOP
				UPDATE orders SET state = path[i] WHERE id = oid;
			END LOOP;
			BEGIN
				UPDATE orders SET state = dst WHERE id = oid;
				ok := true;
				st := NULL;
			EXCEPTION WHEN OTHERS THEN
				ok := false;
				st := SQLSTATE;
			END;
			INSERT INTO matrix VALUES (src, dst,
				EXISTS (SELECT FROM transitions t WHERE t.from_state = src AND t.to_state = dst),
				ok, st);
		END LOOP;
	END LOOP;
END
$$;

-- Mismatches between the table, can_transition() and the trigger: none.
SELECT from_state, to_state, in_table, accepted, sqlstate
  FROM matrix
 WHERE from_state <> to_state
   AND (in_table <> accepted
        OR in_table <> can_transition(from_state, to_state)
        OR (NOT accepted AND sqlstate <> 'OF001'));
SELECT count(*) AS pairs, count(*) FILTER (WHERE accepted) AS accepted,
       count(*) FILTER (WHERE sqlstate = 'OF001') AS refused_of001,
       count(*) FILTER (WHERE from_state = to_state) AS same_state_noop
  FROM matrix;

-- The matrix itself: rows are sources, columns targets (x = allowed,
-- . = same state, which is not a transition and changes nothing).
SELECT rpad(from_state::text, 18) || ' ' ||
       string_agg(CASE WHEN from_state = to_state THEN '.'
                       WHEN accepted THEN 'x' ELSE '-' END, ' ' ORDER BY to_state) AS "from \ to: pp pd oh ap bo al pk pd pa ps sh dl co ca"
  FROM matrix
 GROUP BY from_state ORDER BY from_state;

-- A refused transition names both states and lists the allowed ones.
INSERT INTO orders (id, shop_id, order_no) VALUES (9001, current_setting('my.shop')::bigint, 'T-1');
UPDATE orders SET state = 'shipped' WHERE order_no = 'T-1';
SELECT state, history_seq FROM orders WHERE order_no = 'T-1';

-- Orders are created only in an initial state.
INSERT INTO orders (shop_id, order_no, state) VALUES (current_setting('my.shop')::bigint, 'T-2', 'shipped');
SELECT count(*) FROM orders WHERE order_no = 'T-2';

-- The order id and the history position cannot be changed by hand.
UPDATE orders SET id = id + 1000 WHERE order_no = 'T-1';
UPDATE orders SET history_seq = 7 WHERE order_no = 'T-1';
UPDATE orders SET history_hash = NULL WHERE order_no = 'T-1';
-- Nor can its shop: its exceptions, holds and tenants follow the shop.
UPDATE orders SET shop_id = add_shop('transitions-other-shop', 'generic') WHERE order_no = 'T-1';
\echo :LAST_ERROR_SQLSTATE

-- transition() moves an order and returns the state it left; with an
-- expected state it fails (OF002) unless the order is in it; moving to the
-- current state is a no-op; unknown orders fail with OF004.
SELECT id AS t1 FROM orders WHERE order_no = 'T-1' \gset
SELECT transition(:t1, 'paid', 'payment received');
SELECT transition(:t1, 'approved', 'review passed', 'pending_payment');
SELECT transition(:t1, 'paid');
SELECT transition(:t1, 'approved', NULL, 'paid');
SELECT transition(-1, 'paid');
SELECT transition(NULL, 'paid');
SELECT seq, from_state, to_state, reason FROM order_events WHERE order_id = :t1 ORDER BY seq;

-- A paid order gets paid_at stamped unless it was given.
SELECT paid_at = (SELECT at FROM order_events WHERE order_id = :t1 AND to_state = 'paid') AS paid_at_stamped
  FROM orders WHERE id = :t1;

-- The graph is data: a DBA adds a transition and the next statement sees
-- it; removing it makes the transition illegal again.
SELECT can_transition('approved', 'shipped');
INSERT INTO transitions (from_state, to_state, description) VALUES ('approved', 'shipped', 'drop-shipped by the supplier');
SELECT can_transition('approved', 'shipped');
BEGIN;
UPDATE orders SET state = 'shipped' WHERE id = :t1;
SELECT state FROM orders WHERE id = :t1;
ROLLBACK;
DELETE FROM transitions WHERE from_state = 'approved' AND to_state = 'shipped';
SELECT can_transition('approved', 'shipped');
UPDATE orders SET state = 'shipped' WHERE id = :t1;
-- Initial states are data too.
INSERT INTO initial_states (state) VALUES ('approved');
INSERT INTO orders (shop_id, order_no, state) VALUES (current_setting('my.shop')::bigint, 'T-3', 'approved');
DELETE FROM initial_states WHERE state = 'approved';
INSERT INTO orders (shop_id, order_no, state) VALUES (current_setting('my.shop')::bigint, 'T-4', 'approved');
-- Self-loops are not transitions.
INSERT INTO transitions (from_state, to_state) VALUES ('paid', 'paid');

-- The state machine as Graphviz DOT.
SELECT state_graph();

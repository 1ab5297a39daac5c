-- transition() and allocate() change an order row without running an
-- UPDATE statement (for callers that row-level security does not apply
-- to), but apply everything the statement would: the caller's column
-- privileges, every BEFORE and AFTER row trigger on orders (with their
-- WHEN conditions and UPDATE OF columns), and every CHECK constraint,
-- including ones added after a backend has compiled the table's rules.
SET search_path = orderflow, public;
\set SHOW_CONTEXT never
\set VERBOSITY terse

SELECT set_config('my.shop', add_shop('update-shop', 'generic')::text, false) IS NOT NULL AS shop,
       add_warehouse('UP-W1', 'Suzhou') > 0 AS w1, add_bin('UP-W1', 'U-01') > 0 AS bin,
       add_sku('UP-INK', 'Ink stick', 8.00) > 0 AS ink,
       receive_stock('UP-INK', 'UP-W1', 'U-01', 5) > 0 AS received;

CREATE FUNCTION pg_temp.new_order(no text, qty integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	v_id bigint;
BEGIN
	INSERT INTO orderflow.orders (shop_id, order_no, state, paid_at)
	VALUES (current_setting('my.shop')::bigint, no, 'paid', now()) RETURNING id INTO v_id;
	INSERT INTO orderflow.order_lines (order_id, sku, qty, unit_price) VALUES (v_id, 'UP-INK', qty, 8.00);
	PERFORM orderflow.transition(v_id, 'approved');
	RETURN v_id;
END $$;
SELECT pg_temp.new_order('UP-1', 2) AS o1 \gset
SELECT pg_temp.new_order('UP-2', 1) AS o2 \gset

-- A DBA's own triggers: a BEFORE row trigger that edits the new row, and
-- an AFTER UPDATE OF state trigger with a WHEN condition.  Both fire for
-- allocate() and transition() exactly as for an UPDATE statement.
CREATE TABLE public.state_log (order_id bigint, from_state text, to_state text, note text);
CREATE FUNCTION public.stamp_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.state <> OLD.state THEN
		NEW.seller_note := coalesce(OLD.seller_note || ' ', '') || 'now ' || NEW.state::text;
	END IF;
	RETURN NEW;
END $$;
CREATE FUNCTION public.log_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.state_log VALUES (NEW.id, OLD.state::text, NEW.state::text, TG_ARGV[0]);
	RETURN NULL;
END $$;
CREATE TRIGGER stamp_note BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION public.stamp_note();
CREATE TRIGGER log_allocated AFTER UPDATE OF state ON orders FOR EACH ROW
	WHEN (NEW.state = 'allocated') EXECUTE FUNCTION public.log_state('allocated');
CREATE TRIGGER log_policy AFTER UPDATE OF allocation_policy ON orders FOR EACH ROW
	EXECUTE FUNCTION public.log_state('policy set');

SELECT line_no, sku, requested, allocated, warehouse, outcome FROM allocate(:o1);
SELECT transition(:o2, 'on_hold', 'address check');
SELECT state, seller_note, allocation_policy FROM orders WHERE id IN (:o1, :o2) ORDER BY id;
SELECT order_id = :o1 AS is_o1, from_state, to_state, note FROM state_log ORDER BY note;
SELECT seq, from_state, to_state, reason FROM order_events WHERE order_id = :o2 ORDER BY seq;

-- A CHECK constraint added now (NOT VALID: for new rows) is enforced on
-- the next change: the backend's compiled rules are rebuilt.  The refused
-- change leaves the order and its history as they were.
ALTER TABLE orders ADD CONSTRAINT held_orders_need_a_note
	CHECK (state <> 'on_hold' OR seller_note LIKE '%checked%') NOT VALID;
SELECT transition(:o2, 'approved');
SELECT transition(:o2, 'on_hold');
SELECT state, seller_note FROM orders WHERE id = :o2;
SELECT count(*) AS o2_events FROM order_events WHERE order_id = :o2;
ALTER TABLE orders DROP CONSTRAINT held_orders_need_a_note;

-- A CHECK that calls a function follows a new definition of the function.
CREATE FUNCTION public.allowed_note(note text) RETURNS boolean LANGUAGE sql IMMUTABLE
	AS $$ SELECT true $$;
ALTER TABLE orders ADD CONSTRAINT note_allowed CHECK (public.allowed_note(seller_note));
SELECT transition(:o2, 'on_hold');
CREATE OR REPLACE FUNCTION public.allowed_note(note text) RETURNS boolean LANGUAGE sql IMMUTABLE
	AS $$ SELECT note NOT LIKE '%on_hold%' $$;
SELECT transition(:o2, 'approved');
SELECT state FROM orders WHERE id = :o2;
ALTER TABLE orders DROP CONSTRAINT note_allowed;

-- A constraint whose check changes another order through transition()
-- (a nested change while the first one's rules are being evaluated).
CREATE FUNCTION public.cascade_hold(state order_state, other bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	IF state = 'allocated' AND other IS NOT NULL THEN
		PERFORM orderflow.transition(other, 'on_hold', 'held with its partner');
	END IF;
	RETURN true;
END $$;
ALTER TABLE orders ADD COLUMN partner bigint;
ALTER TABLE orders ADD CONSTRAINT partner_held CHECK (public.cascade_hold(state, partner));
SELECT pg_temp.new_order('UP-3', 1) AS o3 \gset
UPDATE orders SET partner = :o2 WHERE id = :o3;
SELECT outcome FROM allocate(:o3);
SELECT id = :o2 AS is_o2, state FROM orders WHERE id IN (:o2, :o3) ORDER BY id;

-- The nested change finds the rules changed (the check redefines a
-- function another CHECK calls) and plans them again while the outer
-- change still evaluates its own: the outer change keeps the rules it
-- started with, and the next change follows the new definition.
CREATE FUNCTION public.note_kind(note text) RETURNS boolean LANGUAGE sql IMMUTABLE
	AS $$ SELECT note IS DISTINCT FROM 'forbidden' $$;
ALTER TABLE orders ADD CONSTRAINT zz_note_kind CHECK (public.note_kind(seller_note));
CREATE OR REPLACE FUNCTION public.cascade_hold(state order_state, other bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	IF state = 'allocated' AND other IS NOT NULL THEN
		CREATE OR REPLACE FUNCTION public.note_kind(note text) RETURNS boolean LANGUAGE sql
			IMMUTABLE AS $f$ SELECT note NOT LIKE '%now allocated%' $f$;
		PERFORM orderflow.transition(other, 'on_hold', 'held with its partner');
	END IF;
	RETURN true;
END $$;
SELECT transition(:o2, 'approved');
SELECT pg_temp.new_order('UP-4', 1) AS o4 \gset
UPDATE orders SET partner = :o2 WHERE id = :o4;
SELECT outcome FROM allocate(:o4);
SELECT id = :o2 AS is_o2, state, seller_note FROM orders WHERE id IN (:o2, :o4) ORDER BY id;
-- The new definition refuses the allocated order's note from now on.
SELECT transition(:o4, 'on_hold');
SELECT state FROM orders WHERE id = :o4;
ALTER TABLE orders DROP CONSTRAINT zz_note_kind;
ALTER TABLE orders DROP CONSTRAINT partner_held;
ALTER TABLE orders DROP COLUMN partner;

-- Locking the order needs what SELECT ... FOR UPDATE needs: SELECT on the
-- columns read and UPDATE on some column.  A role that may read every
-- column allocate reads but update none may not lock the order, not even
-- when the call would change nothing (the order is already on hold).
CREATE ROLE order_reader BYPASSRLS;
GRANT USAGE ON SCHEMA orderflow TO order_reader;
GRANT SELECT (id, state, allocation_policy, allow_split, order_no, shop_id) ON orders TO order_reader;
GRANT SELECT ON transitions, initial_states TO order_reader;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA orderflow TO order_reader;
SELECT state FROM orders WHERE id = :o2;
SET ROLE order_reader;
SELECT transition(:o2, 'on_hold');
SELECT * FROM allocate(:o2);
RESET ROLE;
-- With UPDATE on another column it gets as far as the order's state (not
-- allocatable: OF022); without SELECT on a column allocate reads, not.
GRANT UPDATE (seller_note) ON orders TO order_reader;
SET ROLE order_reader;
SELECT transition(:o2, 'on_hold');
\set VERBOSITY sqlstate
SELECT * FROM allocate(:o2);
\set VERBOSITY terse
RESET ROLE;
REVOKE SELECT (allow_split) ON orders FROM order_reader;
SET ROLE order_reader;
SELECT * FROM allocate(:o2);
RESET ROLE;
SELECT state, allocation_policy FROM orders WHERE id = :o2;
REVOKE ALL ON orders, transitions, initial_states FROM order_reader;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA orderflow FROM order_reader;
REVOKE USAGE ON SCHEMA orderflow FROM order_reader;
DROP ROLE order_reader;

-- Nothing is locked or written in a read-only transaction, as the
-- statements would refuse (25006).
BEGIN READ ONLY;
SELECT transition(:o2, 'approved');
ROLLBACK;
BEGIN READ ONLY;
SELECT * FROM allocate(:o2);
ROLLBACK;
SELECT available('UP-INK', 'UP-W1') AS before_reserve \gset
BEGIN READ ONLY;
SELECT reserve('UP-INK', 'UP-W1', 1);
ROLLBACK;
SELECT state FROM orders WHERE id = :o2;
SELECT available('UP-INK', 'UP-W1') = :before_reserve AS stock_unchanged;

-- Column privileges are the statement's: a role that may read an order's
-- id and state and lock it (UPDATE on another column) but not change its
-- state is refused, and nothing changes; with UPDATE on state it may.
CREATE ROLE order_note_writer BYPASSRLS;
GRANT USAGE ON SCHEMA orderflow TO order_note_writer;
GRANT SELECT (id, state), UPDATE (seller_note) ON orders TO order_note_writer;
GRANT SELECT ON transitions, initial_states TO order_note_writer;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA orderflow TO order_note_writer;
SET ROLE order_note_writer;
SELECT transition(:o2, 'approved');
RESET ROLE;
SELECT state FROM orders WHERE id = :o2;
GRANT UPDATE (state) ON orders TO order_note_writer;
SET ROLE order_note_writer;
SELECT transition(:o2, 'approved');
SELECT transition(:o2, 'on_hold');
RESET ROLE;
SELECT state FROM orders WHERE id = :o2;
-- A CHECK that calls a function needs each caller's right to execute it,
-- although the backend plans and compiles the rules once: for another
-- user they are made again (here the function was inlined for the owner,
-- who may execute it).
CREATE FUNCTION public.note_allowed(note text) RETURNS boolean LANGUAGE sql IMMUTABLE
	AS $$ SELECT note IS DISTINCT FROM 'forbidden' $$;
REVOKE EXECUTE ON FUNCTION public.note_allowed(text) FROM PUBLIC;
ALTER TABLE orders ADD CONSTRAINT note_allowed CHECK (public.note_allowed(seller_note)) NOT VALID;
SELECT transition(:o2, 'approved');
SELECT transition(:o2, 'on_hold');
SET ROLE order_note_writer;
SELECT transition(:o2, 'approved');
RESET ROLE;
SELECT state FROM orders WHERE id = :o2;
-- The right held through a role: the rules are made again when the
-- membership ends.
CREATE ROLE note_checkers;
GRANT EXECUTE ON FUNCTION public.note_allowed(text) TO note_checkers;
GRANT note_checkers TO order_note_writer;
SET ROLE order_note_writer;
SELECT transition(:o2, 'approved');
SELECT transition(:o2, 'on_hold');
RESET ROLE;
SELECT state FROM orders WHERE id = :o2;
REVOKE note_checkers FROM order_note_writer;
SET ROLE order_note_writer;
SELECT transition(:o2, 'approved');
RESET ROLE;
SELECT state FROM orders WHERE id = :o2;
ALTER TABLE orders DROP CONSTRAINT note_allowed;
DROP FUNCTION public.note_allowed(text);
DROP ROLE note_checkers;
REVOKE ALL ON orders, transitions, initial_states FROM order_note_writer;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA orderflow FROM order_note_writer;
REVOKE USAGE ON SCHEMA orderflow FROM order_note_writer;
DROP ROLE order_note_writer;

-- Statement triggers fire only for statements: while orders has one, the
-- change is made by an UPDATE statement, and the trigger fires.
CREATE FUNCTION public.log_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.state_log (note) VALUES ('statement ' || TG_OP);
	RETURN NULL;
END $$;
CREATE TRIGGER log_statement AFTER UPDATE ON orders FOR EACH STATEMENT
	EXECUTE FUNCTION public.log_statement();
SELECT transition(:o2, 'approved');
SELECT note FROM state_log WHERE note LIKE 'statement%';
DROP TRIGGER log_statement ON orders;

-- A WHEN condition on the whole row, evaluated on change after change.
CREATE TRIGGER log_any_change AFTER UPDATE ON orders FOR EACH ROW
	WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION public.log_state('changed');
SELECT transition(:o2, 'on_hold');
SELECT transition(:o2, 'approved');
SELECT transition(:o2, 'on_hold');
SELECT count(*) AS whole_row_changes FROM state_log WHERE note = 'changed' AND order_id = :o2;
DROP TRIGGER log_any_change ON orders;

-- Rules on UPDATE rewrite only statements: while orders has one, the
-- change is made by an UPDATE statement, and the rule acts.
CREATE RULE log_update AS ON UPDATE TO orders
	DO ALSO INSERT INTO public.state_log (order_id, note) VALUES (NEW.id, 'rule');
SELECT transition(:o2, 'approved');
SELECT count(*) AS rule_rows FROM state_log WHERE note = 'rule' AND order_id = :o2;
DROP RULE log_update ON orders;

-- An order stored in a table that inherits from orders is found and
-- changed as an UPDATE of orders finds and changes it.
CREATE TABLE public.orders_archive () INHERITS (orders);
INSERT INTO public.orders_archive (id, shop_id, order_no, state)
VALUES (987654321, current_setting('my.shop')::bigint, 'UP-ARCH', 'paid');
SELECT transition(987654321, 'approved');
SELECT o.state, o.tableoid::regclass AS stored_in FROM orders o WHERE o.id = 987654321;
DROP TABLE public.orders_archive;

DROP TRIGGER stamp_note ON orders;
DROP TRIGGER log_allocated ON orders;
DROP TRIGGER log_policy ON orders;

-- A CHECK calling a SQL function that fails halfway through its query,
-- inside a savepoint: once the savepoint is rolled back, the next change
-- runs the function afresh, and its check is applied (the function is
-- not inlined: it has a SET clause).  The first change, before the
-- savepoint, is what makes the function's state belong to the outer
-- transaction, which the rollback to the savepoint leaves running.
CREATE FUNCTION public.note_check(note text) RETURNS boolean LANGUAGE sql STABLE
	SET search_path = pg_catalog
	AS $$ SELECT CASE WHEN note = 'boom' THEN 1 / (length(note) - 4) > 0
	                 ELSE note IS DISTINCT FROM 'refused' END $$;
SELECT pg_temp.new_order('UP-5', 1) AS o5 \gset
SELECT pg_temp.new_order('UP-6', 1) AS o6 \gset
SELECT pg_temp.new_order('UP-7', 1) AS o7 \gset
UPDATE orders SET seller_note = 'boom' WHERE id = :o6;
UPDATE orders SET seller_note = 'refused' WHERE id = :o7;
ALTER TABLE orders ADD CONSTRAINT note_check CHECK (public.note_check(seller_note)) NOT VALID;
BEGIN;
SELECT transition(:o5, 'on_hold');
SAVEPOINT s;
SELECT transition(:o6, 'on_hold');
ROLLBACK TO s;
SELECT transition(:o7, 'on_hold');
ROLLBACK TO s;
SELECT transition(:o5, 'approved');
COMMIT;
SELECT CASE id WHEN :o5 THEN 'o5' WHEN :o6 THEN 'o6' ELSE 'o7' END AS o, state
  FROM orders WHERE id IN (:o5, :o6, :o7) ORDER BY 1;
ALTER TABLE orders DROP CONSTRAINT note_check;
DROP FUNCTION public.note_check(text);

-- The shop's consent to split shipments is read as the extension, like
-- the warehouses: a role that may allocate an order but not read shops
-- gets the shop's answer.
CREATE ROLE order_allocator BYPASSRLS;
GRANT USAGE ON SCHEMA orderflow TO order_allocator;
GRANT SELECT (id, state, allocation_policy, allow_split, order_no, shop_id),
	UPDATE (state, allocation_policy) ON orders TO order_allocator;
GRANT SELECT ON transitions, initial_states TO order_allocator;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA orderflow TO order_allocator;
UPDATE shops SET allow_split = true WHERE id = current_setting('my.shop')::bigint;
SELECT pg_temp.new_order('UP-8', 99) AS o8 \gset
SELECT available('UP-INK', 'UP-W1') AS ink_before \gset
SET ROLE order_allocator;
SELECT requested, allocated, outcome FROM allocate(:o8, 'split');
RESET ROLE;
SELECT state, allocation_policy, available('UP-INK', 'UP-W1') = 0 AS ink_all_held
  FROM orders WHERE id = :o8;
SELECT transition(:o8, 'cancelled', 'test over') AS left_state;
SELECT available('UP-INK', 'UP-W1') = :ink_before AS ink_back;
UPDATE shops SET allow_split = false WHERE id = current_setting('my.shop')::bigint;
REVOKE ALL ON orders, transitions, initial_states FROM order_allocator;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA orderflow FROM order_allocator;
REVOKE USAGE ON SCHEMA orderflow FROM order_allocator;
DROP ROLE order_allocator;

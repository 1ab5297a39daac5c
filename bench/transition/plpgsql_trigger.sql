-- Baseline (b) of bench/transition: the extension's C transition trigger
-- written in PL/pgSQL, doing the same work for bench_plpgsql.orders:
--
--   * refuse changes of id, history_seq and history_hash (OF009);
--   * validate the change against orderflow.transitions (or, for a new
--     order, orderflow.initial_states), raising OF001;
--   * compute the event's SHA-256 over the previous event's hash (kept in
--     the order row) and the event's fields, byte for byte the layout of
--     src/history.c, so the hashes equal the C trigger's;
--   * append the audit row as the owner of the history table (a SECURITY
--     DEFINER function with a pinned search_path, as the extension's rules
--     require), while the validation and hash run as the caller, so
--     acting_role is the caller as in the C trigger;
--   * stamp state_changed_at, history_seq, history_hash and paid_at.
--
-- Included by setup.sql; runs after the copies of the tables exist.

-- SHA-256 of an event, in the layout of HistoryEventHash() in src/history.c:
-- prev_hash || order_id (8 bytes, big-endian) || seq (4) || from state (1
-- byte, 0xff for none) || to state (1) || at (8, microseconds since
-- 2000-01-01) || xid (8) || session_role, acting_role, application_name,
-- reason (each a 4-byte length, 0xffffffff for NULL, then the bytes).
CREATE FUNCTION bench_plpgsql.event_hash(prev_hash bytea, order_id bigint, seq integer,
										 from_state orderflow.order_state,
										 to_state orderflow.order_state, at timestamptz,
										 xid bigint, session_role text, acting_role text,
										 application_name text, reason text)
RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT sha256(
		coalesce(prev_hash, '\x'::bytea)
		|| int8send(order_id)
		|| int4send(seq)
		|| coalesce(orderflow.order_state_send(from_state), '\xff'::bytea)
		|| orderflow.order_state_send(to_state)
		|| int8send((extract(epoch FROM at) * 1000000)::bigint - 946684800000000)
		|| int8send(xid)
		|| coalesce(int4send(octet_length(session_role)) || convert_to(session_role, 'UTF8'), '\xffffffff'::bytea)
		|| coalesce(int4send(octet_length(acting_role)) || convert_to(acting_role, 'UTF8'), '\xffffffff'::bytea)
		|| coalesce(int4send(octet_length(application_name)) || convert_to(application_name, 'UTF8'), '\xffffffff'::bytea)
		|| coalesce(int4send(octet_length(reason)) || convert_to(reason, 'UTF8'), '\xffffffff'::bytea))
$$;

-- Append one audit row as the owner of the history table.
CREATE FUNCTION bench_plpgsql.append_event(ev bench_plpgsql.order_events)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	INSERT INTO bench_plpgsql.order_events VALUES (ev.*);
END
$$;
REVOKE ALL ON FUNCTION bench_plpgsql.append_event(bench_plpgsql.order_events) FROM PUBLIC;

CREATE FUNCTION bench_plpgsql.order_state_transition()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ev bench_plpgsql.order_events;
BEGIN
	IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
		IF NEW.id IS DISTINCT FROM OLD.id
		   OR NEW.history_seq IS DISTINCT FROM OLD.history_seq
		   OR NEW.history_hash IS DISTINCT FROM OLD.history_hash THEN
			RAISE EXCEPTION 'the order id and its history position cannot be changed directly'
				USING ERRCODE = 'OF009';
		END IF;
		IF NEW.state OPERATOR(orderflow.=) OLD.state THEN
			RETURN NEW;		-- not a transition
		END IF;
		IF NOT EXISTS (SELECT FROM orderflow.transitions t
						WHERE t.from_state OPERATOR(orderflow.=) OLD.state
						  AND t.to_state OPERATOR(orderflow.=) NEW.state) THEN
			RAISE EXCEPTION 'invalid order state transition from "%" to "%"', OLD.state, NEW.state
				USING ERRCODE = 'OF001';
		END IF;
		ev.from_state := OLD.state;
		ev.seq := OLD.history_seq OPERATOR(pg_catalog.+) 1;
		ev.prev_hash := OLD.history_hash;
	ELSE
		IF NOT EXISTS (SELECT FROM orderflow.initial_states i
						WHERE i.state OPERATOR(orderflow.=) NEW.state) THEN
			RAISE EXCEPTION 'an order cannot be created in state "%"', NEW.state
				USING ERRCODE = 'OF001';
		END IF;
		ev.seq := 1;
	END IF;

	ev.order_id := NEW.id;
	ev.to_state := NEW.state;
	ev.at := clock_timestamp();
	ev.session_role := session_user;
	ev.acting_role := current_user;
	ev.application_name := nullif(current_setting('application_name'), '');
	ev.reason := nullif(current_setting('orderflow.reason', true), '');
	ev.xid := pg_current_xact_id();
	ev.hash := bench_plpgsql.event_hash(ev.prev_hash, ev.order_id, ev.seq, ev.from_state,
										ev.to_state, ev.at, ev.xid::text::bigint,
										ev.session_role, ev.acting_role,
										ev.application_name, ev.reason);
	PERFORM bench_plpgsql.append_event(ev);

	NEW.state_changed_at := ev.at;
	NEW.history_seq := ev.seq;
	NEW.history_hash := ev.hash;
	IF NEW.state OPERATOR(orderflow.=) 'paid' AND NEW.paid_at IS NULL THEN
		NEW.paid_at := ev.at;
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER order_state_transition
	BEFORE INSERT OR UPDATE ON bench_plpgsql.orders
	FOR EACH ROW EXECUTE FUNCTION bench_plpgsql.order_state_transition();

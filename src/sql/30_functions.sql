-- The state machine and history functions, and the setup functions any
-- stack can call without knowing the table layout.

CREATE FUNCTION orderflow.can_transition(from_state orderflow.order_state,
										 to_state orderflow.order_state)
RETURNS boolean
AS 'MODULE_PATHNAME', 'order_can_transition' LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION orderflow.can_transition(orderflow.order_state, orderflow.order_state) IS
	'whether orderflow.transitions allows moving from the first state to the second';

CREATE FUNCTION orderflow.next_states(state orderflow.order_state)
RETURNS orderflow.order_state[]
AS 'MODULE_PATHNAME', 'order_next_states' LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION orderflow.next_states(orderflow.order_state) IS
	'states an order may move to from the given state, in stage order';

CREATE FUNCTION orderflow.state_graph()
RETURNS text
AS 'MODULE_PATHNAME', 'order_state_graph' LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION orderflow.state_graph() IS
	'the state machine as a Graphviz DOT digraph (render with dot -Tsvg)';

CREATE FUNCTION orderflow.transition(order_id bigint,
									 to_state orderflow.order_state,
									 reason text DEFAULT NULL,
									 expected orderflow.order_state DEFAULT NULL)
RETURNS orderflow.order_state
AS 'MODULE_PATHNAME', 'order_transition' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION orderflow.transition(bigint, orderflow.order_state, text, orderflow.order_state) IS
	'move an order to another state, recording the reason; with expected, fail unless the order is in that state. Returns the state the order left.';

CREATE FUNCTION orderflow.verify_history(order_id bigint)
RETURNS TABLE (seq integer, problem text)
AS 'MODULE_PATHNAME', 'order_verify_history' LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION orderflow.verify_history(bigint) IS
	'checks the hash chain of an order''s history; returns the first broken link, or no row when intact';

CREATE FUNCTION orderflow.find_order(shop_id bigint, order_no text)
RETURNS bigint
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT o.id FROM orderflow.orders o
	 WHERE o.shop_id OPERATOR(pg_catalog.=) $1
	   AND o.order_no OPERATOR(pg_catalog.=) $2
$$;
COMMENT ON FUNCTION orderflow.find_order(bigint, text) IS
	'the order id of a shop''s platform order number, or NULL';

CREATE FUNCTION orderflow.find_shop(name text)
RETURNS bigint
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT s.id FROM orderflow.shops s WHERE s.name OPERATOR(pg_catalog.=) $1
$$;
COMMENT ON FUNCTION orderflow.find_shop(text) IS
	'the id of the shop with that name, or NULL';

-- Argument checks shared by the setup functions.
CREATE FUNCTION orderflow.check_code(kind text, code text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF code IS NULL THEN
		RAISE EXCEPTION '% code must not be null', kind USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF code OPERATOR(pg_catalog.!~) '^[A-Za-z0-9][A-Za-z0-9._/#:-]{0,63}$' THEN
		RAISE EXCEPTION 'invalid % code "%"', kind, code
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Codes are 1 to 64 characters: letters, digits and . _ / # : - , starting with a letter or digit.';
	END IF;
	RETURN code;
END
$$;
COMMENT ON FUNCTION orderflow.check_code(text, text) IS
	'validates a shop, warehouse, bin or SKU code and returns it';

-- NaN is refused by name: it compares greater than every number.
CREATE FUNCTION orderflow.check_price(price numeric)
RETURNS numeric
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF price OPERATOR(pg_catalog.<) 0 OR price OPERATOR(pg_catalog.=) 'NaN'
	   OR price OPERATOR(pg_catalog.<>) pg_catalog.round(price, 2) THEN
		RAISE EXCEPTION 'invalid unit price %', price
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Prices are zero or more, with at most two decimal places.';
	END IF;
	RETURN price;
END
$$;
COMMENT ON FUNCTION orderflow.check_price(numeric) IS
	'validates a unit price (zero or more, at most two decimals, not NaN) and returns it';

CREATE FUNCTION orderflow.add_shop(name text, platform text, settings jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	shop orderflow.shops;
	k text;
	v jsonb;
	known constant text[] := ARRAY['owner_role', 'payment_timeout', 'allow_split',
								   'auto_complete_after', 'currency',
								   'payment_reminders', 'duplicate_window'];
	-- Settings kept in shops.settings rather than in a column of their own.
	extra jsonb := jsonb_strip_nulls(jsonb_build_object(
		'payment_reminders', settings->'payment_reminders',
		'duplicate_window', settings->'duplicate_window'));
BEGIN
	IF name IS NULL OR pg_catalog.btrim(name) OPERATOR(pg_catalog.=) '' THEN
		RAISE EXCEPTION 'shop name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF platform IS NULL THEN
		RAISE EXCEPTION 'platform must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT EXISTS (SELECT FROM orderflow.platforms p
										WHERE p.name OPERATOR(pg_catalog.=) platform) THEN
		RAISE EXCEPTION 'unknown platform "%"', platform
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'See orderflow.platforms.';
	END IF;
	IF settings IS NULL OR pg_catalog.jsonb_typeof(settings) OPERATOR(pg_catalog.<>) 'object' THEN
		RAISE EXCEPTION 'shop settings must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR k, v IN SELECT * FROM pg_catalog.jsonb_each(settings) LOOP
		IF NOT k OPERATOR(pg_catalog.=) ANY (known) THEN
			RAISE EXCEPTION 'unknown shop setting "%"', k
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = pg_catalog.format('Known settings: %s.', pg_catalog.array_to_string(known, ', '));
		END IF;
	END LOOP;

	SELECT * INTO shop FROM orderflow.shops s WHERE s.name OPERATOR(pg_catalog.=) add_shop.name;
	IF FOUND AND shop.platform OPERATOR(pg_catalog.<>) add_shop.platform THEN
		RAISE EXCEPTION 'shop "%" already exists on platform "%"', name, shop.platform
			USING ERRCODE = 'OF010';
	END IF;
	BEGIN
		IF settings ? 'owner_role' THEN
			IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles r
							WHERE r.rolname OPERATOR(pg_catalog.=) (settings->>'owner_role')) THEN
				RAISE EXCEPTION 'role "%" does not exist', settings->>'owner_role'
					USING ERRCODE = 'undefined_object';
			END IF;
		END IF;
		IF settings ? 'currency' AND (settings->>'currency') OPERATOR(pg_catalog.!~) '^[A-Z]{3}$' THEN
			RAISE EXCEPTION 'invalid currency "%"', settings->>'currency'
				USING ERRCODE = 'invalid_parameter_value', DETAIL = 'Use an ISO 4217 code such as CNY.';
		END IF;
		IF settings ? 'payment_timeout'
		   AND (settings->>'payment_timeout')::interval OPERATOR(pg_catalog.<=) '0'::interval THEN
			RAISE EXCEPTION 'payment_timeout must be positive' USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF settings ? 'auto_complete_after'
		   AND (settings->>'auto_complete_after')::interval OPERATOR(pg_catalog.<) '0'::interval THEN
			RAISE EXCEPTION 'auto_complete_after must not be negative' USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF settings ? 'allow_split' AND pg_catalog.jsonb_typeof(settings->'allow_split') OPERATOR(pg_catalog.<>) 'boolean' THEN
			RAISE EXCEPTION 'allow_split must be true or false' USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF settings ? 'payment_reminders' AND (pg_catalog.jsonb_typeof(settings->'payment_reminders') OPERATOR(pg_catalog.<>) 'array'
		   OR EXISTS (SELECT FROM pg_catalog.jsonb_array_elements(settings->'payment_reminders') r
					   WHERE pg_catalog.jsonb_typeof(r) OPERATOR(pg_catalog.<>) 'string'
						  OR (r OPERATOR(pg_catalog.->>) 0)::interval OPERATOR(pg_catalog.<=) '0'::interval)) THEN
			RAISE EXCEPTION 'payment_reminders must be an array of positive intervals'
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'Each is how long before the payment deadline to remind, e.g. ["15 minutes", "5 minutes"].';
		END IF;
		IF settings ? 'duplicate_window'
		   AND (settings->>'duplicate_window')::interval OPERATOR(pg_catalog.<) '0'::interval THEN
			RAISE EXCEPTION 'duplicate_window must not be negative' USING ERRCODE = 'invalid_parameter_value';
		END IF;
	EXCEPTION
		WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
			RAISE EXCEPTION 'invalid interval in shop settings: %', SQLERRM
				USING ERRCODE = 'invalid_parameter_value';
	END;

	INSERT INTO orderflow.shops AS s (name, platform, owner_role, payment_timeout, allow_split,
									  auto_complete_after, currency, settings)
	VALUES (add_shop.name, add_shop.platform,
			coalesce(add_shop.settings->>'owner_role', 'orderflow_operator'),
			coalesce((add_shop.settings->>'payment_timeout')::interval, '30 minutes'),
			coalesce((add_shop.settings->>'allow_split')::boolean, false),
			coalesce((add_shop.settings->>'auto_complete_after')::interval, '7 days'),
			coalesce(add_shop.settings->>'currency', 'CNY'),
			extra)
	ON CONFLICT ON CONSTRAINT shops_name_key DO UPDATE
	   SET owner_role = coalesce(add_shop.settings->>'owner_role', s.owner_role),
		   payment_timeout = coalesce((add_shop.settings->>'payment_timeout')::interval, s.payment_timeout),
		   allow_split = coalesce((add_shop.settings->>'allow_split')::boolean, s.allow_split),
		   auto_complete_after = coalesce((add_shop.settings->>'auto_complete_after')::interval, s.auto_complete_after),
		   currency = coalesce(add_shop.settings->>'currency', s.currency),
		   settings = s.settings OPERATOR(pg_catalog.||) extra
	RETURNING s.id INTO shop.id;
	RETURN shop.id;
END
$$;
COMMENT ON FUNCTION orderflow.add_shop(text, text, jsonb) IS
	'creates a shop, or updates the given settings of the shop of that name; returns its id. Settings: owner_role, payment_timeout, allow_split, auto_complete_after, currency, payment_reminders (JSON array of intervals before the payment deadline), duplicate_window (interval for suspected-duplicate screening).';

CREATE FUNCTION orderflow.add_warehouse(code text, name text, priority integer DEFAULT 100)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	wid bigint;
BEGIN
	PERFORM orderflow.check_code('warehouse', code);
	IF name IS NULL OR pg_catalog.btrim(name) OPERATOR(pg_catalog.=) '' THEN
		RAISE EXCEPTION 'warehouse name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF priority IS NULL OR priority OPERATOR(pg_catalog.<) 0 THEN
		RAISE EXCEPTION 'warehouse priority must be zero or more, not %', coalesce(priority::text, 'null')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	INSERT INTO orderflow.warehouses AS w (code, name, priority)
	VALUES (add_warehouse.code, add_warehouse.name, add_warehouse.priority)
	ON CONFLICT ON CONSTRAINT warehouses_code_key DO UPDATE
	   SET name = excluded.name, priority = excluded.priority
	RETURNING w.id INTO wid;
	RETURN wid;
END
$$;
COMMENT ON FUNCTION orderflow.add_warehouse(text, text, integer) IS
	'creates a warehouse, or updates the name and priority of the warehouse with that code; returns its id';

CREATE FUNCTION orderflow.warehouse_id(code text)
RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	wid bigint;
BEGIN
	SELECT w.id INTO wid FROM orderflow.warehouses w WHERE w.code OPERATOR(pg_catalog.=) warehouse_id.code;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'warehouse "%" does not exist', code USING ERRCODE = 'OF006';
	END IF;
	RETURN wid;
END
$$;
COMMENT ON FUNCTION orderflow.warehouse_id(text) IS
	'the id of the warehouse with that code; error OF006 when there is none';

CREATE FUNCTION orderflow.add_bin(warehouse text, code text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	wid bigint;
	bid bigint;
BEGIN
	PERFORM orderflow.check_code('bin', code);
	wid := orderflow.warehouse_id(warehouse);
	INSERT INTO orderflow.bins AS b (warehouse_id, code) VALUES (wid, add_bin.code)
	ON CONFLICT ON CONSTRAINT bins_warehouse_id_code_key DO UPDATE SET code = excluded.code
	RETURNING b.id INTO bid;
	RETURN bid;
END
$$;
COMMENT ON FUNCTION orderflow.add_bin(text, text) IS
	'creates a bin in a warehouse (no-op when it exists); returns its id';

CREATE FUNCTION orderflow.add_sku(code text, name text, unit_price numeric, attrs jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sid bigint;
BEGIN
	PERFORM orderflow.check_code('SKU', code);
	IF name IS NULL OR pg_catalog.btrim(name) OPERATOR(pg_catalog.=) '' THEN
		RAISE EXCEPTION 'SKU name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF unit_price IS NULL THEN
		RAISE EXCEPTION 'unit price must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM orderflow.check_price(unit_price);
	IF attrs IS NULL OR pg_catalog.jsonb_typeof(attrs) OPERATOR(pg_catalog.<>) 'object' THEN
		RAISE EXCEPTION 'SKU attributes must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	INSERT INTO orderflow.skus AS s (code, name, unit_price, attrs)
	VALUES (add_sku.code, add_sku.name, add_sku.unit_price, add_sku.attrs)
	ON CONFLICT ON CONSTRAINT skus_code_key DO UPDATE
	   SET name = excluded.name, unit_price = excluded.unit_price, attrs = excluded.attrs
	RETURNING s.id INTO sid;
	RETURN sid;
END
$$;
COMMENT ON FUNCTION orderflow.add_sku(text, text, numeric, jsonb) IS
	'creates a SKU, or updates name, price and attributes of the SKU with that code; returns its id';

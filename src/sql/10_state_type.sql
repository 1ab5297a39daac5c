-- The order_state base type: one byte, pass-by-value, ordered by stage.

CREATE TYPE orderflow.order_state;

CREATE FUNCTION orderflow.order_state_in(pg_catalog.cstring)
RETURNS orderflow.order_state
AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION orderflow.order_state_out(orderflow.order_state)
RETURNS pg_catalog.cstring
AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION orderflow.order_state_recv(pg_catalog.internal)
RETURNS orderflow.order_state
AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION orderflow.order_state_send(orderflow.order_state)
RETURNS pg_catalog.bytea
AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE orderflow.order_state (
	INPUT = orderflow.order_state_in,
	OUTPUT = orderflow.order_state_out,
	RECEIVE = orderflow.order_state_recv,
	SEND = orderflow.order_state_send,
	INTERNALLENGTH = 1,
	PASSEDBYVALUE,
	ALIGNMENT = char,
	STORAGE = plain,
	CATEGORY = 'E'
);
COMMENT ON TYPE orderflow.order_state IS
	'state of an order in the fulfilment process; one byte, ordered by process stage';
COMMENT ON FUNCTION orderflow.order_state_in(pg_catalog.cstring) IS
	'order_state input: canonical English name (any case) or Chinese label';
COMMENT ON FUNCTION orderflow.order_state_out(orderflow.order_state) IS
	'order_state output: canonical English name';
COMMENT ON FUNCTION orderflow.order_state_recv(pg_catalog.internal) IS
	'order_state binary input: one byte';
COMMENT ON FUNCTION orderflow.order_state_send(orderflow.order_state) IS
	'order_state binary output: one byte';

CREATE FUNCTION orderflow.order_state_eq(orderflow.order_state, orderflow.order_state)
RETURNS boolean AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION orderflow.order_state_ne(orderflow.order_state, orderflow.order_state)
RETURNS boolean AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION orderflow.order_state_lt(orderflow.order_state, orderflow.order_state)
RETURNS boolean AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION orderflow.order_state_le(orderflow.order_state, orderflow.order_state)
RETURNS boolean AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION orderflow.order_state_gt(orderflow.order_state, orderflow.order_state)
RETURNS boolean AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION orderflow.order_state_ge(orderflow.order_state, orderflow.order_state)
RETURNS boolean AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION orderflow.order_state_cmp(orderflow.order_state, orderflow.order_state)
RETURNS integer AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION orderflow.order_state_hash(orderflow.order_state)
RETURNS integer AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION orderflow.order_state_hash_extended(orderflow.order_state, bigint)
RETURNS bigint AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;

COMMENT ON FUNCTION orderflow.order_state_eq(orderflow.order_state, orderflow.order_state) IS 'equal';
COMMENT ON FUNCTION orderflow.order_state_ne(orderflow.order_state, orderflow.order_state) IS 'not equal';
COMMENT ON FUNCTION orderflow.order_state_lt(orderflow.order_state, orderflow.order_state) IS 'earlier stage';
COMMENT ON FUNCTION orderflow.order_state_le(orderflow.order_state, orderflow.order_state) IS 'earlier or same stage';
COMMENT ON FUNCTION orderflow.order_state_gt(orderflow.order_state, orderflow.order_state) IS 'later stage';
COMMENT ON FUNCTION orderflow.order_state_ge(orderflow.order_state, orderflow.order_state) IS 'later or same stage';
COMMENT ON FUNCTION orderflow.order_state_cmp(orderflow.order_state, orderflow.order_state) IS 'btree comparison by stage';
COMMENT ON FUNCTION orderflow.order_state_hash(orderflow.order_state) IS 'hash';
COMMENT ON FUNCTION orderflow.order_state_hash_extended(orderflow.order_state, bigint) IS 'hash with seed';

CREATE OPERATOR orderflow.= (
	LEFTARG = orderflow.order_state, RIGHTARG = orderflow.order_state,
	FUNCTION = orderflow.order_state_eq,
	COMMUTATOR = OPERATOR(orderflow.=), NEGATOR = OPERATOR(orderflow.<>),
	RESTRICT = pg_catalog.eqsel, JOIN = pg_catalog.eqjoinsel,
	HASHES, MERGES
);
COMMENT ON OPERATOR orderflow.= (orderflow.order_state, orderflow.order_state) IS 'same state';
CREATE OPERATOR orderflow.<> (
	LEFTARG = orderflow.order_state, RIGHTARG = orderflow.order_state,
	FUNCTION = orderflow.order_state_ne,
	COMMUTATOR = OPERATOR(orderflow.<>), NEGATOR = OPERATOR(orderflow.=),
	RESTRICT = pg_catalog.neqsel, JOIN = pg_catalog.neqjoinsel
);
COMMENT ON OPERATOR orderflow.<> (orderflow.order_state, orderflow.order_state) IS 'different states';
CREATE OPERATOR orderflow.< (
	LEFTARG = orderflow.order_state, RIGHTARG = orderflow.order_state,
	FUNCTION = orderflow.order_state_lt,
	COMMUTATOR = OPERATOR(orderflow.>), NEGATOR = OPERATOR(orderflow.>=),
	RESTRICT = pg_catalog.scalarltsel, JOIN = pg_catalog.scalarltjoinsel
);
COMMENT ON OPERATOR orderflow.< (orderflow.order_state, orderflow.order_state) IS 'earlier stage';
CREATE OPERATOR orderflow.<= (
	LEFTARG = orderflow.order_state, RIGHTARG = orderflow.order_state,
	FUNCTION = orderflow.order_state_le,
	COMMUTATOR = OPERATOR(orderflow.>=), NEGATOR = OPERATOR(orderflow.>),
	RESTRICT = pg_catalog.scalarlesel, JOIN = pg_catalog.scalarlejoinsel
);
COMMENT ON OPERATOR orderflow.<= (orderflow.order_state, orderflow.order_state) IS 'earlier or same stage';
CREATE OPERATOR orderflow.> (
	LEFTARG = orderflow.order_state, RIGHTARG = orderflow.order_state,
	FUNCTION = orderflow.order_state_gt,
	COMMUTATOR = OPERATOR(orderflow.<), NEGATOR = OPERATOR(orderflow.<=),
	RESTRICT = pg_catalog.scalargtsel, JOIN = pg_catalog.scalargtjoinsel
);
COMMENT ON OPERATOR orderflow.> (orderflow.order_state, orderflow.order_state) IS 'later stage';
CREATE OPERATOR orderflow.>= (
	LEFTARG = orderflow.order_state, RIGHTARG = orderflow.order_state,
	FUNCTION = orderflow.order_state_ge,
	COMMUTATOR = OPERATOR(orderflow.<=), NEGATOR = OPERATOR(orderflow.<),
	RESTRICT = pg_catalog.scalargesel, JOIN = pg_catalog.scalargejoinsel
);
COMMENT ON OPERATOR orderflow.>= (orderflow.order_state, orderflow.order_state) IS 'later or same stage';

CREATE OPERATOR FAMILY orderflow.order_state_ops USING btree;
CREATE OPERATOR FAMILY orderflow.order_state_ops USING hash;
COMMENT ON OPERATOR FAMILY orderflow.order_state_ops USING btree IS 'order states by process stage';
COMMENT ON OPERATOR FAMILY orderflow.order_state_ops USING hash IS 'order states by equality';

CREATE OPERATOR CLASS orderflow.order_state_ops
	DEFAULT FOR TYPE orderflow.order_state USING btree FAMILY orderflow.order_state_ops AS
	OPERATOR 1 orderflow.<,
	OPERATOR 2 orderflow.<=,
	OPERATOR 3 orderflow.=,
	OPERATOR 4 orderflow.>=,
	OPERATOR 5 orderflow.>,
	FUNCTION 1 orderflow.order_state_cmp(orderflow.order_state, orderflow.order_state);
COMMENT ON OPERATOR CLASS orderflow.order_state_ops USING btree IS 'default B-tree operator class: order states sort in process-stage order';

CREATE OPERATOR CLASS orderflow.order_state_ops
	DEFAULT FOR TYPE orderflow.order_state USING hash FAMILY orderflow.order_state_ops AS
	OPERATOR 1 orderflow.=,
	FUNCTION 1 orderflow.order_state_hash(orderflow.order_state),
	FUNCTION 2 orderflow.order_state_hash_extended(orderflow.order_state, bigint);
COMMENT ON OPERATOR CLASS orderflow.order_state_ops USING hash IS 'default hash operator class of order states';

CREATE FUNCTION orderflow.order_state_smaller(orderflow.order_state, orderflow.order_state)
RETURNS orderflow.order_state AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION orderflow.order_state_larger(orderflow.order_state, orderflow.order_state)
RETURNS orderflow.order_state AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION orderflow.order_state_smaller(orderflow.order_state, orderflow.order_state) IS 'earlier of two states';
COMMENT ON FUNCTION orderflow.order_state_larger(orderflow.order_state, orderflow.order_state) IS 'later of two states';

CREATE AGGREGATE orderflow.min(orderflow.order_state) (
	SFUNC = orderflow.order_state_smaller, STYPE = orderflow.order_state,
	SORTOP = OPERATOR(orderflow.<), COMBINEFUNC = orderflow.order_state_smaller,
	PARALLEL = SAFE
);
CREATE AGGREGATE orderflow.max(orderflow.order_state) (
	SFUNC = orderflow.order_state_larger, STYPE = orderflow.order_state,
	SORTOP = OPERATOR(orderflow.>), COMBINEFUNC = orderflow.order_state_larger,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE orderflow.min(orderflow.order_state) IS 'earliest state';
COMMENT ON AGGREGATE orderflow.max(orderflow.order_state) IS 'latest state';

-- Casts to and from text go through the type's text input and output.
CREATE CAST (orderflow.order_state AS text) WITH INOUT AS ASSIGNMENT;
CREATE CAST (text AS orderflow.order_state) WITH INOUT;
COMMENT ON CAST (orderflow.order_state AS text) IS 'the canonical English name of the state';
COMMENT ON CAST (text AS orderflow.order_state) IS 'a state from its English name or Chinese label (order_state_in)';

CREATE FUNCTION orderflow.label(state orderflow.order_state, lang text DEFAULT 'en')
RETURNS text
AS 'MODULE_PATHNAME', 'order_state_label' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION orderflow.label(orderflow.order_state, text) IS
	'human label of a state in English (''en'') or Chinese (''zh'')';

CREATE FUNCTION orderflow.states()
RETURNS TABLE (state orderflow.order_state, stage integer, label_en text, label_zh text)
AS 'MODULE_PATHNAME', 'order_states' LANGUAGE C IMMUTABLE PARALLEL SAFE ROWS 14;
COMMENT ON FUNCTION orderflow.states() IS
	'every order state in stage order, with its stage number and English and Chinese labels';

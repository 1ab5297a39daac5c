-- Installing orderflow is safe against objects planted beforehand
-- (CVE-2018-1058 and CVE-2020-14350 patterns): every name in the install
-- script is qualified, and a schema prepared by someone else is refused.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP DATABASE IF EXISTS orderflow_security;
DROP ROLE IF EXISTS orderflow_intruder;
RESET client_min_messages;
CREATE ROLE orderflow_intruder LOGIN;
CREATE DATABASE orderflow_security;
\c orderflow_security

-- An untrusted role plants look-alikes of built-ins the script calls, in a
-- schema that comes first on the search_path.
CREATE SCHEMA trap AUTHORIZATION orderflow_intruder;
GRANT USAGE ON SCHEMA trap TO PUBLIC;
SET ROLE orderflow_intruder;
CREATE TABLE trap.captured (what text);
GRANT INSERT ON trap.captured TO PUBLIC;
CREATE FUNCTION trap.btrim(text) RETURNS text LANGUAGE sql
	AS $$ INSERT INTO trap.captured VALUES ('btrim') RETURNING 'x' $$;
CREATE FUNCTION trap.jsonb_typeof(jsonb) RETURNS text LANGUAGE sql
	AS $$ INSERT INTO trap.captured VALUES ('jsonb_typeof') RETURNING 'object' $$;
CREATE FUNCTION trap.now() RETURNS timestamptz LANGUAGE sql
	AS $$ INSERT INTO trap.captured VALUES ('now') RETURNING 'epoch'::timestamptz $$;
CREATE FUNCTION trap.text_eq_capture(text, text) RETURNS boolean LANGUAGE sql
	AS $$ INSERT INTO trap.captured VALUES ('operator =') RETURNING true $$;
CREATE OPERATOR trap.= (LEFTARG = text, RIGHTARG = text, FUNCTION = trap.text_eq_capture);
CREATE FUNCTION trap.count(anyelement) RETURNS bigint LANGUAGE sql
	AS $$ INSERT INTO trap.captured VALUES ('count') RETURNING 0::bigint $$;
RESET ROLE;

SET search_path = trap, public;
CREATE EXTENSION orderflow;
-- Use it a little through the same hostile search_path.
SELECT orderflow.add_shop('sec-shop', 'generic') > 0 AS shop,
       orderflow.add_warehouse('SEC-W', 'warehouse') > 0 AS warehouse,
       orderflow.add_sku('SEC-SKU', 'thing', 1.00) > 0 AS sku;
INSERT INTO orderflow.orders (shop_id, order_no) SELECT orderflow.find_shop('sec-shop'), 'SEC-1';
SELECT orderflow.transition(orderflow.find_order(orderflow.find_shop('sec-shop'), 'SEC-1'), 'paid') AS was;
SELECT count(*) AS broken FROM orderflow.verify_history(orderflow.find_order(orderflow.find_shop('sec-shop'), 'SEC-1'));
-- Nothing planted was ever called.
SELECT what FROM trap.captured;
RESET search_path;
DROP EXTENSION orderflow;
DROP SCHEMA orderflow;

-- A schema named orderflow that another role created first is refused.
CREATE SCHEMA orderflow AUTHORIZATION orderflow_intruder;
CREATE EXTENSION orderflow;
DROP SCHEMA orderflow;
-- So is one that already holds objects.
CREATE SCHEMA orderflow;
CREATE FUNCTION orderflow.add_shop(text, text, jsonb) RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint';
CREATE EXTENSION orderflow;
DROP SCHEMA orderflow CASCADE;
-- A clean install works.
CREATE EXTENSION orderflow;
SELECT count(*) > 0 AS installed FROM pg_catalog.pg_extension WHERE extname = 'orderflow';

-- The intake job runs adapters as the extension's owner, a superuser: an
-- administrator cannot make a function of its own an adapter, by the
-- function or by writing the table, and so cannot run code as superuser.
GRANT orderflow_admin TO orderflow_intruder;
GRANT CREATE ON SCHEMA trap TO orderflow_intruder;
SET ROLE orderflow_intruder;
CREATE FUNCTION trap.my_adapter(p jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT p $$;
\set VERBOSITY sqlstate
SELECT orderflow.register_adapter('mine', 'trap.my_adapter(jsonb)');
UPDATE orderflow.adapters SET adapter = 'trap.my_adapter(jsonb)' WHERE platform = 'generic';
UPDATE orderflow.adapters SET key_function = 'trap.my_adapter(jsonb)' WHERE platform = 'generic';
\set VERBOSITY default
SELECT orderflow.register_adapter('mine', 'trap.my_adapter(jsonb)');
RESET ROLE;
SELECT platform, adapter FROM orderflow.adapters WHERE adapter::text LIKE '%my_adapter%' OR platform = 'mine';
-- Once a superuser has taken the function over, it can be registered.
ALTER FUNCTION trap.my_adapter(jsonb) OWNER TO CURRENT_USER;
SET ROLE orderflow_intruder;
SELECT orderflow.register_adapter('mine', 'trap.my_adapter(jsonb)');
RESET ROLE;
SELECT platform, adapter FROM orderflow.adapters WHERE platform = 'mine';

\c contrib_regression
DROP DATABASE orderflow_security;
DROP ROLE orderflow_intruder;

-- orderflow install script.  Built from src/sql/*.sql by the Makefile.
--
-- Every reference is schema-qualified and operators in expressions are
-- written OPERATOR(pg_catalog.=) where a same-named operator planted in
-- another schema could otherwise be chosen, so the script is safe to run
-- whatever the installing role's search_path holds.

\echo Use "CREATE EXTENSION orderflow" to load this file. \quit

-- Refuse to install into a schema someone else prepared: a schema created
-- beforehand by another role could hold objects that capture our names.
DO $guard$
DECLARE
	owner_ok boolean;
	foreign_objects bigint;
BEGIN
	SELECT n.nspowner OPERATOR(pg_catalog.=) u.oid
	  INTO owner_ok
	  FROM pg_catalog.pg_namespace n, pg_catalog.pg_roles u
	 WHERE n.nspname OPERATOR(pg_catalog.=) 'orderflow'
	   AND u.rolname OPERATOR(pg_catalog.=) CURRENT_USER;
	IF NOT coalesce(owner_ok, false) THEN
		RAISE EXCEPTION 'schema "orderflow" is not owned by the installing role'
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Drop the schema or let CREATE EXTENSION create it.';
	END IF;
	SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c
			 WHERE c.relnamespace OPERATOR(pg_catalog.=) 'orderflow'::pg_catalog.regnamespace)
		 OPERATOR(pg_catalog.+)
		   (SELECT pg_catalog.count(*) FROM pg_catalog.pg_proc p
			 WHERE p.pronamespace OPERATOR(pg_catalog.=) 'orderflow'::pg_catalog.regnamespace)
		 OPERATOR(pg_catalog.+)
		   (SELECT pg_catalog.count(*) FROM pg_catalog.pg_type t
			 WHERE t.typnamespace OPERATOR(pg_catalog.=) 'orderflow'::pg_catalog.regnamespace)
		 OPERATOR(pg_catalog.+)
		   (SELECT pg_catalog.count(*) FROM pg_catalog.pg_operator o
			 WHERE o.oprnamespace OPERATOR(pg_catalog.=) 'orderflow'::pg_catalog.regnamespace)
	  INTO foreign_objects;
	IF foreign_objects OPERATOR(pg_catalog.>) 0 THEN
		RAISE EXCEPTION 'schema "orderflow" already contains objects'
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Install orderflow into an empty schema.';
	END IF;
END
$guard$;

-- Group roles.  Installations grant them to their login roles.
DO $roles$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['orderflow_admin', 'orderflow_operator',
							 'orderflow_warehouse', 'orderflow_auditor',
							 'orderflow_reporting']
	LOOP
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles
						WHERE rolname OPERATOR(pg_catalog.=) r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$roles$;

REVOKE ALL ON SCHEMA orderflow FROM PUBLIC;
GRANT USAGE ON SCHEMA orderflow TO orderflow_admin, orderflow_operator,
	orderflow_warehouse, orderflow_auditor, orderflow_reporting;
COMMENT ON SCHEMA orderflow IS 'orderflow: e-commerce order processing';

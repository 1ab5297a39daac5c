-- Every object of the extension says what it is for: its members (tables,
-- views, sequences, functions, types, operators, operator classes and
-- families, casts), the columns of its tables and views, and the indexes,
-- triggers and policies on its tables.  Indexes that back a constraint are
-- described by the constraint.
CREATE FUNCTION pg_temp.undescribed() RETURNS SETOF text
LANGUAGE sql AS $$
	WITH objects AS (
		SELECT d.classid, d.objid, d.objsubid
		  FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
		 WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND e.extname = 'orderflow'
		   AND d.deptype = 'e'
		UNION ALL
		SELECT 'pg_catalog.pg_class'::regclass, i.indexrelid, 0
		  FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
		 WHERE c.relnamespace = 'orderflow'::regnamespace
		   AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid)
		UNION ALL
		SELECT 'pg_catalog.pg_trigger'::regclass, t.oid, 0
		  FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
		 WHERE c.relnamespace = 'orderflow'::regnamespace AND NOT t.tgisinternal
		UNION ALL
		SELECT 'pg_catalog.pg_policy'::regclass, p.oid, 0
		  FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
		 WHERE c.relnamespace = 'orderflow'::regnamespace
		UNION ALL
		SELECT 'pg_catalog.pg_class'::regclass, a.attrelid, a.attnum
		  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
		 WHERE c.relnamespace = 'orderflow'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
		   AND a.attnum > 0 AND NOT a.attisdropped
	)
	SELECT pg_catalog.pg_describe_object(o.classid, o.objid, o.objsubid)
	  FROM objects o
	 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_description x
						WHERE x.classoid = o.classid AND x.objoid = o.objid
						  AND x.objsubid = o.objsubid)
	 ORDER BY 1
$$;
SELECT * FROM pg_temp.undescribed() AS undescribed;

-- An index, a trigger, a policy or a column added without a description is
-- found.
BEGIN;
CREATE INDEX comments_test_idx ON orderflow.orders (created_at);
CREATE TRIGGER comments_test BEFORE UPDATE ON orderflow.skus
	FOR EACH ROW EXECUTE FUNCTION orderflow.code_immutable('SKU');
CREATE POLICY comments_test ON orderflow.skus USING (true);
ALTER TABLE orderflow.skus ADD COLUMN comments_test integer;
SELECT * FROM pg_temp.undescribed() AS undescribed;
ROLLBACK;

-- The order_state type: text and binary I/O, ordering by process stage,
-- btree and hash indexes, labels.
SET search_path = orderflow, public;

-- Every state round-trips through its canonical name and its Chinese label;
-- it is stored in one byte, and its binary form is the stage number.
SELECT state, stage,
       state::text::order_state = state AS via_text,
       label_zh::order_state = state AS via_zh,
       label_en, label_zh,
       order_state_send(state) AS wire,
       pg_column_size(state) AS bytes
  FROM states();

-- Input ignores case and surrounding blanks.
SELECT 'PAID'::order_state, ' Partially_Shipped '::order_state, '已签收'::order_state;

-- Bad literals: SQLSTATE 22P02 with the valid names in the hint.
\set VERBOSITY default
SELECT 'bogus'::order_state;
SELECT ''::order_state;
SELECT 'paid_'::order_state;
SELECT '已付款'::order_state;
\set VERBOSITY sqlstate
SELECT 'shipping'::order_state;
\set VERBOSITY default

-- Binary COPY round trip, and a byte out of range refused with 22P03.
CREATE TEMP TABLE st_out AS SELECT state FROM states();
CREATE TEMP TABLE st_in (state order_state);
SELECT current_setting('data_directory') || '/orderflow_state_type.bin' AS binfile \gset
COPY st_out TO :'binfile' (FORMAT binary);
COPY st_in FROM :'binfile' (FORMAT binary);
SELECT count(*) AS rows, bool_and(a.state = b.state) AS identical
  FROM (SELECT state, row_number() OVER () AS n FROM st_out) a
  JOIN (SELECT state, row_number() OVER () AS n FROM st_in) b USING (n);
CREATE TEMP TABLE bad_byte AS SELECT 'x'::"char" AS state;
COPY bad_byte TO :'binfile' (FORMAT binary);
COPY st_in FROM :'binfile' (FORMAT binary);
\set VERBOSITY default

-- Operators order by process stage, not alphabetically.
SELECT 'paid'::order_state < 'approved', 'shipped'::order_state > 'packed',
       'cancelled'::order_state >= 'completed', 'picking'::order_state <= 'picking',
       'paid'::order_state = '已付款待处理', 'paid'::order_state <> 'approved';
SELECT array_agg(s ORDER BY s) AS sorted
  FROM unnest('{shipped,paid,cancelled,approved,pending_payment}'::order_state[]) s;
SELECT max(state), min(state) FROM states() WHERE stage BETWEEN 3 AND 8;

-- Casts to and from text.
SELECT 'on_hold'::order_state::text || '!' AS to_text, ('approved'::text)::order_state AS from_text;

-- Labels; an unknown language is refused.
SELECT label('backordered', 'en'), label('backordered', 'zh'), label('backordered', 'ZH-cn');
SELECT label('backordered', 'fr');

-- btree and hash indexes are used.
CREATE TEMP TABLE st_idx AS
  SELECT (g % 14)::text AS k, s.state
    FROM generate_series(1, 2800) g
    JOIN states() s ON s.stage = g % 14;
CREATE INDEX st_idx_btree ON st_idx USING btree (state);
CREATE INDEX st_idx_hash ON st_idx USING hash (state);
ANALYZE st_idx;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
DROP INDEX st_idx_hash;
EXPLAIN (COSTS OFF) SELECT count(*) FROM st_idx WHERE state = 'packed';
SELECT count(*) FROM st_idx WHERE state = 'packed';
EXPLAIN (COSTS OFF) SELECT count(*) FROM st_idx WHERE state BETWEEN 'picking' AND 'packed';
SELECT count(*) FROM st_idx WHERE state BETWEEN 'picking' AND 'packed';
DROP INDEX st_idx_btree;
CREATE INDEX st_idx_hash ON st_idx USING hash (state);
EXPLAIN (COSTS OFF) SELECT count(*) FROM st_idx WHERE state = 'packed';
SELECT count(*) FROM st_idx WHERE state = 'packed';
RESET enable_seqscan;
RESET enable_bitmapscan;

-- Hash joins, merge joins and GROUP BY work through the operator classes.
SET enable_mergejoin = off;
SET enable_nestloop = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM st_idx a JOIN states() b USING (state);
SELECT count(*) FROM st_idx a JOIN states() b USING (state);
RESET enable_mergejoin;
RESET enable_nestloop;
SELECT state, count(*) FROM st_idx GROUP BY state ORDER BY state LIMIT 3;

-- The hash functions agree with each other and depend on the seed.
SELECT order_state_hash('paid') = order_state_hash('已付款待处理') AS same,
       order_state_hash_extended('paid', 0) = order_state_hash_extended('paid', 1) AS seed_ignored;

-- Payment deadlines, reminders and the expiry sweep; the outbox; the job
-- list for pg_cron.  Times are relative to now(), outputs are not.
SET search_path = orderflow, public;
SET timezone = 'UTC';

SELECT add_sku('JB-A', 'A', 10.00) > 0 AS a;
-- The jobs work across shops: first settle what earlier tests left behind.
SELECT expire_unpaid(1000000) >= 0 AS settled, queue_payment_reminders(1000000) >= 0 AS reminded,
	   (SELECT count(*) FROM claim_outbox(1000000) c WHERE NOT mark_sent(c.id)) AS unsent;
SELECT add_shop('jb-web', 'generic',
	'{"payment_timeout": "30 minutes", "payment_reminders": ["20 minutes", "10 minutes", "5 minutes"]}') AS web \gset

CREATE FUNCTION pg_temp.unpaid(no text, age interval) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('order_no', no, 'status', 'pending_payment', 'currency', 'CNY',
		'created_at', to_char(now() - age, 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
		'receiver', jsonb_build_object('name', 'N', 'phone', '1300013000' || right(no, 1), 'address', 'A'),
		'lines', '[{"sku": "JB-A", "qty": 1, "unit_price": "10"}]'::jsonb)
$$;
-- Deadlines are created_at + 30 minutes: JB-1 has 25 minutes left (no
-- reminder due), JB-2 has 15 (the 20-minute reminder is due), JB-3 has 3
-- (all three points have passed: only the 5-minute one is sent), JB-4 is
-- overdue.
SELECT ingest(:web, pg_temp.unpaid('JB-1', '5 minutes')) > 0,
	   ingest(:web, pg_temp.unpaid('JB-2', '15 minutes')) > 0,
	   ingest(:web, pg_temp.unpaid('JB-3', '27 minutes')) > 0,
	   ingest(:web, pg_temp.unpaid('JB-4', '45 minutes')) > 0;
SELECT * FROM sync();

SELECT queue_payment_reminders() AS queued;
-- Running it again (or concurrently) queues nothing twice.
SELECT queue_payment_reminders() AS queued_again;
SELECT o.order_no, r.before, r.outbox_id IS NOT NULL AS sent
  FROM payment_reminders r JOIN orders o ON o.id = r.order_id
 WHERE o.shop_id = :web ORDER BY 1, 2 DESC;

-- The sweep cancels only the overdue order, once.
SELECT expire_unpaid() AS cancelled;
SELECT expire_unpaid() AS cancelled_again;
SELECT order_no, state FROM orders WHERE shop_id = :web ORDER BY order_no;
SELECT e.from_state, e.to_state, regexp_replace(e.reason, '[0-9]+$', 'N') AS reason FROM order_events e
 WHERE e.order_id = find_order(:web, 'JB-4') ORDER BY e.seq;
-- A payment after the deadline finds the order cancelled: exception, no change.
SELECT ingest(:web, pg_temp.unpaid('JB-4', '45 minutes') || '{"status": "paid"}') > 0;
SELECT * FROM sync();
SELECT state FROM orders WHERE id = find_order(:web, 'JB-4');
SELECT kind FROM exceptions WHERE order_id = find_order(:web, 'JB-4');

-- The outbox: what was queued, claimed by two consumers without overlap,
-- marked sent once.
SELECT o.order_no, x.topic, x.recipient, x.payload->>'before' AS before
  FROM outbox x JOIN orders o ON o.id = x.order_id
 WHERE o.shop_id = :web ORDER BY x.id;
CREATE TEMP TABLE c1 AS SELECT * FROM claim_outbox(2);
CREATE TEMP TABLE c2 AS SELECT * FROM claim_outbox(10);
SELECT (SELECT count(*) FROM c1) AS first, (SELECT count(*) FROM c2) AS second,
	   (SELECT count(*) FROM c1 JOIN c2 USING (id)) AS overlap;
SELECT count(*) AS claimable_now FROM claim_outbox(10);
SELECT bool_and(mark_sent(id)) AS marked FROM c1;
SELECT bool_or(mark_sent(id)) AS marked_twice FROM c1;
SELECT mark_failed(id, 'SMS gateway timeout') FROM c2 ORDER BY id LIMIT 1;
SELECT count(*) AS retried FROM claim_outbox(10);
-- orderflow's own key of that cancellation notice: queued once.
SELECT enqueue('order_cancelled', find_order(:web, 'JB-4'), '{}', 'customer', format('orderflow:order_cancelled:%s', find_order(:web, 'JB-4')))
	 = (SELECT id FROM outbox WHERE topic = 'order_cancelled' AND order_id = find_order(:web, 'JB-4')) AS deduplicated;
-- An application's own key, twice: one item.
SELECT enqueue('shop.survey', find_order(:web, 'JB-4'), '{}', 'customer', 'survey:JB-4')
	 = enqueue('shop.survey', find_order(:web, 'JB-4'), '{}', 'customer', 'survey:JB-4') AS deduplicated;
SELECT find_order(:web, 'JB-4') AS jb4 \gset
-- orderflow's keys are its own: an application role cannot take one first
-- (which would suppress orderflow's notice), and nothing is queued.
SET ROLE orderflow_operator;
SELECT enqueue('order_backordered', NULL, '{}', 'customer', 'orderflow:order_backordered:1:1');
-- Nor by writing the table: a reserved key, an order it does not see, a
-- changed key are all refused (42501).
\set VERBOSITY sqlstate
INSERT INTO outbox (topic, dedupe_key) VALUES ('order_backordered', 'orderflow:order_backordered:1:2');
INSERT INTO outbox (topic, order_id, dedupe_key) VALUES ('shop.survey', :'jb4', 'survey:direct');
UPDATE outbox SET dedupe_key = 'orderflow:order_backordered:1:3';
\set VERBOSITY default
RESET ROLE;
SELECT count(*) AS squatted FROM outbox WHERE dedupe_key LIKE 'orderflow:order_backordered:1:%' OR dedupe_key = 'survey:direct';
\set VERBOSITY sqlstate
SELECT enqueue('Bad Topic', NULL);
SELECT enqueue('x', NULL, '{}', 'nobody');
SELECT claim_outbox(0);
SELECT mark_sent(-1);
SELECT expire_unpaid(0);
\set VERBOSITY default

-- Jobs registered with pg_cron: built-in ones and the slots later stages fill.
SELECT name, schedule, command FROM jobs ORDER BY name;
SELECT regexp_replace(jobname, ':[^:]+:', ':DB:') AS jobname, schedule, command FROM job_commands();

-- Orders allocated so far (reset.sql cancels them between runs), plus
-- baseline rows.
SELECT (SELECT count(*) FROM orderflow.orders WHERE state::text = 'allocated')
     + (SELECT count(*) FROM bench_rows);

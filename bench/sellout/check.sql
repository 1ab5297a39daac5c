-- After a sell-out run: held must be 1000, available 0, no drift.
SELECT (SELECT coalesce(sum(r.qty), 0) FROM orderflow.reservations r
          JOIN orderflow.skus s ON s.id = r.sku_id
         WHERE s.code = 'SOLD' AND r.status = 'held') AS held,
       orderflow.available('SOLD', 'W1') AS available,
       (SELECT count(*) FROM orderflow.check_stock()) AS check_stock_rows;

-- Units of SOLD held (reset.sql releases them between runs).
SELECT coalesce(sum(r.qty), 0) FROM orderflow.reservations r
  JOIN orderflow.skus s ON s.id = r.sku_id
 WHERE s.code = 'SOLD' AND r.status = 'held';

-- Give back what the previous run sold, so every run starts with 1000
-- units and no holds.
SELECT count(orderflow.release(r.id))
  FROM orderflow.reservations r JOIN orderflow.skus s ON s.id = r.sku_id
 WHERE s.code = 'SOLD' AND r.status = 'held';
CHECKPOINT;

-- The ordering key of a delivery whose subscription orders by key (`ordered: "key"`): the
-- deliveries of one subscription and key go one at a time, in event order. The index holds the
-- pending ones with a key only: what the dispatcher asks before it attempts one.
ALTER TABLE deliveries ADD COLUMN order_key TEXT;
CREATE INDEX deliveries_order_key ON deliveries (subscription_id, order_key, event_seq)
  WHERE order_key IS NOT NULL AND status = 'pending';

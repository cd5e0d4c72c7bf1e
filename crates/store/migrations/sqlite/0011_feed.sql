-- Pulled deliveries (the `poll` service) wait pending, parked at 9999-12-31T23:59:59Z, until their
-- consumer acknowledges them: a subscription's feed is read from this index, in event order.
CREATE INDEX deliveries_feed ON deliveries (subscription_id, event_seq)
  WHERE status = 'pending' AND next_attempt_at = 253402300799000;

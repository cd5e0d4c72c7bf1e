UPDATE d_a SET status = 'succeeded', attempts = 1, next_attempt_at = 5, lease = NULL, updated_at = 2
 FROM (SELECT lpad(i::text, 26, '0') AS id FROM generate_series(:b, :b + 63) i) v WHERE d_a.id = v.id AND d_a.lease = 'me';

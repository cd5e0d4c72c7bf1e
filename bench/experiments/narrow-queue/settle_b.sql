BEGIN;
DELETE FROM q_b WHERE delivery_id IN (SELECT lpad(i::text, 26, '0') FROM generate_series(:b, :b + 63) i) AND lease = 'me';
UPDATE l_b SET status = 'succeeded', attempts = 1, updated_at = 2 FROM (SELECT lpad(i::text, 26, '0') AS id FROM generate_series(:b, :b + 63) i) v WHERE l_b.id = v.id;
COMMIT;

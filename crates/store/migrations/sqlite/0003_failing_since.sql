-- Since when every delivery of the subscription has failed (NULL: its last outcome was a success).
ALTER TABLE subscriptions ADD COLUMN failing_since INTEGER;

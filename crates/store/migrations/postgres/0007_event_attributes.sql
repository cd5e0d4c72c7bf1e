-- Routing attributes beside an event's data (a JSON object of strings; NULL when it has none):
-- filters read them, payloads leave them out unless a subscription asks.
ALTER TABLE events ADD COLUMN attributes TEXT;

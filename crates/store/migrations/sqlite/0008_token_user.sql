-- The user a token acts for, when its application asked for one (wazo's user tokens): a
-- users/me subscription made with it receives only that user's events.
ALTER TABLE access_tokens ADD COLUMN user_id TEXT;

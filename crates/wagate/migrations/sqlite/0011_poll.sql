-- 0011: what voting in a poll needs: its options, how many may be chosen and its secret
-- (JSON), kept with the poll's message.
ALTER TABLE messages ADD COLUMN poll TEXT;

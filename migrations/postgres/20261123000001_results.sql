-- Content-addressed result cache: model answers, embeddings and judge verdicts by key.
-- The Postgres twin of migrations/sqlite: same versions, tables and columns (a test
-- keeps them equal); integers are BIGINT, times ISO-8601 text in UTC.
CREATE TABLE IF NOT EXISTS results (
    key        TEXT PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
);

-- Content-addressed result cache: model answers, embeddings and judge verdicts by key.
CREATE TABLE IF NOT EXISTS results (
    key        TEXT PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- The bot processes sharing this ledger, each seen at its last lease renewal: how many there are splits
-- Discord's per-channel allowance between them.
CREATE TABLE processes (
    name TEXT PRIMARY KEY,
    seen_at TEXT COLLATE "C" NOT NULL
);

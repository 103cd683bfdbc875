-- A ledger made by cifa-ingest v0.1.0 (commit 39670d7), the last release without a schema
-- version, dumped with Python's sqlite3 iterdump: its tables exactly as that release created them
-- (SQLite keeps each CREATE statement's text, less its IF NOT EXISTS), indexes, and a few rows of
-- each table: two bags and their files and source keys, two runs' outcomes, an unfinished
-- placement, a source that vanished, and an audit log of three records hash-chained by that
-- release's algorithm. Its user_version is 0, as v0.1.0 left it. Made by running v0.1.0's own
-- code: tests/ledger-fixtures/make-ledger-v0.1.0.py says how. Never regenerate it otherwise.
BEGIN TRANSACTION;
CREATE TABLE bag_files (
    work_id TEXT NOT NULL REFERENCES bags (work_id),
    path    TEXT NOT NULL,
    size    INTEGER NOT NULL,
    sha256  TEXT,
    sha512  TEXT,
    PRIMARY KEY (work_id, path)
);
INSERT INTO "bag_files" VALUES('cifa-v-0001','data/original/cifa-v-0001.mkv',200,'1111111111111111111111111111111111111111111111111111111111111111','22222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222');
INSERT INTO "bag_files" VALUES('cifa-v-0001','data/master/cifa-v-0001.mkv',100,'3333333333333333333333333333333333333333333333333333333333333333','44444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444');
INSERT INTO "bag_files" VALUES('cifa-v-0002','data/original/cifa-v-0002.mkv',200,'1111111111111111111111111111111111111111111111111111111111111111','22222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222');
INSERT INTO "bag_files" VALUES('cifa-v-0002','data/master/cifa-v-0002.mkv',100,'3333333333333333333333333333333333333333333333333333333333333333','44444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444');
CREATE TABLE bags (
    work_id          TEXT PRIMARY KEY,
    bag_path         TEXT NOT NULL,
    placed_at        TEXT NOT NULL,
    payload_oxum     TEXT NOT NULL,
    manifest_digests TEXT NOT NULL,
    source_keys      TEXT NOT NULL,
    software         TEXT NOT NULL
);
INSERT INTO "bags" VALUES('cifa-v-0001','bags/cifa-v-0001','2026-11-01T01:00:00+00:00','300.2','{"manifest-sha256.txt": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "manifest-sha512.txt": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}','["Youtube:abc123"]','cifa-ingest 0.1.0');
INSERT INTO "bags" VALUES('cifa-v-0002','bags/cifa-v-0002','2026-11-01T03:00:00+00:00','300.2','{"manifest-sha256.txt": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "manifest-sha512.txt": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}','["Generic:http://films.example/two.mkv"]','cifa-ingest 0.1.0');
CREATE TABLE fixity_chain_head (
    one       INTEGER PRIMARY KEY CHECK (one = 1),
    last_id   INTEGER NOT NULL,
    last_hash TEXT NOT NULL
);
INSERT INTO "fixity_chain_head" VALUES(1,3,'6a7928f60d3ccabc90b4e5d82f7e98c08e5c168ac524cb9e84df164de818a2ed');
CREATE TABLE fixity_checks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    bag_id      TEXT NOT NULL,
    checked_at  TEXT NOT NULL,
    software    TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    problems    TEXT NOT NULL,
    bytes_read  INTEGER NOT NULL,
    seconds     REAL NOT NULL,
    prev_hash   TEXT NOT NULL,
    record_hash TEXT NOT NULL
);
INSERT INTO "fixity_checks" VALUES(1,'cifa-v-0001','2026-11-02T02:00:00+00:00','cifa-ingest 0.1.0','intact','[]',300,0.01,'0000000000000000000000000000000000000000000000000000000000000000','66386350fcadb2029a3fd7f308e1882d0a186c2e851d22d26775281b02c5ef80');
INSERT INTO "fixity_checks" VALUES(2,'cifa-v-0002','2026-11-02T03:00:00+00:00','cifa-ingest 0.1.0','intact','[]',300,0.012,'66386350fcadb2029a3fd7f308e1882d0a186c2e851d22d26775281b02c5ef80','0d5c39af149dc6e6335f7537477b457d585c2172a63369b629ab8014bf7dc2b5');
INSERT INTO "fixity_checks" VALUES(3,'cifa-v-0001','2026-11-02T04:00:00+00:00','cifa-ingest 0.1.0','damaged','[{"kind": "checksum_mismatch", "note": "café", "path": "data/master/cifa-v-0001.mkv"}]',300,0.02,'0d5c39af149dc6e6335f7537477b457d585c2172a63369b629ab8014bf7dc2b5','6a7928f60d3ccabc90b4e5d82f7e98c08e5c168ac524cb9e84df164de818a2ed');
CREATE TABLE placements (
    work_id    TEXT PRIMARY KEY,
    record     TEXT NOT NULL,
    files      TEXT NOT NULL,
    started_at TEXT NOT NULL
);
INSERT INTO "placements" VALUES('cifa-v-0003','{"work_id": "cifa-v-0003", "bag_path": "bags/cifa-v-0003", "placed_at": "2026-11-01T07:00:00+00:00", "payload_oxum": "300.2", "manifest_digests": {"manifest-sha256.txt": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "manifest-sha512.txt": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}, "source_keys": ["Youtube:def456"], "software": "cifa-ingest 0.1.0"}','[["data/original/cifa-v-0003.mkv", 200, "1111111111111111111111111111111111111111111111111111111111111111", "22222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222"], ["data/master/cifa-v-0003.mkv", 100, "3333333333333333333333333333333333333333333333333333333333333333", "44444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444"]]','2026-11-01T08:00:00+00:00');
CREATE TABLE source_checks (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    work_id      TEXT NOT NULL,
    source_index INTEGER NOT NULL,
    url          TEXT NOT NULL,
    checked_at   TEXT NOT NULL,
    status       TEXT NOT NULL,
    details      TEXT NOT NULL,
    software     TEXT NOT NULL
);
INSERT INTO "source_checks" VALUES(1,'cifa-v-0001',1,'https://www.youtube.com/watch?v=abc123','2026-11-01T09:00:00+00:00','present','{}','cifa-ingest 0.1.0');
INSERT INTO "source_checks" VALUES(2,'cifa-v-0001',1,'https://www.youtube.com/watch?v=abc123','2026-11-02T00:00:00+00:00','present','{}','cifa-ingest 0.1.0');
INSERT INTO "source_checks" VALUES(3,'cifa-v-0001',1,'https://www.youtube.com/watch?v=abc123','2026-11-02T01:00:00+00:00','gone','{"http_status": 410}','cifa-ingest 0.1.0');
CREATE TABLE source_keys (
    source_key TEXT PRIMARY KEY,
    work_id    TEXT NOT NULL REFERENCES bags (work_id)
);
INSERT INTO "source_keys" VALUES('Youtube:abc123','cifa-v-0001');
INSERT INTO "source_keys" VALUES('Generic:http://films.example/two.mkv','cifa-v-0002');
CREATE TABLE work_outcomes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     TEXT NOT NULL,
    work_id    TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    error      TEXT,
    error_kind TEXT,
    seconds    REAL,
    at         TEXT NOT NULL
);
INSERT INTO "work_outcomes" VALUES(1,'run-1','cifa-v-0002','failed','no route
retried','network',4.5,'2026-11-01T00:00:00+00:00');
INSERT INTO "work_outcomes" VALUES(2,'run-1','cifa-v-0001','preserved',NULL,NULL,12.25,'2026-11-01T02:00:00+00:00');
INSERT INTO "work_outcomes" VALUES(3,'run-2','cifa-v-0002','preserved',NULL,NULL,10.0,'2026-11-01T05:00:00+00:00');
INSERT INTO "work_outcomes" VALUES(4,'run-2','cifa-v-0004','failed','HTTP Error 410: Gone','gone',0.5,'2026-11-01T06:00:00+00:00');
CREATE INDEX work_outcomes_work ON work_outcomes (work_id, at);
CREATE INDEX source_checks_source ON source_checks (work_id, source_index, id);
CREATE INDEX fixity_checks_bag ON fixity_checks (bag_id, id);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('work_outcomes',4);
INSERT INTO "sqlite_sequence" VALUES('source_checks',3);
INSERT INTO "sqlite_sequence" VALUES('fixity_checks',3);
COMMIT;

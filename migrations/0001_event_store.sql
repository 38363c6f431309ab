-- The event store, created exactly as eventsourcing 9.5.6's PostgreSQL recorders would create
-- it (CREATE_TABLE is off, so the schema has one home: these files).
--   ledger_events:    every domain event of every aggregate, one global order (notification_id)
--   stored_event_uuid: the composite type the recorder uses for its multi-row INSERT ... unnest()
--   ledger_tracking:  single-row tracking: one row per follower, its last processed position

CREATE TABLE ledger_events (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    PRIMARY KEY (originator_id, originator_version)
) WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01
);

CREATE UNIQUE INDEX ledger_events_notification_id_idx
    ON ledger_events (notification_id ASC);

CREATE TYPE stored_event_uuid AS (
    originator_id uuid,
    originator_version bigint,
    topic text,
    state bytea
);

CREATE TABLE ledger_tracking (
    application_name text,
    notification_id bigint,
    PRIMARY KEY (application_name)
) WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01
);
-- The recorder writes this marker when it creates the table itself; it means "single-row
-- tracking table" and keeps the library from trying to migrate the table.
INSERT INTO ledger_tracking VALUES ('__migration__', 1);

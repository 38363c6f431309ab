-- Read models (projections): which tables belong to which projection, and how a projection is
-- rebuilt from position 0 while the service keeps reading the live tables.
--
--   read_model_tables: every table a projection owns. Only these are ever copied, renamed or
--                      dropped by the functions below: a typo in a projection name cannot reach
--                      ledger_events or any other table.
--   ledger_tracking:   each projection tracks its position under 'projection.<name>' (and a
--                      rebuild under 'projection.<name>.rebuild'), next to the adjudicator's row,
--                      in the same single-row tracking table the eventsourcing recorder uses.
--
-- A projection writes its row changes and its tracking row in one transaction, after locking its
-- tracking row (SELECT ... FOR UPDATE), and then NOTIFYs 'projection_progress' with
-- '<name> <position>'; listeners (feeds, read-your-writes waits) wake on that.

CREATE TABLE read_model_tables (
    projection text NOT NULL,
    table_name text PRIMARY KEY,
    -- leaves room for the '_rebuild' / '_previous' suffixes within the 63-byte identifier limit
    CHECK (table_name ~ '^[a-z][a-z0-9_]*$' AND length(table_name) <= 48)
);

-- Start a rebuild: fresh, empty '<table>_rebuild' copies of every table of the projection (same
-- columns, defaults, constraints and indexes: LIKE ... INCLUDING ALL), and the rebuild's tracking
-- row at 0. A rebuild left behind by a crash is discarded and started again.
CREATE FUNCTION read_model_prepare_rebuild(p_projection text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    n integer := 0;
BEGIN
    FOR t IN SELECT table_name FROM read_model_tables WHERE projection = p_projection ORDER BY table_name LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I', t || '_rebuild');
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING ALL)', t || '_rebuild', t);
        n := n + 1;
    END LOOP;
    IF n = 0 THEN
        RAISE EXCEPTION 'no read model named %', p_projection USING ERRCODE = 'undefined_object';
    END IF;
    INSERT INTO ledger_tracking (application_name, notification_id)
    VALUES ('projection.' || p_projection || '.rebuild', 0)
    ON CONFLICT (application_name) DO UPDATE SET notification_id = 0;
    RETURN n;
END;
$$;

-- Swap a finished rebuild in, atomically: in the caller's transaction, drop (or keep as
-- '<table>_previous') each live table, rename its '_rebuild' copy to the live name, give the
-- indexes the live names back, and move the rebuild's position to the live tracking row. Readers
-- blocked on the rename resolve the name again after the commit and read the new table.
-- The caller must have caught the rebuild up to the live position (checked here).
CREATE FUNCTION read_model_swap_rebuild(p_projection text, p_keep_previous boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    live_name constant text := 'projection.' || p_projection;
    rebuild_name constant text := 'projection.' || p_projection || '.rebuild';
    live_position bigint;
    rebuilt_position bigint;
    t text;
    idx record;
    live_indexes jsonb;
BEGIN
    SELECT notification_id INTO live_position FROM ledger_tracking
     WHERE application_name = live_name FOR UPDATE;
    SELECT notification_id INTO rebuilt_position FROM ledger_tracking
     WHERE application_name = rebuild_name FOR UPDATE;
    IF rebuilt_position IS NULL THEN
        RAISE EXCEPTION 'no rebuild of % is in progress', p_projection USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF rebuilt_position < coalesce(live_position, 0) THEN
        RAISE EXCEPTION 'the rebuild of % (position %) is behind the live read model (position %)',
            p_projection, rebuilt_position, live_position USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    FOR t IN SELECT table_name FROM read_model_tables WHERE projection = p_projection ORDER BY table_name LOOP
        IF to_regclass(t || '_rebuild') IS NULL THEN
            RAISE EXCEPTION 'rebuild table %_rebuild is missing', t USING ERRCODE = 'undefined_table';
        END IF;
        -- The live index names, by definition (what follows USING, and uniqueness).
        SELECT coalesce(jsonb_object_agg(i.indisunique::text || substring(pg_get_indexdef(i.indexrelid) from ' USING .*$'), c.relname), '{}')
          INTO live_indexes
          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = t::regclass;
        IF p_keep_previous THEN
            EXECUTE format('DROP TABLE IF EXISTS %I', t || '_previous');
            EXECUTE format('ALTER TABLE %I RENAME TO %I', t, t || '_previous');
            FOR idx IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                        WHERE i.indrelid = (t || '_previous')::regclass LOOP
                EXECUTE format('ALTER INDEX %I RENAME TO %I', idx.relname, left(idx.relname, 50) || '_previous');
            END LOOP;
        ELSE
            EXECUTE format('DROP TABLE %I', t);
        END IF;
        EXECUTE format('ALTER TABLE %I RENAME TO %I', t || '_rebuild', t);
        FOR idx IN SELECT c.relname,
                          i.indisunique::text || substring(pg_get_indexdef(i.indexrelid) from ' USING .*$') AS body
                     FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                    WHERE i.indrelid = t::regclass LOOP
            IF live_indexes ? idx.body AND live_indexes ->> idx.body <> idx.relname THEN
                EXECUTE format('ALTER INDEX %I RENAME TO %I', idx.relname, live_indexes ->> idx.body);
            END IF;
        END LOOP;
    END LOOP;
    INSERT INTO ledger_tracking (application_name, notification_id) VALUES (live_name, rebuilt_position)
    ON CONFLICT (application_name) DO UPDATE SET notification_id = EXCLUDED.notification_id;
    DELETE FROM ledger_tracking WHERE application_name = rebuild_name;
    PERFORM pg_notify('projection_progress', p_projection || ' ' || rebuilt_position);
    RETURN rebuilt_position;
END;
$$;

-- Abandon a rebuild: drop its tables and its tracking row (the live read model is untouched).
CREATE FUNCTION read_model_discard_rebuild(p_projection text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT table_name FROM read_model_tables WHERE projection = p_projection LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I', t || '_rebuild');
    END LOOP;
    DELETE FROM ledger_tracking WHERE application_name = 'projection.' || p_projection || '.rebuild';
END;
$$;

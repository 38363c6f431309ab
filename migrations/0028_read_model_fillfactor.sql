-- Room on each page for a row to be updated where it is. A claim's rows in claim_status, the
-- explanations of benefits, the payments projection's copy (remittance_claims) and its payments
-- are inserted at submission and updated at its decision a moment later (and again when paid,
-- voided, replaced). With full pages (fillfactor 100) each new version went to whatever page the
-- free space map offered, and on a long history that is an old page anywhere in the table, freed
-- by vacuum: after a checkpoint, a whole-page image each. `make bench ARGS="--only service --growth
-- 1000000 --quick"` read its WAL back: 6.50 full-page images a paced call on the history (1.31 on
-- an empty ledger), of which claim_status 1.56, remittance_claims 1.52, payments 0.53 (README,
-- "Scale"). With room on the page, PostgreSQL puts the new version beside the old one; where no
-- indexed column changes (the explanations, remittance_claims) it is a HOT update that adds no
-- index entry either (the bench counted 18 % and 14 % of their updates HOT before). Rows are about
-- 1.4 kB (payments 0.2 kB): 70 leaves room for about two updates a page, 80 for several payments'.
ALTER TABLE claim_status SET (fillfactor = 70);
ALTER TABLE explanation_of_benefits SET (fillfactor = 70);
ALTER TABLE remittance_claims SET (fillfactor = 70);
ALTER TABLE payments SET (fillfactor = 80);

-- As in 0004, and a rebuild's copies keep their table's storage parameters (LIKE ... INCLUDING ALL
-- copies no fillfactor).
CREATE OR REPLACE FUNCTION read_model_prepare_rebuild(p_projection text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    options text[];
    n integer := 0;
BEGIN
    FOR t IN SELECT table_name FROM read_model_tables WHERE projection = p_projection ORDER BY table_name LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I', t || '_rebuild');
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING ALL)', t || '_rebuild', t);
        SELECT reloptions INTO options FROM pg_class WHERE oid = to_regclass(quote_ident(t));
        IF options IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I SET (%s)', t || '_rebuild', array_to_string(options, ', '));
        END IF;
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

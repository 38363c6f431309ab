-- The ledger is append-only. Triggers refuse UPDATE, DELETE and TRUNCATE for every role,
-- the table's owner included; only a superuser who disables triggers (or sets
-- session_replication_role) gets past them, and `claimsctl verify` and signed checkpoints
-- exist to catch that. Production: the service connects as a role granted only INSERT and
-- SELECT on ledger_events (see README, "Production database roles").

CREATE FUNCTION ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER ledger_events_guard
    BEFORE UPDATE OR DELETE ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER ledger_events_guard_truncate
    BEFORE TRUNCATE ON ledger_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

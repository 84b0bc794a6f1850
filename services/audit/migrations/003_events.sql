-- audit: the event log (issue 6). Append-only: the service role may only INSERT and SELECT
-- (004_append_only.sql hands the tables to a NOLOGIN owner); triggers reject UPDATE, DELETE and
-- TRUNCATE. Every event is a link of a SHA-256 hash chain in arrival order (seq): hash =
-- SHA-256(canonical length-prefixed encoding of the columns below and prev_hash), computed by
-- services/audit/chain.c (also used offline by phrctl audit verify). Times are stored UTC with
-- microsecond precision (they are hashed as microseconds since the epoch).
CREATE TABLE audit_events (
    seq bigint NOT NULL,
    event_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    actor_account_id uuid,
    actor_kind text NOT NULL,
    actor_org_id uuid,
    actor_role text,
    actor_session_id uuid,
    actor_ip text,
    actor_user_agent text,
    action text NOT NULL,
    target_type text NOT NULL,
    target_id text NOT NULL,
    target_patient_id uuid,
    target_org_id uuid,
    result text NOT NULL,
    reason text,
    source_service text NOT NULL,
    request_id text,
    details jsonb,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL,
    PRIMARY KEY (seq, recorded_at)
) PARTITION BY RANGE (recorded_at);
CREATE INDEX audit_events_target_org_idx ON audit_events (target_org_id, recorded_at);
CREATE INDEX audit_events_patient_idx ON audit_events (target_patient_id, recorded_at);
CREATE INDEX audit_events_actor_idx ON audit_events (actor_account_id, recorded_at);
CREATE INDEX audit_events_action_idx ON audit_events (action);

-- Idempotency: every event_id ever accepted (kept when a partition is dropped), with its seq:
-- the highest seq here also reveals rows cut from the tail of the chain.
CREATE TABLE audit_event_ids (
    event_id uuid PRIMARY KEY,
    seq bigint NOT NULL UNIQUE
);

-- Signed checkpoints: Ed25519 over (seq, hash, signed_at) (chain.h). Never deleted.
CREATE TABLE checkpoints (
    seq bigint PRIMARY KEY,
    hash bytea NOT NULL,
    signed_at timestamptz NOT NULL,
    signature bytea NOT NULL,
    key_id text NOT NULL
);

-- Retention: a monthly partition may be dropped only once it has been exported and the
-- export verified (a row here); the drop itself is recorded in dropped_at.
CREATE TABLE audit_archives (
    partition_name text PRIMARY KEY,
    from_seq bigint NOT NULL,
    to_seq bigint NOT NULL,
    export_sha256 text NOT NULL,
    exported_at timestamptz NOT NULL,
    verified_at timestamptz NOT NULL
);
CREATE TABLE audit_partition_drops (
    partition_name text PRIMARY KEY,
    dropped_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION audit_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit log is append-only: % on % rejected', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_reject_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change();
CREATE TRIGGER audit_event_ids_append_only BEFORE UPDATE OR DELETE ON audit_event_ids
    FOR EACH ROW EXECUTE FUNCTION audit_reject_change();
CREATE TRIGGER audit_event_ids_no_truncate BEFORE TRUNCATE ON audit_event_ids
    FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_reject_change();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change();
CREATE TRIGGER audit_archives_append_only BEFORE UPDATE OR DELETE ON audit_archives
    FOR EACH ROW EXECUTE FUNCTION audit_reject_change();

-- Monthly partitions (JST months) from |months_back| before to |months_ahead| after now.
-- SECURITY DEFINER: after 004 it runs as the tables' owner, the service role cannot.
CREATE FUNCTION audit_ensure_partitions(months_back int, months_ahead int) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    m timestamp := date_trunc('month', now() AT TIME ZONE 'Asia/Tokyo');
    lo timestamp;
    name text;
    made int := 0;
BEGIN
    FOR i IN -least(greatest(months_back, 0), 120)..least(greatest(months_ahead, 0), 24) LOOP
        lo := m + make_interval(months => i);
        name := 'audit_events_' || to_char(lo, 'YYYYMM');
        CONTINUE WHEN to_regclass(name) IS NOT NULL;
        CONTINUE WHEN EXISTS (SELECT 1 FROM audit_partition_drops d WHERE d.partition_name = name);
        EXECUTE format('CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)',
                       name, to_char(lo, 'YYYY-MM-DD"T00:00:00+09:00"'),
                       to_char(lo + interval '1 month', 'YYYY-MM-DD"T00:00:00+09:00"'));
        EXECUTE format('CREATE TRIGGER no_truncate BEFORE TRUNCATE ON %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change()', name);
        made := made + 1;
    END LOOP;
    RETURN made;
END;
$$;

-- Drops the monthly partitions that ended more than |retention_days| ago and whose export was
-- recorded and verified in audit_archives (covering every seq the partition holds).
-- Checkpoints and event ids are kept. Returns the names dropped.
CREATE FUNCTION audit_drop_expired(retention_days int) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    p record;
    lo bigint;
    hi bigint;
BEGIN
    IF retention_days < 1 THEN
        RAISE EXCEPTION 'retention_days must be >= 1';
    END IF;
    FOR p IN
        SELECT c.relname AS name,
               (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]
                   ::timestamptz AS upper_bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'audit_events'::regclass
    LOOP
        CONTINUE WHEN p.upper_bound > now() - make_interval(days => retention_days);
        EXECUTE format('SELECT min(seq), max(seq) FROM %I', p.name) INTO lo, hi;
        CONTINUE WHEN NOT EXISTS (
            SELECT 1 FROM audit_archives a
            WHERE a.partition_name = p.name
              AND (lo IS NULL OR (a.from_seq <= lo AND a.to_seq >= hi)));
        EXECUTE format('DROP TABLE %I', p.name);
        INSERT INTO audit_partition_drops (partition_name) VALUES (p.name);
        RETURN NEXT p.name;
    END LOOP;
END;
$$;

SELECT audit_ensure_partitions(1, 3);

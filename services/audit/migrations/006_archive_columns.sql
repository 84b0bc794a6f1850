-- phr-migrate: owner=phr_audit_owner
-- audit: what services/audit/archive.c records about an archive (issue 6) and the stricter
-- drop that relies on it. audit_archives gains the archive's event count, its file and the
-- hashes that link the chain across a dropped range (the verifiers accept a seq gap only where
-- such an archive ends); audit_drop_expired then drops a partition only when an archive holds
-- exactly its seq range, event count and last hash (an empty partition: an archive of 0
-- events). Checkpoints and event ids are kept.
--
-- An owner migration (first line; common/db_migrate.h): after 004 the table and the function
-- belong to phr_audit_owner, which the service role cannot act as, so an operator applies it
-- with `phrctl migrate audit` (deploy/OPERATIONS.md); the service stays not ready, naming it,
-- until then. Idempotent: a database whose 003 already had these columns (an unreleased edit
-- of 003 that this file replaces) passes unchanged. The defaults only fill rows written before
-- (none: nothing wrote audit_archives before archive.c) and are dropped again.
ALTER TABLE audit_archives
    ADD COLUMN IF NOT EXISTS events bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS archive_file text NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS first_prev_hash bytea,
    ADD COLUMN IF NOT EXISTS last_hash bytea;
ALTER TABLE audit_archives
    ALTER COLUMN events DROP DEFAULT,
    ALTER COLUMN archive_file DROP DEFAULT;

CREATE OR REPLACE FUNCTION audit_drop_expired(retention_days int) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    p record;
    lo bigint;
    hi bigint;
    n bigint;
    last bytea;
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
        EXECUTE format('SELECT min(seq), max(seq), count(*) FROM %I', p.name) INTO lo, hi, n;
        EXECUTE format('SELECT hash FROM %I WHERE seq = $1 LIMIT 1', p.name) INTO last USING hi;
        CONTINUE WHEN NOT EXISTS (
            SELECT 1 FROM audit_archives a
            WHERE a.partition_name = p.name AND a.events = n
              AND (n = 0 OR (a.from_seq = lo AND a.to_seq = hi AND a.last_hash = last)));
        EXECUTE format('DROP TABLE %I', p.name);
        INSERT INTO audit_partition_drops (partition_name) VALUES (p.name);
        RETURN NEXT p.name;
    END LOOP;
END;
$$;

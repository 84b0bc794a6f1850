-- audit: make the log append-only for the service role. When the operator provisioned the
-- NOLOGIN role phr_audit_owner and made this role a member WITH ADMIN OPTION (deploy/stack.sh
-- does), the append-only tables and the SECURITY DEFINER functions are handed to that owner,
-- this role keeps INSERT and SELECT only, and it then gives up its membership: from here on it
-- can neither UPDATE, DELETE nor TRUNCATE, nor drop the triggers. Without that role the owner
-- (this role) at least revokes those privileges from itself; the triggers stay in both cases.
DO $$
DECLARE
    t text;
    sealed boolean := EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'phr_audit_owner')
        AND pg_has_role(current_user, 'phr_audit_owner', 'MEMBER');
BEGIN
    IF sealed THEN
        GRANT USAGE, CREATE ON SCHEMA public TO phr_audit_owner;
    END IF;
    FOR t IN SELECT unnest(ARRAY['audit_events', 'audit_event_ids', 'checkpoints',
                                 'audit_archives', 'audit_partition_drops'])
             UNION ALL
             SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'audit_events'::regclass
    LOOP
        IF sealed THEN
            EXECUTE format('ALTER TABLE %I OWNER TO phr_audit_owner', t);
            EXECUTE format('GRANT SELECT, INSERT ON %I TO %I', t, current_user);
        ELSE
            EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON %I FROM %I',
                           t, current_user);
        END IF;
    END LOOP;
    IF sealed THEN
        ALTER FUNCTION audit_ensure_partitions(int, int) OWNER TO phr_audit_owner;
        ALTER FUNCTION audit_drop_expired(int) OWNER TO phr_audit_owner;
        ALTER FUNCTION audit_reject_change() OWNER TO phr_audit_owner;
        EXECUTE format('REVOKE phr_audit_owner FROM %I', current_user);
    END IF;
END;
$$;

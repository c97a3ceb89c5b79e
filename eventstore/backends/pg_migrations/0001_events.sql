-- 0001: the event table, its head row, indexes and the append-only guard.
-- Runs inside one transaction, with search_path set to the store's schema.

-- Why data_json/metadata_json are text and data/metadata are generated JSONB:
-- the chain hash covers the canonical JSON text, and JSONB normalizes numbers (1e300 becomes
-- 1000...0, -0.0 becomes 0.0), reorders keys and drops \u0000, so a document read back from
-- JSONB cannot always be re-encoded to the text that was hashed. The text is authoritative
-- (reads and verify use it); the JSONB copy exists for SQL queries and indexes on content.
CREATE TABLE orchestrail_events (
    position        bigint      NOT NULL PRIMARY KEY,
    id              text        NOT NULL,
    stream          text        COLLATE "C" NOT NULL,
    version         bigint      NOT NULL,
    type            text        COLLATE "C" NOT NULL,
    actor           text        COLLATE "C" NOT NULL,
    correlation_id  text        COLLATE "C",
    causation_id    text,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    data_json       text        NOT NULL,
    metadata_json   text        NOT NULL,
    prev_hash       text,
    hash            text        NOT NULL,
    data            jsonb GENERATED ALWAYS AS (
        CASE WHEN strpos(data_json, '\u0000') > 0
             THEN replace(data_json, '\u0000', '\ufffd')::jsonb
             ELSE data_json::jsonb END) STORED,
    metadata        jsonb GENERATED ALWAYS AS (
        CASE WHEN strpos(metadata_json, '\u0000') > 0
             THEN replace(metadata_json, '\u0000', '\ufffd')::jsonb
             ELSE metadata_json::jsonb END) STORED,
    CONSTRAINT orchestrail_events_id_key UNIQUE (id),
    CONSTRAINT orchestrail_events_stream_version_key UNIQUE (stream, version),
    CONSTRAINT orchestrail_events_version_check CHECK (version >= 0),
    CONSTRAINT orchestrail_events_position_check CHECK (position > 0)
);

-- Filters, each with position so the first page of a filtered query is an index range scan
-- already in order. Streams use the (stream, version) key (versions rise with positions).
CREATE INDEX orchestrail_events_type_idx ON orchestrail_events (type, position);
CREATE INDEX orchestrail_events_actor_idx ON orchestrail_events (actor, position);
CREATE INDEX orchestrail_events_correlation_idx ON orchestrail_events (correlation_id, position)
    WHERE correlation_id IS NOT NULL;
CREATE INDEX orchestrail_events_occurred_idx ON orchestrail_events (occurred_at);

-- The head: the last position ever assigned. Appenders lock this one row (FOR UPDATE) for
-- the length of their transaction, which makes positions gapless and commit-ordered and,
-- unlike LOCK TABLE ... EXCLUSIVE, needs no UPDATE/DELETE privilege on the event table.
-- It also remembers the head after retention, so verify can tell truncation from retention.
CREATE TABLE orchestrail_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position  bigint  NOT NULL CHECK (position >= 0)
);
INSERT INTO orchestrail_head (singleton, position) VALUES (true, 0);

-- Append-only: UPDATE and TRUNCATE are always refused; DELETE only inside a retention
-- transaction, which sets the transaction-local orchestrail.retention = 'on'. This guards
-- against accidents and buggy tools; against a hostile database user use the roles in
-- docs/backends.md (no UPDATE/DELETE/TRUNCATE privilege at all).
CREATE FUNCTION orchestrail_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'orchestrail_events'
       AND coalesce(current_setting('orchestrail.retention', true), '') = 'on'
    THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'orchestrail: % on % refused: the event log is append-only '
        '(only retention may delete whole streams)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER orchestrail_events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON orchestrail_events
    FOR EACH STATEMENT EXECUTE FUNCTION orchestrail_refuse_change();

CREATE FUNCTION orchestrail_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.position < OLD.position THEN
        RAISE EXCEPTION 'orchestrail: the head position only moves forward (% -> %)',
            OLD.position, NEW.position USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER orchestrail_head_forward
    BEFORE UPDATE ON orchestrail_head
    FOR EACH ROW EXECUTE FUNCTION orchestrail_head_forward();

CREATE TRIGGER orchestrail_head_append_only
    BEFORE DELETE OR TRUNCATE ON orchestrail_head
    FOR EACH STATEMENT EXECUTE FUNCTION orchestrail_refuse_change();

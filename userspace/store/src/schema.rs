//! The schema, as forward-only migrations. `PRAGMA user_version` is the number of migrations
//! applied; a migration, once released, is never edited: change the schema by appending one.

use rusqlite::Connection;

use super::{Result, Store, StoreError, TxError};

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: suspensions, audit log, tenant index.
    r#"
    CREATE TABLE suspensions (
        id          INTEGER PRIMARY KEY,
        tenant      TEXT    NOT NULL,
        reason      TEXT    NOT NULL,
        actor       TEXT    NOT NULL,
        since       INTEGER NOT NULL,
        lifted_at   INTEGER,
        lifted_by   TEXT,
        lift_reason TEXT,
        -- a lift is recorded whole or not at all
        CHECK ((lifted_at IS NULL) = (lifted_by IS NULL)
           AND (lifted_at IS NULL) = (lift_reason IS NULL))
    ) STRICT;
    -- at most one active suspension per tenant, whatever the code above does
    CREATE UNIQUE INDEX suspensions_active ON suspensions (tenant) WHERE lifted_at IS NULL;
    CREATE INDEX suspensions_by_tenant ON suspensions (tenant, since);

    CREATE TABLE audit (
        -- AUTOINCREMENT: ids are never reused, so an id names one event forever
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        at     INTEGER NOT NULL,
        actor  TEXT    NOT NULL,
        action TEXT    NOT NULL,
        target TEXT    NOT NULL,
        detail TEXT    NOT NULL CHECK (json_valid(detail))
    ) STRICT;
    CREATE INDEX audit_by_time ON audit (at);
    -- the log is evidence: rows are appended, never rewritten
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

    CREATE TABLE tenant_index (
        tenant TEXT    PRIMARY KEY,
        slot   INTEGER NOT NULL UNIQUE CHECK (slot BETWEEN 0 AND 4294967295)
    ) STRICT;
    "#,
    // 2: flags for review, the actions taken on them, header samples as evidence.
    r#"
    CREATE TABLE flags (
        -- AUTOINCREMENT: a flag id named in a notice or the audit log names one flag forever
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant            TEXT    NOT NULL,
        kind              TEXT    NOT NULL,
        state             TEXT    NOT NULL
            CHECK (state IN ('open', 'notified', 'acked', 'dismissed', 'escalated')),
        first_seen        INTEGER NOT NULL,
        last_seen         INTEGER NOT NULL CHECK (last_seen >= first_seen),
        policy_generation INTEGER NOT NULL CHECK (policy_generation >= 0),
        thresholds        TEXT    NOT NULL CHECK (json_valid(thresholds)),
        figures           TEXT    NOT NULL CHECK (json_valid(figures)),
        top_targets       TEXT    NOT NULL CHECK (json_valid(top_targets)),
        deadline          INTEGER,
        state_reason      TEXT,
        samples_refused   INTEGER NOT NULL DEFAULT 0 CHECK (samples_refused >= 0),
        -- a dismissal always says why, whatever the code above does
        CHECK (state <> 'dismissed' OR state_reason IS NOT NULL)
    ) STRICT;
    CREATE INDEX flags_by_last_seen ON flags (last_seen);
    CREATE INDEX flags_by_tenant ON flags (tenant, last_seen);

    CREATE TABLE flag_actions (
        id      INTEGER PRIMARY KEY,
        flag_id INTEGER NOT NULL REFERENCES flags (id),
        at      INTEGER NOT NULL,
        action  TEXT    NOT NULL
            CHECK (action IN ('observe', 'flag', 'throttle', 'block', 'suspend')),
        target  TEXT    NOT NULL,
        until   INTEGER,
        actor   TEXT    NOT NULL
    ) STRICT;
    CREATE INDEX flag_actions_by_flag ON flag_actions (flag_id, at);

    CREATE TABLE flag_samples (
        id       INTEGER PRIMARY KEY,
        flag_id  INTEGER NOT NULL REFERENCES flags (id),
        at_us    INTEGER NOT NULL,
        data     BLOB    NOT NULL CHECK (length(data) <= 256),
        orig_len INTEGER NOT NULL CHECK (orig_len BETWEEN length(data) AND 4294967295)
    ) STRICT;
    CREATE INDEX flag_samples_by_flag ON flag_samples (flag_id, id);
    -- evidence is bounded per flag (flags::MAX_SAMPLES_PER_FLAG)
    CREATE TRIGGER flag_samples_bounded BEFORE INSERT ON flag_samples
        WHEN (SELECT count(*) FROM flag_samples WHERE flag_id = NEW.flag_id) >= 64
        BEGIN SELECT RAISE(ABORT, 'at most 64 samples per flag'); END;
    "#,
    // 3: whether a flag action was applied, extended or lifted (rows before it: applied).
    r#"
    ALTER TABLE flag_actions ADD COLUMN decision TEXT NOT NULL DEFAULT 'apply'
        CHECK (decision IN ('apply', 'extend', 'lift'));
    "#,
    // 4: the webhook outbox (clause 3.1.3.14 notifications survive a restart), and when a
    // notified flag's deadline passed without suspending (so it is reported once).
    r#"
    CREATE TABLE notifications (
        -- AUTOINCREMENT: the id is the notification's identity for the receiver's dedupe
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        flag_id         INTEGER NOT NULL REFERENCES flags (id),
        tenant          TEXT    NOT NULL,
        event           TEXT    NOT NULL,
        body            TEXT    NOT NULL CHECK (json_valid(body)),
        queued_at       INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        delivered_at    INTEGER,
        abandoned_at    INTEGER,
        CHECK (delivered_at IS NULL OR abandoned_at IS NULL)
    ) STRICT;
    CREATE INDEX notifications_pending ON notifications (flag_id, id)
        WHERE delivered_at IS NULL AND abandoned_at IS NULL;
    ALTER TABLE flags ADD COLUMN deadline_passed_at INTEGER;
    "#,
    // 5: the suspension sequence (one number per suspend and unsuspend, also kept by the
    // kernel's pinned suspension record and the events log, so a lost or rolled-back
    // database is recognised at start), and each suspension's addresses when it was
    // imposed (they stay suspended whatever the policy says until it is lifted). A
    // database from before starts at the number of changes it holds, so a suspension it
    // had is never at sequence 0.
    r#"
    ALTER TABLE suspensions ADD COLUMN addresses TEXT NOT NULL DEFAULT '[]'
        CHECK (json_valid(addresses));
    ALTER TABLE suspensions ADD COLUMN seq INTEGER;
    ALTER TABLE suspensions ADD COLUMN lifted_seq INTEGER;
    CREATE TABLE suspension_sequence (
        id  INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL CHECK (seq >= 0)
    ) STRICT;
    INSERT INTO suspension_sequence (id, seq) VALUES (1,
        (SELECT count(*) FROM suspensions)
        + (SELECT count(*) FROM suspensions WHERE lifted_at IS NOT NULL));
    "#,
    // 6: samples keep the kernel's nanosecond time of each frame (older rows: at_us only).
    r#"
    ALTER TABLE flag_samples ADD COLUMN at_ns INTEGER;
    "#,
    // 7: fleet mode (docs/fleet-design.md): the last fleet state this node applied, so a
    // restart while etcd is unreachable enforces it.
    r#"
    CREATE TABLE fleet_state (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        revision   INTEGER NOT NULL CHECK (revision >= 0),
        generation INTEGER NOT NULL CHECK (generation >= 0),
        defaults   TEXT,
        -- {tenant id: fragment}, each fragment JSON text
        tenants    TEXT    NOT NULL CHECK (json_valid(tenants)),
        -- tenants suspended because the fleet suspended them
        suspended  TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(suspended)),
        saved_at   INTEGER NOT NULL
    ) STRICT;
    "#,
    // 8: each tenant's traffic per history step (history.rs): bounded in time and in
    // tenants per step, for the console's charts.
    r#"
    CREATE TABLE tenant_history (
        tenant          TEXT    NOT NULL,
        at              INTEGER NOT NULL,
        out_bytes       INTEGER NOT NULL CHECK (out_bytes >= 0),
        in_bytes        INTEGER NOT NULL CHECK (in_bytes >= 0),
        out_packets     INTEGER NOT NULL CHECK (out_packets >= 0),
        in_packets      INTEGER NOT NULL CHECK (in_packets >= 0),
        dropped_packets INTEGER NOT NULL CHECK (dropped_packets >= 0),
        PRIMARY KEY (tenant, at)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX tenant_history_by_time ON tenant_history (at);
    "#,
    // 9: the fleet state's tenants one row each, so a one-tenant change saves one row
    // (a 100,000-tenant state is some 25 MB of JSON); `fleet_state.tenants` stays `{}`.
    r#"
    CREATE TABLE fleet_tenants (
        id       TEXT NOT NULL PRIMARY KEY,
        fragment TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;
    INSERT INTO fleet_tenants (id, fragment)
        SELECT j.key, j.value FROM fleet_state, json_each(fleet_state.tenants) AS j;
    UPDATE fleet_state SET tenants = '{}';
    "#,
];

/// The schema version this build writes and understands.
pub(super) const VERSION: i64 = MIGRATIONS.len() as i64;

/// The schema version of the database behind `conn`.
pub(super) fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Refuses a database written by a newer schema, before anything touches it.
pub(super) fn check_not_newer(conn: &Connection, path: &std::path::Path) -> Result<()> {
    let found = version(conn).map_err(|source| StoreError::Sqlite {
        path: path.to_owned(),
        op: "read schema version",
        source,
    })?;
    too_new(found, path)
}

fn too_new(found: i64, path: &std::path::Path) -> Result<()> {
    if found > VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: VERSION,
        });
    }
    Ok(())
}

/// Applies the pending migrations, all in one transaction: a crash leaves the old schema.
pub(super) fn migrate(store: &Store) -> Result<()> {
    store.write("migrate schema", |tx| {
        // Checked again under the write lock: another process may have migrated meanwhile.
        let found = version(tx)?;
        too_new(found, &store.path).map_err(TxError::Store)?;
        // A negative version is no warden's; starting from scratch then fails on the
        // existing tables, which is the right outcome for a foreign database.
        let start = usize::try_from(found).unwrap_or(0);
        for sql in MIGRATIONS.iter().skip(start) {
            tx.execute_batch(sql)?;
        }
        if found < VERSION {
            tx.pragma_update(None, "user_version", VERSION)?;
        }
        Ok(())
    })
}

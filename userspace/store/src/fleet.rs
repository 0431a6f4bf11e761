//! Fleet mode's local copy (docs/fleet-design.md): the last fleet state this node
//! applied, read at start so that a restart while etcd is unreachable enforces it.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension as _};

use super::{Result, Store, StoreError, TxError};

/// The fleet state a node last applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetState {
    /// The etcd revision it was read at.
    pub revision: i64,
    /// The fleet's policy generation.
    pub generation: u64,
    /// The `defaults` fragment.
    pub defaults: Option<String>,
    /// Each tenant's fragment, by id.
    pub tenants: BTreeMap<String, String>,
    /// The tenants this node suspended because the fleet did (lifted when the fleet
    /// lifts them; the node's own suspensions are not the fleet's to lift).
    pub suspended: Vec<String>,
}

impl Store {
    /// Replaces the saved fleet state, atomically: every tenant row is written again.
    pub fn save_fleet_state(&self, state: &FleetState) -> Result<()> {
        self.save_fleet(state, None)
    }

    /// Saves `state`, atomically, writing only the rows of the tenants in `changed` (as
    /// `state` has them: a tenant it lacks is deleted); the other rows must already be
    /// as in `state` (saved by an earlier call). With no tenants, only the revision,
    /// generation, defaults and suspensions are written.
    pub fn save_fleet_changes(&self, state: &FleetState, changed: &[&str]) -> Result<()> {
        self.save_fleet(state, Some(changed))
    }

    fn save_fleet(&self, state: &FleetState, changed: Option<&[&str]>) -> Result<()> {
        let suspended = serde_json::to_string(&state.suspended).map_err(json_error)?;
        let generation = i64::try_from(state.generation).map_err(|_| {
            StoreError::FleetState(format!("generation {} too large", state.generation))
        })?;
        let now = self.now();
        self.write("save fleet state", |tx| {
            tx.execute(
                "INSERT OR REPLACE INTO fleet_state \
                 (id, revision, generation, defaults, tenants, suspended, saved_at) \
                 VALUES (1, ?1, ?2, ?3, '{}', ?4, ?5)",
                params![state.revision, generation, state.defaults, suspended, now],
            )?;
            let mut put =
                tx.prepare("INSERT OR REPLACE INTO fleet_tenants (id, fragment) VALUES (?1, ?2)")?;
            match changed {
                None => {
                    tx.execute("DELETE FROM fleet_tenants", [])?;
                    for (id, fragment) in &state.tenants {
                        put.execute(params![id, fragment])?;
                    }
                }
                Some(ids) => {
                    let mut delete = tx.prepare("DELETE FROM fleet_tenants WHERE id = ?1")?;
                    for id in ids {
                        match state.tenants.get(*id) {
                            Some(fragment) => put.execute(params![id, fragment])?,
                            None => delete.execute(params![id])?,
                        };
                    }
                }
            }
            Ok::<_, TxError>(())
        })
    }

    /// The saved fleet state, if this node ever applied one.
    pub fn fleet_state(&self) -> Result<Option<FleetState>> {
        type Row = (i64, i64, Option<String>, String, String);
        let read = self.read("read fleet state", |conn| {
            let row: Option<Row> = conn
                .query_row(
                    "SELECT revision, generation, defaults, tenants, suspended \
                     FROM fleet_state WHERE id = 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?;
            let mut tenants = BTreeMap::new();
            if row.is_some() {
                let mut rows = conn.prepare("SELECT id, fragment FROM fleet_tenants")?;
                let rows = rows.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                for row in rows {
                    let (id, fragment): (String, String) = row?;
                    tenants.insert(id, fragment);
                }
            }
            Ok((row, tenants))
        })?;
        let (Some((revision, generation, defaults, legacy, suspended)), mut tenants) = read else {
            return Ok(None);
        };
        // Rows saved before migration 9 were moved by it; `{}` since.
        let legacy: BTreeMap<String, String> = serde_json::from_str(&legacy).map_err(json_error)?;
        for (id, fragment) in legacy {
            tenants.entry(id).or_insert(fragment);
        }
        Ok(Some(FleetState {
            revision,
            generation: u64::try_from(generation).unwrap_or(0),
            defaults,
            tenants,
            suspended: serde_json::from_str(&suspended).map_err(json_error)?,
        }))
    }
}

fn json_error(e: serde_json::Error) -> StoreError {
    StoreError::FleetState(format!("JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_state_survives_a_reopen_and_is_replaced_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = FleetState {
            revision: 42,
            generation: 3,
            defaults: Some(r#"{"smtp":"block"}"#.into()),
            tenants: BTreeMap::from([("acme".into(), r#"{"id":"acme"}"#.into())]),
            suspended: vec!["acme".into()],
        };
        {
            let store = Store::open(dir.path()).expect("open");
            assert_eq!(store.fleet_state().expect("read"), None);
            store.save_fleet_state(&state).expect("save");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.fleet_state().expect("read"), Some(state.clone()));
        state.tenants.clear();
        state.revision = 43;
        store.save_fleet_state(&state).expect("save");
        assert_eq!(store.fleet_state().expect("read"), Some(state));
    }

    #[test]
    fn saving_changes_writes_the_named_tenants_and_keeps_the_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = FleetState {
            revision: 7,
            generation: 2,
            defaults: None,
            tenants: (0..50)
                .map(|i| (format!("t{i:02}"), format!(r#"{{"id":"t{i:02}"}}"#)))
                .collect(),
            suspended: Vec::new(),
        };
        let store = Store::open(dir.path()).expect("open");
        store.save_fleet_state(&state).expect("save");
        state
            .tenants
            .insert("t03".into(), r#"{"id":"t03","smtp":"allow"}"#.into());
        state.tenants.remove("t04");
        state.tenants.insert("t99".into(), r#"{"id":"t99"}"#.into());
        state.revision = 9;
        state.generation = 3;
        state.suspended = vec!["t07".into()];
        store
            .save_fleet_changes(&state, &["t03", "t04", "t99"])
            .expect("save changes");
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.fleet_state().expect("read"), Some(state.clone()));
        // A tenant changed but not named is not written: only what is named is.
        let mut unsaved = state.clone();
        unsaved.tenants.insert("t05".into(), "changed".into());
        store.save_fleet_changes(&unsaved, &[]).expect("save meta");
        assert_eq!(store.fleet_state().expect("read"), Some(state));
    }
}

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
    /// Replaces the saved fleet state, atomically.
    pub fn save_fleet_state(&self, state: &FleetState) -> Result<()> {
        let tenants = serde_json::to_string(&state.tenants).map_err(json_error)?;
        let suspended = serde_json::to_string(&state.suspended).map_err(json_error)?;
        let generation = i64::try_from(state.generation).map_err(|_| {
            StoreError::FleetState(format!("generation {} too large", state.generation))
        })?;
        let now = self.now();
        self.write("save fleet state", |tx| {
            tx.execute(
                "INSERT OR REPLACE INTO fleet_state \
                 (id, revision, generation, defaults, tenants, suspended, saved_at) \
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    state.revision,
                    generation,
                    state.defaults,
                    tenants,
                    suspended,
                    now
                ],
            )?;
            Ok::<_, TxError>(())
        })
    }

    /// The saved fleet state, if this node ever applied one.
    pub fn fleet_state(&self) -> Result<Option<FleetState>> {
        let row: Option<(i64, i64, Option<String>, String, String)> =
            self.read("read fleet state", |conn| {
                conn.query_row(
                    "SELECT revision, generation, defaults, tenants, suspended \
                     FROM fleet_state WHERE id = 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
            })?;
        let Some((revision, generation, defaults, tenants, suspended)) = row else {
            return Ok(None);
        };
        Ok(Some(FleetState {
            revision,
            generation: u64::try_from(generation).unwrap_or(0),
            defaults,
            tenants: serde_json::from_str(&tenants).map_err(json_error)?,
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
}

//! etcd roles and users for a fleet (`warden fleet init`, docs/fleet-design.md "RBAC"):
//! the controller may read and write the whole prefix; a node may read the policy, the
//! suspensions, the layout and the decisions taken for it, and write only its own
//! registration and flags. Users have no password: they authenticate with a client
//! certificate whose CN is the user name (etcd's `--client-cert-auth`).

use etcd_client::{Permission, UserAddOptions};

use crate::keys::range_end;
use crate::{Fleet, FleetError};

/// The etcd user (and role) of the controllers.
pub const CONTROLLER_USER: &str = "warden-controller";

/// The etcd user (and role) of node `node`.
pub fn node_user(node: &str) -> String {
    format!("warden-node-{node}")
}

/// One grant: read or read-write, on a key or every key under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The key, or the prefix when `prefix`.
    pub key: String,
    /// Every key starting with `key`.
    pub prefix: bool,
    /// Write as well as read.
    pub write: bool,
}

fn grant(key: String, prefix: bool, write: bool) -> Grant {
    Grant { key, prefix, write }
}

impl Fleet {
    /// What the controllers' role grants.
    pub fn controller_grants(&self) -> Vec<Grant> {
        vec![grant(self.layout.prefix().to_owned(), true, true)]
    }

    /// What node `node`'s role grants.
    pub fn node_grants(&self, node: &str) -> Result<Vec<Grant>, FleetError> {
        let l = &self.layout;
        Ok(vec![
            grant(l.layout(), false, false),
            grant(l.policy_dir(), true, false),
            grant(l.suspensions_dir(), true, false),
            grant(l.node_decisions_dir(node)?, true, false),
            grant(l.node(node)?, false, true),
            grant(l.node_flags_dir(node)?, true, true),
        ])
    }

    /// Creates (or completes) the controllers' and each node's role and user, idempotent.
    pub async fn init_rbac(&self, nodes: &[String]) -> Result<(), FleetError> {
        self.role_with(CONTROLLER_USER, &self.controller_grants())
            .await?;
        for node in nodes {
            let grants = self.node_grants(node)?;
            self.role_with(&node_user(node), &grants).await?;
        }
        Ok(())
    }

    /// Role `name` with exactly `grants`, and user `name` (no password) holding it.
    async fn role_with(&self, name: &str, grants: &[Grant]) -> Result<(), FleetError> {
        let mut client = self.client.clone();
        let exists = |e: &etcd_client::Error| e.to_string().contains("already exists");
        match client.role_add(name).await {
            Ok(_) => {}
            Err(e) if exists(&e) => {}
            Err(e) => return Err(self.error(e, &format!("role add {name}"))),
        }
        for g in grants {
            let perm = match (g.write, g.prefix) {
                (true, _) => Permission::read_write(g.key.as_str()),
                (false, _) => Permission::read(g.key.as_str()),
            };
            let perm = if g.prefix {
                perm.with_range_end(range_end(&g.key))
            } else {
                perm
            };
            client
                .role_grant_permission(name, perm)
                .await
                .map_err(|e| self.error(e, &format!("grant {} to role {name}", g.key)))?;
        }
        match client
            .user_add(name, "", Some(UserAddOptions::new().with_no_pwd()))
            .await
        {
            Ok(_) => {}
            Err(e) if exists(&e) => {}
            Err(e) => return Err(self.error(e, &format!("user add {name}"))),
        }
        client
            .user_grant_role(name, name)
            .await
            .map_err(|e| self.error(e, &format!("grant role {name} to user {name}")))?;
        Ok(())
    }
}

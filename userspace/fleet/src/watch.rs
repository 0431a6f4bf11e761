//! Watching one directory of the layout from a revision on, as batches of changes,
//! with etcd's compaction turned into [`FleetError::Compacted`] (read everything again).

use etcd_client::{EventType, WatchOptions, WatchStream};

use crate::{Fleet, FleetError};

/// One key's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key.
    pub key: String,
    /// Its new value; `None` when it was deleted.
    pub value: Option<Vec<u8>>,
    /// The revision of the change.
    pub mod_revision: i64,
}

/// A watch on one directory.
pub struct Watch {
    stream: WatchStream,
    dir: String,
}

impl Fleet {
    /// Watches every key under `dir` for changes after `revision`.
    pub async fn watch(&self, dir: &str, revision: i64) -> Result<Watch, FleetError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let stream = self
            .client
            .clone()
            .watch(dir, Some(options))
            .await
            .map_err(|e| self.error(e, &format!("watch {dir}*")))?;
        Ok(Watch {
            stream,
            dir: dir.to_owned(),
        })
    }
}

impl Watch {
    /// The next batch of changes (those of one or more whole transactions, in order).
    /// An empty batch is a progress notification.
    pub async fn next(&mut self) -> Result<Vec<Change>, FleetError> {
        let unavailable = |message: String| FleetError::Unavailable {
            endpoints: format!("watch {}", self.dir),
            message,
        };
        let response = match self.stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(unavailable("the watch stream ended".into())),
            Err(e) => return Err(unavailable(e.to_string())),
        };
        if response.canceled() {
            let compacted = response.compact_revision();
            if compacted > 0 {
                return Err(FleetError::Compacted(compacted));
            }
            return Err(unavailable(format!(
                "etcd cancelled the watch: {}",
                response.cancel_reason()
            )));
        }
        response
            .events()
            .iter()
            .filter_map(|event| event.kv().map(|kv| (event.event_type(), kv)))
            .map(|(kind, kv)| {
                let key = kv.key_str().map_err(|e| FleetError::Corrupt {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    message: e.to_string(),
                })?;
                Ok(Change {
                    key: key.to_owned(),
                    value: (kind == EventType::Put).then(|| kv.value().to_vec()),
                    mod_revision: kv.mod_revision(),
                })
            })
            .collect()
    }
}

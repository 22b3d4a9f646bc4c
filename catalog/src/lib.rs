//! `strata-catalog` owns what Strata knows about its data: databases, tables and their
//! column schemas, and the registry of Parquet files (tier, time range, rows, bytes, the
//! WAL sequence they cover). It persists all of that through `object_store`, one immutable
//! JSON object per version, so an update is atomic and a crash never leaves a
//! half-registered file.
//!
//! It must not know about Arrow, DataFusion or the WAL: the engine translates between its
//! in-memory state and these plain definitions. Start with [`Catalog`] (load, read a
//! snapshot, commit a change) and [`CatalogState`] (the data itself).
//!
//! # On-disk format
//! Under the catalog's object-store prefix, versions are stored as
//! `catalog/v00000000000000000042.json` (20-digit, zero-padded so lexical order is numeric
//! order). Each object is a complete [`CatalogState`] in JSON, written with
//! `PutMode::Create`: if two writers race for the same version, exactly one wins and the
//! other gets [`Error::Conflict`]. Loading lists the prefix and reads the highest version.
//! The newest [`KEEP_VERSIONS`] versions are kept; older ones are deleted after a commit.

pub mod alerts;
pub mod auth;
pub mod clock;
mod paths;
pub mod ranges;
mod state;
pub mod units;

pub use paths::CatalogPath;
pub use ranges::RangeSet;
pub use state::{
    CatalogState, ColumnDef, ColumnKind, DatabaseDef, FieldType, FileId, ParquetFileMeta,
    PendingDelete, RetentionOverride, RollupProgress, TableDef, Tier,
};

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parking_lot::RwLock;

/// How many catalog versions stay in the store after a commit (for inspection and for
/// readers that loaded an older version a moment ago).
pub const KEEP_VERSIONS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("catalog object store error: {0}")]
    Store(#[from] object_store::Error),
    #[error("catalog version {version} is not valid JSON: {source}")]
    Decode {
        version: u64,
        source: serde_json::Error,
    },
    #[error("could not encode the catalog: {0}")]
    Encode(serde_json::Error),
    #[error("catalog version {version} was written by another writer; reload and retry")]
    Conflict { version: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The catalog: the current [`CatalogState`] in memory, backed by versioned objects.
///
/// Commits are serialised by an internal async mutex; readers take a cheap `Arc` snapshot.
#[derive(Debug)]
pub struct Catalog {
    store: Arc<dyn ObjectStore>,
    current: RwLock<Arc<CatalogState>>,
    commit_lock: tokio::sync::Mutex<()>,
}

impl Catalog {
    /// Loads the newest version from `store`, or starts empty (version 0) if there is none.
    pub async fn load(store: Arc<dyn ObjectStore>) -> Result<Self> {
        let versions = list_versions(store.as_ref()).await?;
        let state = match versions.last() {
            Some(&version) => {
                let bytes = store
                    .get(&CatalogPath::version(version).to_object_path())
                    .await?
                    .bytes()
                    .await?;
                let state: CatalogState = serde_json::from_slice(&bytes)
                    .map_err(|source| Error::Decode { version, source })?;
                tracing::info!(version, "catalog loaded");
                state
            }
            None => CatalogState::default(),
        };
        Ok(Self {
            store,
            current: RwLock::new(Arc::new(state)),
            commit_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The current state. Cheap; the snapshot never changes under the caller.
    pub fn snapshot(&self) -> Arc<CatalogState> {
        Arc::clone(&self.current.read())
    }

    /// Applies `change` to a copy of the current state and stores it as the next version.
    /// The new state becomes visible to [`Catalog::snapshot`] only once it is durable.
    /// Returns the committed state.
    pub async fn commit<F>(&self, change: F) -> Result<Arc<CatalogState>>
    where
        F: FnOnce(&mut CatalogState),
    {
        let _guard = self.commit_lock.lock().await;
        let mut next = CatalogState::clone(&self.snapshot());
        change(&mut next);
        next.version += 1;
        let version = next.version;
        let body = serde_json::to_vec_pretty(&next).map_err(Error::Encode)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(
                &CatalogPath::version(version).to_object_path(),
                PutPayload::from(body),
                opts,
            )
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(Error::Conflict { version });
            }
            Err(e) => return Err(e.into()),
        }
        let next = Arc::new(next);
        *self.current.write() = Arc::clone(&next);
        self.prune_old_versions(version).await;
        Ok(next)
    }

    async fn prune_old_versions(&self, newest: u64) {
        let Ok(versions) = list_versions(self.store.as_ref()).await else {
            return;
        };
        for v in versions
            .into_iter()
            .filter(|v| *v + KEEP_VERSIONS as u64 <= newest)
        {
            if let Err(e) = self
                .store
                .delete(&CatalogPath::version(v).to_object_path())
                .await
            {
                tracing::warn!(version = v, error = %e, "could not delete old catalog version");
            }
        }
    }
}

async fn list_versions(store: &dyn ObjectStore) -> Result<Vec<u64>> {
    let prefix = CatalogPath::dir().to_object_path();
    let metas: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
    let mut versions: Vec<u64> = metas
        .iter()
        .filter_map(|m| CatalogPath::parse_version(&m.location))
        .collect();
    versions.sort_unstable();
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::local::LocalFileSystem;

    async fn store(dir: &std::path::Path) -> Arc<dyn ObjectStore> {
        Arc::new(LocalFileSystem::new_with_prefix(dir).expect("prefix"))
    }

    #[tokio::test]
    async fn commits_are_versioned_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cat = Catalog::load(store(dir.path()).await).await.expect("load");
        assert_eq!(cat.snapshot().version, 0);
        cat.commit(|s| {
            s.database_mut("metrics").table_mut("cpu");
        })
        .await
        .expect("commit 1");
        cat.commit(|s| {
            s.database_mut("metrics").table_mut("mem");
        })
        .await
        .expect("commit 2");
        assert_eq!(cat.snapshot().version, 2);

        let again = Catalog::load(store(dir.path()).await)
            .await
            .expect("reload");
        let snap = again.snapshot();
        assert_eq!(snap.version, 2);
        let tables: Vec<_> = snap.databases["metrics"].tables.keys().cloned().collect();
        assert_eq!(tables, vec!["cpu".to_string(), "mem".to_string()]);
    }

    #[tokio::test]
    async fn concurrent_writer_of_same_version_conflicts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Catalog::load(store(dir.path()).await)
            .await
            .expect("load a");
        let b = Catalog::load(store(dir.path()).await)
            .await
            .expect("load b");
        a.commit(|s| s.next_file_id += 1).await.expect("a wins");
        let err = b
            .commit(|s| s.next_file_id += 1)
            .await
            .expect_err("b loses");
        assert!(matches!(err, Error::Conflict { version: 1 }), "{err}");
        // The loser's view did not advance: nothing half-applied.
        assert_eq!(b.snapshot().version, 0);
    }

    #[tokio::test]
    async fn old_versions_are_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cat = Catalog::load(store(dir.path()).await).await.expect("load");
        for _ in 0..(KEEP_VERSIONS + 5) {
            cat.commit(|s| s.next_file_id += 1).await.expect("commit");
        }
        let versions = list_versions(cat.store.as_ref()).await.expect("list");
        assert_eq!(versions.len(), KEEP_VERSIONS);
        assert_eq!(
            *versions.last().expect("newest"),
            (KEEP_VERSIONS + 5) as u64
        );
    }

    #[tokio::test]
    async fn corrupt_version_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path()).await;
        s.put(
            &CatalogPath::version(3).to_object_path(),
            PutPayload::from_static(b"{not json"),
        )
        .await
        .expect("put");
        let err = Catalog::load(s).await.expect_err("must fail");
        assert!(err.to_string().contains("catalog version 3"), "{err}");
    }
}

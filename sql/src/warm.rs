//! Metadata warming: every registered Parquet file's footer, page index and time blocks
//! are read into the query runtime's metadata cache as soon as the catalog lists the
//! file (and at start-up), newest data first, so no query waits for them: a query that
//! met a file first used to spend 2 to 3 ms of its planning reading and parsing them.
//! Warming stops at half the cache's limit, leaving the rest to what queries read.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use strata_catalog::ParquetFileMeta;
use strata_engine::Engine;
use strata_engine::scan::{store_url, warm_file};
use tokio::sync::watch;
use tracing::debug;

/// How often the catalog's version is checked for new files.
const POLL: Duration = Duration::from_millis(500);

/// Runs until the query runtime shuts down. After each pass it sends the catalog version
/// whose files it went through on `done`.
pub(crate) async fn warm_metadata(
    engine: Arc<Engine>,
    runtime: Arc<RuntimeEnv>,
    done: watch::Sender<u64>,
) {
    let cache = runtime.cache_manager.get_file_metadata_cache();
    let budget = runtime.cache_manager.get_metadata_cache_limit() / 2;
    let mut seen_version = None;
    let mut warmed: HashSet<String> = HashSet::new();
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let catalog = engine.catalog_snapshot();
        if seen_version == Some(catalog.version) {
            continue;
        }
        seen_version = Some(catalog.version);
        let mut files: Vec<&ParquetFileMeta> = catalog
            .databases
            .values()
            .flat_map(|db| db.tables.values())
            .flat_map(|t| t.files.iter())
            .collect();
        // Files no longer registered leave the set, so it stays the size of the catalog.
        let registered: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
        warmed.retain(|p| registered.contains(p.as_str()));
        files.sort_by_key(|f| std::cmp::Reverse(f.max_time));
        let mut used = 0usize;
        for f in files {
            if used >= budget {
                break;
            }
            if warmed.contains(&f.path) {
                continue;
            }
            let store = match ObjectStoreUrl::parse(store_url(f.tier))
                .and_then(|u| runtime.object_store(&u))
            {
                Ok(s) => s,
                Err(e) => {
                    debug!(file = f.path, error = %e, "no store to warm the file's metadata from");
                    continue;
                }
            };
            match warm_file(f, &store, &cache).await {
                Ok(bytes) => {
                    used += bytes;
                    warmed.insert(f.path.clone());
                }
                // Compaction or retention may have removed it since the snapshot; a query
                // that needs a file reads its metadata itself.
                Err(e) => debug!(file = f.path, error = %e, "metadata not warmed"),
            }
        }
        done.send_replace(catalog.version);
    }
}

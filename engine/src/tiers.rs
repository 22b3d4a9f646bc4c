//! Tier maintenance, run in the background (and callable from tests with an injected
//! clock): rollups into the warm and cold tiers, retention, and deletion of files whose
//! grace period has ended. See [`crate::rollup`] for the rollup format.
//!
//! Every step commits its result to the catalog together with its progress
//! (`RollupProgress`), so a restart resumes where the last commit left off, and a step
//! that fails (a store outage) is retried on the next pass without losing anything: raw
//! and warm files leave only once the next tier has rolled them up.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::logical_expr::{LogicalPlanBuilder, SortExpr, lit};
use datafusion::prelude::ident;
use object_store::ObjectStoreExt;
use strata_catalog::{ColumnKind, FileId, ParquetFileMeta, PendingDelete, TableDef, Tier};

use crate::dedup::merge_sorted_runs;
use crate::paths::ParquetFilePath;
use crate::rollup::{floor_to, rollup_columns, rollup_plan, tier_columns};
use crate::scan::{merge_input, ranked_sorted_plan};
use crate::schema::{TIME_COLUMN, arrow_schema};
use crate::{Engine, Error, HotPiece, Result, TableSnapshot, persist, time_range};

/// Most windows of one tier and table rolled up in one pass (one catalog commit).
const MAX_WINDOWS_PER_PASS: usize = 96;

/// The smallest part S3 accepts in a multipart upload (all but the last part).
pub const MIN_PART_BYTES: usize = 5 << 20;

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierReport {
    /// New windows rolled up (warm and cold).
    pub windows: usize,
    /// Dirty ranges recomputed after late data.
    pub dirty_recomputed: usize,
    /// Rollup files written.
    pub files_written: usize,
    /// Rows read from the tier below to build them.
    pub source_rows: u64,
    /// Files merged by compaction, and the files they became.
    pub files_compacted: usize,
    pub compacted_into: usize,
    /// Rollup files replaced by their window's recompute after late data.
    pub files_replaced: usize,
    /// Files removed from the catalog by retention (deleted after the grace period).
    pub files_expired: usize,
    /// Files deleted from their store.
    pub files_deleted: usize,
}

/// One rolled-up window, not yet committed.
struct Rolled {
    lo: i64,
    hi: i64,
    dirty: bool,
    file: Option<ParquetFileMeta>,
}

impl Engine {
    /// One maintenance pass: roll up new and dirty windows into the warm tier, then the
    /// cold tier; expire files past retention; delete expired files whose grace period
    /// has ended. Passes never run concurrently.
    pub async fn maintain_tiers(&self) -> Result<TierReport> {
        let _only_one = self.maintenance_lock.lock().await;
        let now = self.shared.clock.now_ns();
        let mut report = TierReport::default();
        // A table that fails (a store outage, a bad file) does not hold up the others, nor
        // retention; the first error is returned once the pass is done.
        let mut first_error = None;
        for tier in [Tier::Warm, Tier::Cold] {
            self.roll_up(tier, now, &mut report, &mut first_error).await;
        }
        if let Err(e) = self.compact(now, &mut report).await {
            first_error.get_or_insert(e);
        }
        if let Err(e) = self.expire(now, &mut report).await {
            first_error.get_or_insert(e);
        }
        if let Err(e) = self.delete_due(now, &mut report).await {
            first_error.get_or_insert(e);
        }
        metrics::counter!("strata_rollup_windows_total").increment(report.windows as u64);
        metrics::counter!("strata_rollup_source_rows_total").increment(report.source_rows);
        metrics::counter!("strata_retention_expired_files_total")
            .increment(report.files_expired as u64);
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// The retention of `tier` in `db` (ns): the database's override or the server's.
    pub fn retention_ns(&self, db: &str, tier: Tier) -> i64 {
        self.shared
            .catalog
            .snapshot()
            .database(db)
            .and_then(|d| d.retention.get(tier))
            .unwrap_or_else(|| self.default_retention_ns(tier))
    }

    /// Sets (or with `None` clears) a database's retention of some tiers at run time, in
    /// one catalog change. The effective retentions must not shrink from tier to tier
    /// (hot ≤ warm ≤ cold): a tier is rolled up from the one below while that one still
    /// holds the data.
    pub async fn set_retention(
        &self,
        db: &str,
        changes: &[(Tier, Option<std::time::Duration>)],
    ) -> Result<()> {
        crate::check_database_name(db)?;
        for (tier, r) in changes {
            if r.is_some_and(|r| r.is_zero()) {
                return Err(Error::InvalidRetention(format!(
                    "the {} tier's retention must be longer than 0",
                    tier.name()
                )));
            }
        }
        let mut next = self
            .shared
            .catalog
            .snapshot()
            .database(db)
            .map(|d| d.retention)
            .unwrap_or_default();
        for (tier, r) in changes {
            next.set(*tier, r.map(nanos));
        }
        let effective = |t: Tier| next.get(t).unwrap_or_else(|| self.default_retention_ns(t));
        let (hot, warm, cold) = (
            effective(Tier::Hot),
            effective(Tier::Warm),
            effective(Tier::Cold),
        );
        if hot > warm || warm > cold {
            let show = |ns: i64| crate::tiers::show(ns);
            return Err(Error::InvalidRetention(format!(
                "database `{db}` would keep hot {}, warm {}, cold {}: each tier must keep at \
                 least as long as the one before it",
                show(hot),
                show(warm),
                show(cold)
            )));
        }
        self.shared
            .catalog
            .commit(|s| s.database_mut(db).retention = next)
            .await?;
        Ok(())
    }

    fn default_retention_ns(&self, tier: Tier) -> i64 {
        let cfg = &self.shared.config;
        nanos(match tier {
            Tier::Hot => cfg.hot_retention,
            Tier::Warm => cfg.warm_retention,
            Tier::Cold => cfg.cold_retention,
        })
    }

    fn window_ns(&self, tier: Tier) -> i64 {
        let cfg = &self.shared.config;
        let w = match tier {
            Tier::Hot => cfg.chunk_duration,
            Tier::Warm => cfg.warm_window,
            Tier::Cold => cfg.cold_window,
        };
        // Whole buckets of the tier, at least one.
        let res = tier.resolution_ns();
        (nanos(w) / res).max(1) * res
    }

    async fn roll_up(
        &self,
        tier: Tier,
        now: i64,
        report: &mut TierReport,
        first_error: &mut Option<Error>,
    ) {
        let cat = self.shared.catalog.snapshot();
        for (db, d) in &cat.databases {
            for table in d.tables.keys() {
                if let Err(e) = self.roll_up_table(tier, now, db, table, report).await {
                    metrics::counter!("strata_rollup_errors_total").increment(1);
                    tracing::warn!(%db, %table, tier = tier.name(), error = %e,
                        "rollup failed; it is retried on the next pass");
                    first_error.get_or_insert(e);
                }
            }
        }
    }

    async fn roll_up_table(
        &self,
        tier: Tier,
        now: i64,
        db: &str,
        table: &str,
        report: &mut TierReport,
    ) -> Result<()> {
        let Some(source) = tier.source() else {
            return Ok(());
        };
        let window = self.window_ns(tier);
        let settle = nanos(self.shared.config.rollup_settle);
        let cat = self.shared.catalog.snapshot();
        let Some(t) = cat.table(db, table) else {
            return Ok(());
        };
        let Some(snap) = self.table_snapshot(db, table) else {
            return Ok(());
        };
        let seen: HashSet<FileId> = snap
            .files
            .iter()
            .filter(|f| f.tier == source)
            .map(|f| f.id)
            .collect();
        // A dirty window with late data still in memory waits: recomputed now, it would be
        // dirty again once that data is persisted. (A new window does not wait: a source
        // with a skewed clock could keep one busy for as long as its clock stays in it,
        // holding up every later window.)
        let busy = |lo: i64, hi: i64| {
            source == Tier::Hot
                && snap
                    .hot
                    .iter()
                    .any(|h| h.rows > 0 && h.max_time >= lo && h.min_time < hi)
        };
        // Late data recomputes its whole window, so the new file replaces the window's old
        // ones and the tier keeps one file per window (queries need no deduplication).
        let mut dirty_windows = std::collections::BTreeSet::new();
        let dirty = match tier {
            Tier::Warm => &t.rollup.warm_dirty,
            _ => &t.rollup.cold_dirty,
        };
        for &(a, b) in dirty.ranges() {
            let mut lo = floor_to(a, window);
            while lo < b {
                dirty_windows.insert(lo);
                lo = lo.saturating_add(window);
            }
        }
        let mut work: Vec<(i64, i64, bool)> = dirty_windows
            .into_iter()
            .map(|lo| (lo, lo.saturating_add(window), true))
            .filter(|&(lo, hi, _)| !busy(lo, hi))
            .collect();
        let horizon = match tier {
            Tier::Warm => floor_to(now.saturating_sub(settle), window),
            _ => match t.rollup.warm_done_to {
                Some(w) => floor_to(w.min(now.saturating_sub(settle)), window),
                None => i64::MIN,
            },
        };
        let start = t
            .rollup
            .done_to(tier)
            .or_else(|| earliest(&snap, source).map(|e| floor_to(e, window)));
        if let Some(mut lo) = start {
            while lo < horizon && work.iter().filter(|w| !w.2).count() < MAX_WINDOWS_PER_PASS {
                work.push((lo, lo + window, false));
                lo += window;
            }
        }
        if work.is_empty() {
            return Ok(());
        }
        let mut rolled = Vec::with_capacity(work.len());
        for (lo, hi, dirty) in work {
            let (file, rows) = self.roll_window(tier, &snap, lo, hi, now).await?;
            report.source_rows += rows;
            if dirty {
                report.dirty_recomputed += 1;
            } else {
                report.windows += 1;
            }
            report.files_written += usize::from(file.is_some());
            rolled.push(Rolled {
                lo,
                hi,
                dirty,
                file,
            });
        }
        // The files a recomputed window replaces: this tier's files lying wholly inside
        // it, as of the snapshot the recompute read. Only where the tier below still
        // holds the whole window (none of it past retention).
        let complete_from = now.saturating_sub(self.retention_ns(db, source));
        let replaced: Vec<FileId> = rolled
            .iter()
            .filter(|r| r.file.is_some() && r.lo >= complete_from)
            .flat_map(|r| {
                snap.files
                    .iter()
                    .filter(move |f| f.tier == tier && f.chunk_start >= r.lo && f.chunk_end <= r.hi)
                    .map(|f| f.id)
            })
            .collect();
        let delete_after = now.saturating_add(nanos(self.shared.config.retention_grace));
        let next_id = self.next_file_id();
        self.shared
            .catalog
            .commit(|s| {
                s.next_file_id = s.next_file_id.max(next_id);
                let t = s.database_mut(db).table_mut(table);
                let gone = retire(t, &replaced, delete_after);
                for r in &rolled {
                    if let Some(f) = &r.file {
                        t.files.push(f.clone());
                    }
                    if r.dirty {
                        if let Some(d) = t.rollup.dirty_mut(tier) {
                            d.subtract(r.lo, r.hi);
                        }
                    } else {
                        match tier {
                            Tier::Warm => t.rollup.warm_done_to = Some(r.hi),
                            _ => t.rollup.cold_done_to = Some(r.hi),
                        }
                    }
                    if tier == Tier::Warm {
                        t.rollup.mark_dirty(Tier::Cold, r.lo, r.hi);
                    }
                }
                mark_unseen_sources(t, tier, source, &seen);
                s.pending_deletes.extend(gone);
            })
            .await?;
        report.files_replaced += replaced.len();
        Ok(())
    }

    /// Rolls `[lo, hi)` of one table up into `tier`. Returns the file written (none if
    /// the window holds no data) and the source rows it read.
    async fn roll_window(
        &self,
        tier: Tier,
        snap: &TableSnapshot,
        lo: i64,
        hi: i64,
        now: i64,
    ) -> Result<(Option<ParquetFileMeta>, u64)> {
        let Some(source) = tier.source() else {
            return Ok((None, 0));
        };
        let in_window = |min: i64, max: i64| max >= lo && min < hi;
        let files: Vec<&ParquetFileMeta> = snap
            .files
            .iter()
            .filter(|f| f.tier == source && in_window(f.min_time, f.max_time))
            .collect();
        let hot: Vec<&HotPiece> = if source == Tier::Hot {
            snap.hot
                .iter()
                .filter(|h| h.rows > 0 && in_window(h.min_time, h.max_time))
                .collect()
        } else {
            Vec::new()
        };
        if files.is_empty() && hot.is_empty() {
            return Ok((None, 0));
        }
        let src_columns = tier_columns(source, &snap.columns);
        let src_schema = arrow_schema(&src_columns);
        let ts = |v: i64| lit(ScalarValue::TimestampNanosecond(Some(v), None));
        let pushed = vec![
            ident(TIME_COLUMN).gt_eq(ts(lo)),
            ident(TIME_COLUMN).lt(ts(hi)),
        ];
        // Sources that share a window are deduplicated by sorting and merging, not by an
        // aggregate (gigabytes for hours of raw rows).
        let by_point: Vec<SortExpr> = src_columns
            .iter()
            .filter(|c| !matches!(c.kind, ColumnKind::Field(_)))
            .map(|c| ident(&c.name).sort(true, true))
            .collect();
        let input = merge_input(&src_schema, &src_columns, &files, &hot, &pushed, by_point)?;
        let mut rows = LogicalPlanBuilder::from(input.direct);
        if let Some(ranked) = input.ranked {
            let sorted = self
                .rollup_df
                .execute_logical_plan(ranked)
                .await?
                .collect()
                .await?;
            let merged = merge_sorted_runs(sorted, &src_columns, &src_schema)?;
            let mem = MemTable::try_new(Arc::clone(&src_schema), vec![merged])?;
            rows = rows.union(
                LogicalPlanBuilder::scan("merged", provider_as_source(Arc::new(mem)), None)?
                    .build()?,
            )?;
        }
        let plan = rollup_plan(rows.build()?, &snap.columns, tier)?;
        let batches = self
            .rollup_df
            .execute_logical_plan(plan)
            .await?
            .collect()
            .await?;
        let source_rows = files.iter().map(|f| f.row_count).sum::<u64>()
            + hot.iter().map(|h| h.rows as u64).sum::<u64>();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Ok((None, source_rows));
        }
        let max_seq = files
            .iter()
            .map(|f| f.max_seq)
            .chain(hot.iter().flat_map(|h| h.batches.iter().map(|b| b.seq)))
            .max()
            .unwrap_or(0);
        let file = self
            .write_tier_file(
                snap,
                tier,
                (lo, hi),
                rollup_columns(&snap.columns),
                batches,
                max_seq,
                now,
            )
            .await?;
        Ok((Some(file), source_rows))
    }

    /// Encodes `batches` (sorted, in `columns`) as the file of `tier` covering `window`,
    /// writes it to the tier's store and returns its registry entry (not yet committed).
    #[allow(clippy::too_many_arguments)]
    async fn write_tier_file(
        &self,
        snap: &TableSnapshot,
        tier: Tier,
        (lo, hi): (i64, i64),
        columns: Vec<strata_catalog::ColumnDef>,
        batches: Vec<RecordBatch>,
        max_seq: u64,
        now: i64,
    ) -> Result<ParquetFileMeta> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let (min_time, max_time) = time_range(&batches).unwrap_or((lo, hi - 1));
        let schema = arrow_schema(&columns);
        let bytes = tokio::task::spawn_blocking(move || {
            persist::encode_parquet(&schema, &batches, &columns, persist::slice_ns(tier))
        })
        .await
        .map_err(|e| Error::Wal(format!("parquet encoder task failed: {e}")))??;
        let id = FileId(self.allocate_file_id());
        let path = ParquetFilePath {
            tier,
            db: snap.db.clone(),
            table: snap.table.clone(),
            chunk_start: lo,
            file_id: id,
        }
        .to_object_path();
        let size = bytes.len() as u64;
        self.upload(tier, &path, bytes).await?;
        self.fsync_tier_file(tier, path.as_ref()).await?;
        Ok(ParquetFileMeta {
            id,
            path: path.to_string(),
            tier,
            min_time,
            max_time,
            chunk_start: lo,
            chunk_end: hi,
            row_count: rows as u64,
            size_bytes: size,
            max_seq,
            created_at: now,
        })
    }

    /// Merges each tier's files of one compaction window into one sorted, deduplicated
    /// file. A window is compacted once it is complete: for raw data no hot chunk overlaps
    /// it (so every WAL write up to the output's `max_seq` in the window is in the inputs,
    /// which keeps WAL replay's skip rule true), for a rollup tier it is rolled up. Only
    /// files lying wholly inside the window take part; the inputs leave the catalog in the
    /// same commit that registers the output, and are deleted after the grace period.
    async fn compact(&self, now: i64, report: &mut TierReport) -> Result<()> {
        let cat = self.shared.catalog.snapshot();
        let grace = nanos(self.shared.config.retention_grace);
        let settle = nanos(self.shared.config.rollup_settle);
        for (db, d) in &cat.databases {
            for table in d.tables.keys() {
                let mut levels = Vec::new();
                for (tier, spans) in Tier::ALL
                    .into_iter()
                    .zip(&self.shared.config.compaction_windows)
                {
                    levels.extend(spans.iter().map(|w| (tier, nanos(*w).max(1))));
                }
                for (tier, window) in levels {
                    // Each level sees the files the level before it wrote.
                    let Some(snap) = self.table_snapshot(db, table) else {
                        break;
                    };
                    let complete_to = match tier {
                        Tier::Hot => now.saturating_sub(settle),
                        t => snap.rollup.done_to(t).unwrap_or(i64::MIN),
                    };
                    let mut groups: std::collections::BTreeMap<i64, Vec<&ParquetFileMeta>> =
                        Default::default();
                    for f in snap.files.iter().filter(|f| f.tier == tier) {
                        let w = floor_to(f.chunk_start, window);
                        if f.chunk_end <= w.saturating_add(window) {
                            groups.entry(w).or_default().push(f);
                        }
                    }
                    for (w, files) in groups {
                        let end = w.saturating_add(window);
                        let busy = snap
                            .hot
                            .iter()
                            .any(|h| h.chunk_start < end && h.chunk_end > w);
                        if files.len() < 2 || end > complete_to || busy {
                            continue;
                        }
                        self.compact_window(&snap, tier, w, end, &files, now, grace)
                            .await?;
                        report.files_compacted += files.len();
                        report.compacted_into += 1;
                    }
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn compact_window(
        &self,
        snap: &TableSnapshot,
        tier: Tier,
        lo: i64,
        hi: i64,
        files: &[&ParquetFileMeta],
        now: i64,
        grace: i64,
    ) -> Result<()> {
        let columns = tier_columns(tier, &snap.columns);
        let schema = arrow_schema(&columns);
        // Files that share times may repeat a (series, time): sorted with the write order
        // last, repeats are adjacent and merged in one pass (an aggregate took gigabytes
        // and minutes for a day of raw rows).
        let plan = ranked_sorted_plan(
            &schema,
            &columns,
            files,
            persist::file_order(tier, &columns),
        )?;
        let sorted = self
            .rollup_df
            .execute_logical_plan(plan)
            .await?
            .collect()
            .await?;
        let batches = merge_sorted_runs(sorted, &columns, &schema)?;
        let max_seq = files.iter().map(|f| f.max_seq).max().unwrap_or(0);
        let meta = self
            .write_tier_file(snap, tier, (lo, hi), columns, batches, max_seq, now)
            .await?;
        let inputs: Vec<FileId> = files.iter().map(|f| f.id).collect();
        let next_id = self.next_file_id();
        self.shared
            .catalog
            .commit(|s| {
                s.next_file_id = s.next_file_id.max(next_id);
                let t = s.database_mut(&snap.db).table_mut(&snap.table);
                let gone = retire(t, &inputs, now.saturating_add(grace));
                t.files.push(meta);
                s.pending_deletes.extend(gone);
            })
            .await?;
        metrics::counter!("strata_compacted_files_total").increment(files.len() as u64);
        Ok(())
    }

    /// Writes a file to a tier's store: one request, or a multipart upload in parts of
    /// `upload_part_bytes` for a larger file (an interrupted upload is aborted).
    async fn upload(
        &self,
        tier: Tier,
        path: &object_store::path::Path,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let store = self.tier_store(tier);
        // S3 refuses parts under 5 MiB (all but the last).
        let part = self.shared.config.upload_part_bytes.max(MIN_PART_BYTES);
        if bytes.len() <= part {
            store.put(path, bytes.into()).await?;
            return Ok(());
        }
        let upload = store.put_multipart(path).await?;
        let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, part);
        w.put(bytes::Bytes::from(bytes));
        if let Err(e) = w.finish().await {
            tracing::warn!(%path, error = %e, "multipart upload failed; it is retried on the next pass");
            return Err(e.into());
        }
        metrics::counter!("strata_multipart_uploads_total").increment(1);
        Ok(())
    }

    /// Moves files past their tier's retention out of the catalog, into the pending
    /// deletes. A raw or warm file stays until the next tier has rolled it up.
    async fn expire(&self, now: i64, report: &mut TierReport) -> Result<()> {
        let cat = self.shared.catalog.snapshot();
        let mut expired: Vec<(String, String, FileId)> = Vec::new();
        for (db, d) in &cat.databases {
            for (table, t) in &d.tables {
                // Unpersisted late data in a chunk keeps the chunk's files: once it is
                // persisted, the recomputed buckets read them.
                let hot: Vec<(i64, i64)> = self
                    .table_snapshot(db, table)
                    .map(|s| s.hot.iter().map(|h| (h.chunk_start, h.chunk_end)).collect())
                    .unwrap_or_default();
                for f in &t.files {
                    if hot
                        .iter()
                        .any(|(a, b)| *a < f.chunk_end && *b > f.chunk_start)
                    {
                        continue;
                    }
                    let cutoff = now.saturating_sub(self.retention_ns(db, f.tier));
                    if f.chunk_end > cutoff {
                        continue;
                    }
                    let rolled = match f.tier {
                        Tier::Hot => rolled_past(t, Tier::Warm, f),
                        Tier::Warm => rolled_past(t, Tier::Cold, f),
                        Tier::Cold => true,
                    };
                    if rolled {
                        expired.push((db.clone(), table.clone(), f.id));
                    } else {
                        tracing::warn!(%db, %table, file = f.id.0, tier = f.tier.name(),
                            "a file past retention is kept: the next tier has not rolled it up yet");
                    }
                }
            }
        }
        if expired.is_empty() {
            return Ok(());
        }
        let grace = nanos(self.shared.config.retention_grace);
        let mut n = 0;
        self.shared
            .catalog
            .commit(|s| {
                let mut gone = Vec::new();
                for (db, table, id) in &expired {
                    let t = s.database_mut(db).table_mut(table);
                    // Re-checked on the state being committed: a rollup may have marked
                    // the file's buckets dirty since the snapshot.
                    let still = t.files.iter().position(|f| f.id == *id).filter(|&i| {
                        let f = &t.files[i];
                        match f.tier {
                            Tier::Hot => rolled_past(t, Tier::Warm, f),
                            Tier::Warm => rolled_past(t, Tier::Cold, f),
                            Tier::Cold => true,
                        }
                    });
                    if let Some(pos) = still {
                        let f = t.files.remove(pos);
                        gone.push(PendingDelete {
                            path: f.path,
                            tier: f.tier,
                            delete_after: now.saturating_add(grace),
                        });
                    }
                }
                n = gone.len();
                s.pending_deletes.extend(gone);
            })
            .await?;
        report.files_expired += n;
        Ok(())
    }

    /// Deletes files whose grace period has ended, then forgets them.
    async fn delete_due(&self, now: i64, report: &mut TierReport) -> Result<()> {
        let cat = self.shared.catalog.snapshot();
        let mut done: HashSet<String> = HashSet::new();
        for p in cat.pending_deletes.iter().filter(|p| p.delete_after <= now) {
            let path = object_store::path::Path::parse(&p.path)
                .unwrap_or_else(|_| object_store::path::Path::from(p.path.as_str()));
            match self.tier_store(p.tier).delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    done.insert(p.path.clone());
                }
                Err(e) => {
                    tracing::warn!(path = %p.path, error = %e, "could not delete an expired file; will retry");
                }
            }
        }
        if done.is_empty() {
            return Ok(());
        }
        self.shared
            .catalog
            .commit(|s| s.pending_deletes.retain(|p| !done.contains(&p.path)))
            .await?;
        report.files_deleted += done.len();
        Ok(())
    }
}

/// Takes the files `ids` out of `t`, as deletes due at `delete_after` (queries already
/// running may still read them until then).
fn retire(t: &mut TableDef, ids: &[FileId], delete_after: i64) -> Vec<PendingDelete> {
    let mut gone = Vec::new();
    t.files.retain(|f| {
        let keep = !ids.contains(&f.id);
        if !keep {
            gone.push(PendingDelete {
                path: f.path.clone(),
                tier: f.tier,
                delete_after,
            });
        }
        keep
    });
    gone
}

/// Whether `rollup` has rolled up everything in `f`'s window, with nothing left dirty.
fn rolled_past(t: &TableDef, rollup: Tier, f: &ParquetFileMeta) -> bool {
    let done = t.rollup.done_to(rollup).is_some_and(|d| d >= f.chunk_end);
    let dirty = match rollup {
        Tier::Warm => &t.rollup.warm_dirty,
        _ => &t.rollup.cold_dirty,
    };
    done && !dirty
        .ranges()
        .iter()
        .any(|(a, b)| *a < f.chunk_end && *b > f.chunk_start)
}

/// Source files registered after a rollup read its snapshot may hold rows it did not see:
/// their buckets are marked dirty (only where the tier has already rolled up).
fn mark_unseen_sources(t: &mut TableDef, tier: Tier, source: Tier, seen: &HashSet<FileId>) {
    let ranges: Vec<(i64, i64)> = t
        .files
        .iter()
        .filter(|f| f.tier == source && !seen.contains(&f.id))
        .map(|f| (f.min_time, f.max_time.saturating_add(1)))
        .collect();
    for (a, b) in ranges {
        t.rollup.mark_dirty(tier, a, b);
    }
}

/// The earliest time `source` holds for a table (files, and hot data for the raw tier).
fn earliest(snap: &TableSnapshot, source: Tier) -> Option<i64> {
    let files = snap
        .files
        .iter()
        .filter(|f| f.tier == source)
        .map(|f| f.min_time);
    let hot = snap
        .hot
        .iter()
        .filter(|h| source == Tier::Hot && h.rows > 0)
        .map(|h| h.min_time);
    files.chain(hot).min()
}

/// A retention for people: `7d`, `36h`.
pub(crate) fn show(ns: i64) -> String {
    strata_catalog::units::format_duration(std::time::Duration::from_nanos(ns.max(0) as u64))
}

pub(crate) fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

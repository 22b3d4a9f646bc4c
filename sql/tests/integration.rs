//! SQL behaviour as sqllogictest files (and Flight SQL metadata as snapshots,
//! `metadata.rs`) (`tests/slt/*.slt`), run over a real engine and
//! our own DataFusion session. Regenerate expected output with
//! `STRATA_SLT_COMPLETE=1 cargo nextest run -p strata-sql slt` and review the diff.
//!
//! Besides SQL, a record may write line protocol: a statement whose first line is
//! `write_lp <database>` writes the following lines (nanosecond timestamps).

mod last_values;
mod limits;
mod metadata;
mod newest_buckets;
mod pruning;
mod slt;
mod tiers;

//! Every path the engine writes, built in one place from typed parts.
//!
//! Layout under the data directory:
//! - `wal/00000000000000000001.wal`: WAL segments, named by their first sequence number.
//! - `catalog/…`: catalog versions (see `strata-catalog`).
//! - `dbs/<db>/<table>/<chunk_start>/<file_id>.parquet`: persisted raw files; names are
//!   percent-encoded so any database or table name is a single safe path segment.
//! - `rollup_1m/<db>/<table>/<window_start>/<file_id>.parquet`: warm-tier rollups.
//! - `rollup_1h/<db>/<table>/<window_start>/<file_id>.parquet`: cold-tier rollups, in the
//!   cold store (its own directory, `cold/` under the data directory by default, or a
//!   bucket).

use std::path::{Path, PathBuf};

use object_store::path::Path as ObjectPath;
use strata_catalog::{FileId, Tier};

/// The WAL directory of a data directory.
pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

/// A WAL segment file, named by the first sequence number it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WalSegmentName(pub u64);

impl WalSegmentName {
    pub fn file_name(self) -> String {
        format!("{:020}.wal", self.0)
    }

    pub fn path(self, wal_dir: &Path) -> PathBuf {
        wal_dir.join(self.file_name())
    }

    pub fn parse(file_name: &str) -> Option<Self> {
        let digits = file_name.strip_suffix(".wal")?;
        if digits.len() != 20 {
            return None;
        }
        digits.parse().ok().map(Self)
    }
}

/// Where a persisted Parquet file lives in the data object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetFilePath {
    pub tier: Tier,
    pub db: String,
    pub table: String,
    pub chunk_start: i64,
    pub file_id: FileId,
}

impl ParquetFilePath {
    pub fn to_object_path(&self) -> ObjectPath {
        // `Path::from_iter` percent-encodes each part, so `/` or `..` in a name stay inside it.
        let top = match self.tier {
            Tier::Hot => "dbs",
            Tier::Warm => "rollup_1m",
            Tier::Cold => "rollup_1h",
        };
        ObjectPath::from_iter([
            top.to_string(),
            self.db.clone(),
            self.table.clone(),
            self.chunk_start.to_string(),
            format!("{:020}.parquet", self.file_id.0),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        let n = WalSegmentName(17);
        assert_eq!(n.file_name(), "00000000000000000017.wal");
        assert_eq!(WalSegmentName::parse(&n.file_name()), Some(n));
        assert_eq!(WalSegmentName::parse("17.wal"), None);
    }

    #[test]
    fn parquet_paths_escape_names() {
        let p = ParquetFilePath {
            tier: Tier::Hot,
            db: "my/db".into(),
            table: "..".into(),
            chunk_start: 600,
            file_id: FileId(3),
        };
        let s = p.to_object_path().to_string();
        assert!(s.starts_with("dbs/my%2Fdb/"), "{s}");
        assert!(s.ends_with("/600/00000000000000000003.parquet"), "{s}");
        assert_eq!(p.to_object_path().parts().count(), 5);
    }
}

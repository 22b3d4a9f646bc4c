//! The catalog's data: plain, serialisable definitions. No I/O here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::alerts::{AlertRuleDef, SilenceDef};
use crate::ranges::RangeSet;

/// One complete version of the catalog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CatalogState {
    /// Monotonic version; 0 means nothing was ever committed.
    pub version: u64,
    /// The next id handed to a Parquet file.
    pub next_file_id: u64,
    pub databases: BTreeMap<String, DatabaseDef>,
    /// Alert rules by name (server-wide; each names the database its query runs in).
    #[serde(default)]
    pub alert_rules: BTreeMap<String, AlertRuleDef>,
    /// Silences by id.
    #[serde(default)]
    pub silences: BTreeMap<String, SilenceDef>,
    /// Files no longer registered (retention, compaction, replaced rollups), deleted from
    /// their store once `delete_after` has passed, so queries that planned them can finish.
    #[serde(default)]
    pub pending_deletes: Vec<PendingDelete>,
}

impl CatalogState {
    pub fn database(&self, name: &str) -> Option<&DatabaseDef> {
        self.databases.get(name)
    }

    /// The database called `name`, created empty if it does not exist.
    pub fn database_mut(&mut self, name: &str) -> &mut DatabaseDef {
        self.databases.entry(name.to_string()).or_default()
    }

    pub fn table(&self, db: &str, table: &str) -> Option<&TableDef> {
        self.databases.get(db)?.tables.get(table)
    }

    /// Hands out a new, never reused file id.
    pub fn allocate_file_id(&mut self) -> FileId {
        let id = FileId(self.next_file_id);
        self.next_file_id += 1;
        id
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatabaseDef {
    pub tables: BTreeMap<String, TableDef>,
    /// Retention set for this database at run time; unset tiers follow the server's policy.
    #[serde(default)]
    pub retention: RetentionOverride,
}

/// Per-tier retention of one database, in ns; `None` keeps the server's setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionOverride {
    #[serde(default)]
    pub hot: Option<i64>,
    #[serde(default)]
    pub warm: Option<i64>,
    #[serde(default)]
    pub cold: Option<i64>,
}

impl RetentionOverride {
    pub fn get(&self, tier: Tier) -> Option<i64> {
        match tier {
            Tier::Hot => self.hot,
            Tier::Warm => self.warm,
            Tier::Cold => self.cold,
        }
    }

    pub fn set(&mut self, tier: Tier, v: Option<i64>) {
        match tier {
            Tier::Hot => self.hot = v,
            Tier::Warm => self.warm = v,
            Tier::Cold => self.cold = v,
        }
    }
}

/// A file waiting for its grace period to end before it is deleted from its store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDelete {
    pub path: String,
    pub tier: Tier,
    /// ns since the epoch, from the injected clock.
    pub delete_after: i64,
}

impl DatabaseDef {
    /// The table called `name`, created empty if it does not exist.
    pub fn table_mut(&mut self, name: &str) -> &mut TableDef {
        self.tables.entry(name.to_string()).or_default()
    }
}

/// A table: its columns in order of first appearance, and its persisted files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    pub columns: Vec<ColumnDef>,
    pub files: Vec<ParquetFileMeta>,
    /// How far the rollup tiers have got.
    #[serde(default)]
    pub rollup: RollupProgress,
}

/// Rollup bookkeeping of one table, committed with the files it describes so a restart
/// resumes where the last commit left off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupProgress {
    /// Every warm (1-minute) bucket before this time is rolled up from raw data.
    #[serde(default)]
    pub warm_done_to: Option<i64>,
    /// Every cold (1-hour) bucket before this time is rolled up from the warm tier.
    #[serde(default)]
    pub cold_done_to: Option<i64>,
    /// Warm buckets below `warm_done_to` that late data changed: to recompute.
    #[serde(default)]
    pub warm_dirty: RangeSet,
    /// Cold buckets below `cold_done_to` whose warm buckets changed: to recompute.
    #[serde(default)]
    pub cold_dirty: RangeSet,
}

impl RollupProgress {
    pub fn done_to(&self, tier: Tier) -> Option<i64> {
        match tier {
            Tier::Hot => None,
            Tier::Warm => self.warm_done_to,
            Tier::Cold => self.cold_done_to,
        }
    }

    pub fn dirty_mut(&mut self, tier: Tier) -> Option<&mut RangeSet> {
        match tier {
            Tier::Hot => None,
            Tier::Warm => Some(&mut self.warm_dirty),
            Tier::Cold => Some(&mut self.cold_dirty),
        }
    }

    /// Marks the buckets of `tier` that `[start, end)` touches dirty, if that tier has
    /// already rolled them up.
    pub fn mark_dirty(&mut self, tier: Tier, start: i64, end: i64) {
        let Some(done) = self.done_to(tier) else {
            return;
        };
        let res = tier.resolution_ns();
        let lo = start.div_euclid(res).saturating_mul(res);
        let hi = end
            .saturating_sub(1)
            .div_euclid(res)
            .saturating_add(1)
            .saturating_mul(res);
        if let Some(d) = self.dirty_mut(tier) {
            d.add(lo, hi.min(done));
        }
    }
}

impl TableDef {
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Adds the columns of `other` this table does not have yet, keeping order.
    /// Type conflicts are the engine's to reject before anything reaches the catalog.
    pub fn merge_columns<'a>(&mut self, other: impl IntoIterator<Item = &'a ColumnDef>) {
        for c in other {
            if self.column(&c.name).is_none() {
                self.columns.push(c.clone());
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub kind: ColumnKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    Tag,
    Time,
    Field(FieldType),
}

/// The type of a field column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Float,
    Integer,
    UInteger,
    Boolean,
    String,
}

impl FieldType {
    /// The name users see in errors (InfluxDB's words).
    pub fn name(self) -> &'static str {
        match self {
            Self::Float => "float",
            Self::Integer => "integer",
            Self::UInteger => "unsigned integer",
            Self::Boolean => "boolean",
            Self::String => "string",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FileId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Full-resolution data persisted from the hot table.
    Hot,
    /// 1-minute rollups of the hot tier.
    Warm,
    /// 1-hour rollups of the warm tier.
    Cold,
}

impl Tier {
    pub const ALL: [Self; 3] = [Self::Hot, Self::Warm, Self::Cold];

    pub fn name(self) -> &'static str {
        match self {
            Self::Hot => "hot",
            Self::Warm => "warm",
            Self::Cold => "cold",
        }
    }

    /// The width of one row's bucket (ns); 1 for raw data.
    pub fn resolution_ns(self) -> i64 {
        match self {
            Self::Hot => 1,
            Self::Warm => 60_000_000_000,
            Self::Cold => 3_600_000_000_000,
        }
    }

    /// The tier a rollup tier is computed from.
    pub fn source(self) -> Option<Self> {
        match self {
            Self::Hot => None,
            Self::Warm => Some(Self::Hot),
            Self::Cold => Some(Self::Warm),
        }
    }

    /// The SQL schema that exposes the tier directly (`public` for raw data).
    pub fn schema_name(self) -> &'static str {
        match self {
            Self::Hot => "public",
            Self::Warm => "rollup_1m",
            Self::Cold => "rollup_1h",
        }
    }
}

/// One registered Parquet file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParquetFileMeta {
    pub id: FileId,
    /// Object-store path relative to the data store's root.
    pub path: String,
    pub tier: Tier,
    /// Smallest and largest `time` in the file (ns since the epoch, inclusive).
    pub min_time: i64,
    pub max_time: i64,
    /// The time chunk the file was persisted from: `[chunk_start, chunk_end)`.
    pub chunk_start: i64,
    pub chunk_end: i64,
    pub row_count: u64,
    pub size_bytes: u64,
    /// Every write with a WAL sequence up to this one that fell into the chunk is in the
    /// file (or in an older file of the same chunk). Replay skips such rows, and
    /// last-write-wins ranks files of one chunk by this number.
    pub max_seq: u64,
    /// When the file was registered (ns since the epoch, from the injected clock).
    pub created_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_json() {
        let mut s = CatalogState::default();
        let id = s.allocate_file_id();
        let t = s.database_mut("metrics").table_mut("cpu");
        t.columns.push(ColumnDef {
            name: "usage".into(),
            kind: ColumnKind::Field(FieldType::Float),
        });
        t.files.push(ParquetFileMeta {
            id,
            path: "x.parquet".into(),
            tier: Tier::Hot,
            min_time: 1,
            max_time: 2,
            chunk_start: 0,
            chunk_end: 10,
            row_count: 2,
            size_bytes: 100,
            max_seq: 7,
            created_at: 5,
        });
        let json = serde_json::to_string(&s).expect("encode");
        let back: CatalogState = serde_json::from_str(&json).expect("decode");
        assert_eq!(s, back);
        assert_eq!(back.next_file_id, 1);
    }

    #[test]
    fn merge_columns_keeps_order_and_skips_known() {
        let mut t = TableDef::default();
        let a = ColumnDef {
            name: "a".into(),
            kind: ColumnKind::Tag,
        };
        let b = ColumnDef {
            name: "b".into(),
            kind: ColumnKind::Time,
        };
        t.merge_columns([&a]);
        t.merge_columns([&b, &a]);
        let names: Vec<_> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }
}

//! Time blocks: a time index for files sorted by series.
//!
//! Files are sorted by (slice, series, `time`), so the rows of a few minutes lie in short
//! stretches of every series' run, over every page of the slice. Page statistics cannot
//! find them: a page holds several series' whole runs, so its `time` range is the slice's.
//! Each file therefore records, in its footer's key-value metadata under [`KEY`], the time
//! range of every block of at most [`BLOCK_ROWS`] consecutive rows, where a block ends
//! wherever `time` goes back (a new series' run). A scan turns the blocks that overlap
//! its time intervals into a row selection, and the Parquet reader decodes only those
//! rows: the newest partial minute of a 3-hour slice of 1000 series is 64 to 128 rows of
//! each run, not the slice's 1.08 M.
//!
//! A block's range holds every `time` in it whatever the order, so a selection is always a
//! superset of the rows in the intervals: the query's own filter still applies.
//!
//! Encoding (version 1): base64 (standard, as the metadata holds strings) of the byte `1`,
//! the uncompressed size, then, zstd-compressed, the number of blocks; each block's rows;
//! each block's minimum less the previous block's maximum (zigzag); each block's maximum
//! less its minimum. Numbers are LEB128 varints. Columns of near-constant deltas, so
//! regular series cost a few bytes.

use base64::Engine as _;
use parquet::arrow::arrow_reader::RowSelector;

use crate::time_filter::TimeRange;

/// The key of the time blocks in a Parquet file's key-value metadata.
pub const KEY: &str = "strata.time_blocks";

/// Rows per block at most: an index entry per 64 rows, and a query over a few points of
/// each series decodes at most two blocks of it.
pub const BLOCK_ROWS: u32 = 64;

const VERSION: u8 = 1;
/// Largest uncompressed size accepted: about 20 bytes a block, for files of up to
/// 3 billion rows.
const MAX_RAW_BYTES: u64 = 1 << 30;
const ZSTD_LEVEL: i32 = 3;

/// The time blocks of one file, in row order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TimeBlocks {
    rows: Vec<u32>,
    min: Vec<i64>,
    max: Vec<i64>,
}

/// Rows of a file a scan reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Alternating runs of rows to skip and to read, covering the whole file.
    pub selectors: Vec<RowSelector>,
    pub selected_rows: u64,
}

impl TimeBlocks {
    /// Adds the next rows' times.
    pub fn push(&mut self, times: &[i64]) {
        for &t in times {
            // Times never go back inside a block, so its maximum is its last row's time.
            let open = match (self.max.last(), self.rows.last()) {
                (Some(&prev), Some(&n)) => t >= prev && n < BLOCK_ROWS,
                _ => false,
            };
            if open {
                let i = self.rows.len() - 1;
                self.rows[i] += 1;
                self.max[i] = t;
            } else {
                self.rows.push(1);
                self.min.push(t);
                self.max.push(t);
            }
        }
    }

    pub fn row_count(&self) -> u64 {
        self.rows.iter().map(|&n| u64::from(n)).sum()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Bytes held, for caches.
    pub fn memory_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.rows.capacity() * std::mem::size_of::<u32>()
            + (self.min.capacity() + self.max.capacity()) * std::mem::size_of::<i64>()
    }

    /// The metadata value ([module docs](self)).
    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(self.rows.len() * 6 + 8);
        put_varint(&mut raw, self.rows.len() as u64);
        for &n in &self.rows {
            put_varint(&mut raw, u64::from(n));
        }
        let mut prev_max = 0i64;
        for (&min, &max) in self.min.iter().zip(&self.max) {
            put_varint(&mut raw, zigzag(min.wrapping_sub(prev_max)));
            prev_max = max;
        }
        for (&min, &max) in self.min.iter().zip(&self.max) {
            put_varint(&mut raw, max.wrapping_sub(min) as u64);
        }
        let mut out = vec![VERSION];
        put_varint(&mut out, raw.len() as u64);
        // Compressing a buffer in memory fails only on allocation failure.
        out.extend(zstd::bulk::compress(&raw, ZSTD_LEVEL).unwrap_or_default());
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    /// Reads [`Self::encode`]'s value; an error says what is wrong with it.
    pub fn decode(value: &str) -> Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|e| format!("time blocks are not base64: {e}"))?;
        let (&version, body) = bytes.split_first().ok_or("time blocks are empty")?;
        if version != VERSION {
            return Err(format!("time blocks of unknown version {version}"));
        }
        let mut header = Reader { buf: body, at: 0 };
        let size = header.varint()?;
        if size > MAX_RAW_BYTES {
            return Err(format!(
                "time blocks of {size} bytes, more than {MAX_RAW_BYTES}"
            ));
        }
        let raw = zstd::bulk::decompress(&body[header.at..], size as usize)
            .map_err(|e| format!("time blocks do not decompress: {e}"))?;
        if raw.len() as u64 != size {
            return Err(format!(
                "time blocks decompress to {} bytes, not {size}",
                raw.len()
            ));
        }
        let mut r = Reader { buf: &raw, at: 0 };
        let n = usize::try_from(r.varint()?).map_err(|_| "time block count overflows")?;
        if n > raw.len() {
            return Err(format!("{n} time blocks in {} bytes", raw.len()));
        }
        let mut blocks = Self {
            rows: Vec::with_capacity(n),
            min: Vec::with_capacity(n),
            max: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let rows = u32::try_from(r.varint()?).map_err(|_| "a time block's rows overflow")?;
            blocks.rows.push(rows);
        }
        let mut deltas = Vec::with_capacity(n);
        for _ in 0..n {
            deltas.push(unzigzag(r.varint()?));
        }
        let mut prev_max = 0i64;
        for delta in deltas {
            let min = prev_max.wrapping_add(delta);
            let max = min.wrapping_add(r.varint()? as i64);
            blocks.min.push(min);
            blocks.max.push(max);
            prev_max = max;
        }
        if r.at != raw.len() {
            return Err(format!(
                "time blocks have {} trailing bytes",
                raw.len() - r.at
            ));
        }
        Ok(blocks)
    }

    /// The blocks that overlap any of `ranges`, as a selection over the file's rows.
    pub fn selection(&self, ranges: &[TimeRange]) -> Selection {
        let mut selectors: Vec<RowSelector> = Vec::new();
        let mut selected_rows = 0u64;
        for ((&rows, &min), &max) in self.rows.iter().zip(&self.min).zip(&self.max) {
            let keep = ranges.iter().any(|r| r.overlaps(min, max));
            let rows = rows as usize;
            if keep {
                selected_rows += rows as u64;
            }
            match selectors.last_mut() {
                Some(s) if s.skip != keep => s.row_count += rows,
                _ => selectors.push(if keep {
                    RowSelector::select(rows)
                } else {
                    RowSelector::skip(rows)
                }),
            }
        }
        Selection {
            selectors,
            selected_rows,
        }
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let &b = self
                .buf
                .get(self.at)
                .ok_or("time blocks end inside a number")?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a time block number is longer than 64 bits".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    /// `series` runs of `points` at 10 s from `start`, in file order.
    fn runs(series: usize, points: i64, start: i64) -> Vec<i64> {
        (0..series)
            .flat_map(|_| (0..points).map(move |i| start + i * 10 * S))
            .collect()
    }

    #[test]
    fn blocks_end_where_time_goes_back_or_after_block_rows() {
        let mut b = TimeBlocks::default();
        b.push(&runs(3, 100, 0)[..150]);
        b.push(&runs(3, 100, 0)[150..]);
        // Each run of 100 is a block of 64 and one of 36.
        assert_eq!(b.rows, vec![64, 36, 64, 36, 64, 36]);
        assert_eq!((b.min[1], b.max[1]), (640 * S, 990 * S));
        assert_eq!(b.row_count(), 300);
    }

    #[test]
    fn encoding_round_trips_and_regular_series_cost_little() {
        let mut b = TimeBlocks::default();
        b.push(&runs(1000, 1080, 1_796_126_400 * S));
        let mut jittered = TimeBlocks::default();
        let times: Vec<i64> = runs(50, 1080, 7 * S)
            .iter()
            .enumerate()
            .map(|(i, t)| t + ((i * 7919) % 1000) as i64 * 1_000_000)
            .collect();
        jittered.push(&times);
        for blocks in [&b, &jittered] {
            let value = blocks.encode();
            assert_eq!(&TimeBlocks::decode(&value).expect("decodes"), blocks);
        }
        // 17,000 blocks of a 3-hour slice of 1000 series at 10 s.
        assert_eq!(b.len(), 17_000);
        assert!(b.encode().len() < 4096, "{} bytes", b.encode().len());
    }

    #[test]
    fn a_large_regular_index_round_trips_however_well_it_compresses() {
        // 10,000 series of 3 hours at 10 s: 10.8 M rows, 170,000 blocks.
        let run = runs(1, 1080, 0);
        let mut b = TimeBlocks::default();
        for _ in 0..10_000 {
            b.push(&run);
        }
        let value = b.encode();
        assert_eq!(TimeBlocks::decode(&value).expect("decodes"), b);
        assert!(value.len() < 16 * 1024, "{} bytes", value.len());
    }

    #[test]
    fn a_selection_holds_every_row_in_the_ranges_and_little_else() {
        let times = runs(1000, 1080, 0);
        let mut b = TimeBlocks::default();
        b.push(&times);
        // The newest partial minute of the slice: [120 min, 120 min + 43 s].
        let r = TimeRange {
            lo: 7200 * S,
            hi: 7243 * S,
        };
        let sel = b.selection(&[r]);
        let mut row = 0usize;
        let mut selected = vec![false; times.len()];
        for s in &sel.selectors {
            if !s.skip {
                selected[row..row + s.row_count].fill(true);
            }
            row += s.row_count;
        }
        assert_eq!(row, times.len());
        for (i, t) in times.iter().enumerate() {
            if r.overlaps(*t, *t) {
                assert!(selected[i], "row {i} at {t} not selected");
            }
        }
        assert_eq!(
            sel.selected_rows,
            selected.iter().filter(|s| **s).count() as u64
        );
        // 5 points of each run fall in one block or two: at most 128 rows of 1080.
        assert!(sel.selected_rows <= 128 * 1000, "{}", sel.selected_rows);
        assert!(sel.selected_rows >= 5 * 1000);
        // Two ranges select the union; none selects nothing.
        let far = TimeRange { lo: 0, hi: 0 };
        assert!(b.selection(&[r, far]).selected_rows > sel.selected_rows);
        assert_eq!(b.selection(&[]).selected_rows, 0);
    }

    #[test]
    fn damaged_values_are_errors() {
        let mut b = TimeBlocks::default();
        b.push(&runs(10, 100, 0));
        let value = b.encode();
        assert!(TimeBlocks::decode("not base64!").is_err());
        assert!(
            TimeBlocks::decode("")
                .expect_err("an error")
                .contains("empty")
        );
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(&value)
            .expect("base64");
        bytes[0] = 9;
        let v9 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert!(
            TimeBlocks::decode(&v9)
                .expect_err("an error")
                .contains("version 9")
        );
        bytes[0] = VERSION;
        bytes.truncate(bytes.len() - 3);
        let cut = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert!(TimeBlocks::decode(&cut).is_err());
    }
}

//! A write request's rows in column form, as the engine validates and stores them.
//!
//! Rows come in [`Block`]s: runs of consecutive rows of one table with one layout (the
//! same tag keys, and the same field keys of the same types in the same order). Every row
//! of a block has every one of its fields, so a block's values are plain vectors, one per
//! field, and a block is checked against its table's schema once, not once per row. A
//! decoder either fills [`Rows`] directly ([`Rows::add_series`], [`Rows::push_row`]: the
//! line-protocol parser does) or hands over [`Point`]s, which convert.
//!
//! A new block starts wherever the layout changes, so blocks keep the request's order:
//! the verdict on each row is the one it would get checked point by point.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::HashMap;
use strata_catalog::FieldType;

use crate::write::{FieldValue, Point, Tags, same_name};

/// One field's values in a block, one per row.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValues {
    F64(Vec<f64>),
    I64(Vec<i64>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
    Str(Vec<String>),
}

impl FieldValues {
    fn of_type(t: FieldType) -> Self {
        match t {
            FieldType::Float => Self::F64(Vec::new()),
            FieldType::Integer => Self::I64(Vec::new()),
            FieldType::UInteger => Self::U64(Vec::new()),
            FieldType::Boolean => Self::Bool(Vec::new()),
            FieldType::String => Self::Str(Vec::new()),
        }
    }

    pub fn field_type(&self) -> FieldType {
        match self {
            Self::F64(_) => FieldType::Float,
            Self::I64(_) => FieldType::Integer,
            Self::U64(_) => FieldType::UInteger,
            Self::Bool(_) => FieldType::Boolean,
            Self::Str(_) => FieldType::String,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Self::F64(c) => c.len(),
            Self::I64(c) => c.len(),
            Self::U64(c) => c.len(),
            Self::Bool(c) => c.len(),
            Self::Str(c) => c.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `v`, which has this column's type (the block's layout says so).
    fn push(&mut self, v: FieldValue) {
        match (self, v) {
            (Self::F64(c), FieldValue::F64(x)) => c.push(x),
            (Self::I64(c), FieldValue::I64(x)) => c.push(x),
            (Self::U64(c), FieldValue::U64(x)) => c.push(x),
            (Self::Bool(c), FieldValue::Bool(x)) => c.push(x),
            (Self::Str(c), FieldValue::Str(x)) => c.push(x),
            (c, v) => unreachable!("a {:?} value in a {:?} column", v, c.field_type()),
        }
    }

    /// Moves the values of `other`, of this column's type, to the end of these.
    fn append(&mut self, other: Self) {
        match (self, other) {
            (Self::F64(c), Self::F64(mut o)) => c.append(&mut o),
            (Self::I64(c), Self::I64(mut o)) => c.append(&mut o),
            (Self::U64(c), Self::U64(mut o)) => c.append(&mut o),
            (Self::Bool(c), Self::Bool(mut o)) => c.append(&mut o),
            (Self::Str(c), Self::Str(mut o)) => c.append(&mut o),
            (c, o) => unreachable!(
                "{:?} values in a {:?} column",
                o.field_type(),
                c.field_type()
            ),
        }
    }

    /// The value of row `row`.
    pub fn get(&self, row: usize) -> FieldValue {
        match self {
            Self::F64(c) => FieldValue::F64(c[row]),
            Self::I64(c) => FieldValue::I64(c[row]),
            Self::U64(c) => FieldValue::U64(c[row]),
            Self::Bool(c) => FieldValue::Bool(c[row]),
            Self::Str(c) => FieldValue::Str(c[row].clone()),
        }
    }
}

/// Consecutive rows of one table with one layout.
#[derive(Debug, Clone)]
pub struct Block {
    pub(crate) table: Arc<str>,
    /// The tags of the block's first row: every row's series has these keys.
    pub(crate) tags: Tags,
    pub(crate) fields: Vec<(Arc<str>, FieldValues)>,
    /// Each row's series: an index into [`Rows`]' series.
    pub(crate) series: Vec<u32>,
    /// Nanoseconds since the Unix epoch, UTC.
    pub(crate) time: Vec<i64>,
    /// Each row's 1-based line (or element) number in the request.
    pub(crate) lines: Vec<u32>,
}

impl Block {
    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn len(&self) -> usize {
        self.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    /// The tag keys every row has, in the order written.
    pub(crate) fn tag_keys(&self) -> impl Iterator<Item = &str> + Clone {
        self.tags.iter().map(|(k, _)| &**k)
    }

    /// Whether `other` has this block's layout.
    fn same_layout(&self, other: &Block) -> bool {
        let fields = other.fields.iter().map(|(k, c)| (&**k, c.field_type()));
        self.fits(&other.table, &other.tags, fields)
    }

    /// Whether a row of table `table` with tags `tags` and these fields (name and type)
    /// has this layout.
    fn fits<'f>(
        &self,
        table: &str,
        tags: &Tags,
        fields: impl ExactSizeIterator<Item = (&'f str, FieldType)>,
    ) -> bool {
        same_name(&self.table, table)
            && (Arc::ptr_eq(&self.tags, tags)
                || (self.tags.len() == tags.len()
                    && self
                        .tags
                        .iter()
                        .zip(tags.iter())
                        .all(|(a, b)| same_name(&a.0, &b.0))))
            && self.fields.len() == fields.len()
            && self
                .fields
                .iter()
                .zip(fields)
                .all(|((k, c), (name, t))| c.field_type() == t && **k == *name)
    }
}

/// The rows of one write request: the series they belong to and blocks of rows.
#[derive(Debug, Default, Clone)]
pub struct Rows {
    /// Table and tags of each series the rows name.
    pub(crate) series: Vec<(Arc<str>, Tags)>,
    pub(crate) blocks: Vec<Block>,
    rows: usize,
    /// Field names of the request, each allocated once.
    names: HashSet<Arc<str>>,
}

impl Rows {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows in all blocks.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// Registers a series (a table and its tags) for [`Self::push_row`]; returns its number.
    pub fn add_series(&mut self, table: Arc<str>, tags: Tags) -> u32 {
        self.series.push((table, tags));
        u32::try_from(self.series.len() - 1).unwrap_or(u32::MAX)
    }

    /// Appends a row of series `series` (from [`Self::add_series`]) with the fields in
    /// `fields`, which it empties (the caller reuses the vector), at `time` (nanoseconds),
    /// from line `line`. It joins the last block when it has its layout.
    pub fn push_row<K: AsRef<str>>(
        &mut self,
        series: u32,
        fields: &mut Vec<(K, FieldValue)>,
        time: i64,
        line: usize,
    ) {
        let (table, tags) = &self.series[series as usize];
        let fits = self.blocks.last().is_some_and(|b| {
            let layout = fields.iter().map(|(k, v)| (k.as_ref(), v.field_type()));
            b.fits(table, tags, layout)
        });
        if !fits {
            let names = &mut self.names;
            let block = Block {
                table: Arc::clone(table),
                tags: Arc::clone(tags),
                fields: fields
                    .iter()
                    .map(|(k, v)| {
                        let name = match names.get(k.as_ref()) {
                            Some(n) => Arc::clone(n),
                            None => {
                                let n: Arc<str> = Arc::from(k.as_ref());
                                names.insert(Arc::clone(&n));
                                n
                            }
                        };
                        (name, FieldValues::of_type(v.field_type()))
                    })
                    .collect(),
                series: Vec::new(),
                time: Vec::new(),
                lines: Vec::new(),
            };
            self.blocks.push(block);
        }
        let Some(b) = self.blocks.last_mut() else {
            return;
        };
        for ((_, column), (_, v)) in b.fields.iter_mut().zip(fields.drain(..)) {
            column.push(v);
        }
        b.series.push(series);
        b.time.push(time);
        b.lines.push(u32::try_from(line).unwrap_or(u32::MAX));
        self.rows += 1;
    }

    /// Moves `other`'s rows to the end of these, renumbered to follow them (the `n`-th row
    /// of the whole is line `n`); returns the rows' numbers in `other`, in order.
    pub fn append(&mut self, other: Rows) -> Vec<u32> {
        let offset = u32::try_from(self.series.len()).unwrap_or(u32::MAX);
        self.series.extend(other.series);
        let mut was = Vec::with_capacity(other.rows);
        for mut b in other.blocks {
            for s in &mut b.series {
                *s = s.saturating_add(offset);
            }
            for line in &mut b.lines {
                was.push(*line);
                self.rows += 1;
                *line = u32::try_from(self.rows).unwrap_or(u32::MAX);
            }
            match self.blocks.last_mut() {
                Some(last) if last.same_layout(&b) => {
                    for ((_, c), (_, o)) in last.fields.iter_mut().zip(b.fields) {
                        c.append(o);
                    }
                    last.series.append(&mut b.series);
                    last.time.append(&mut b.time);
                    last.lines.append(&mut b.lines);
                }
                _ => self.blocks.push(b),
            }
        }
        was
    }

    /// The rows as points, in order (for decoders' callers that work point by point).
    pub fn into_points(self) -> Vec<Point> {
        let mut out = Vec::with_capacity(self.rows);
        for b in &self.blocks {
            for row in 0..b.len() {
                out.push(Point {
                    table: Arc::clone(&b.table),
                    tags: Arc::clone(&self.series[b.series[row] as usize].1),
                    fields: b
                        .fields
                        .iter()
                        .map(|(k, c)| (Arc::clone(k), c.get(row)))
                        .collect(),
                    time: b.time[row],
                    line: b.lines[row] as usize,
                });
            }
        }
        out
    }
}

impl From<Vec<Point>> for Rows {
    /// Points sharing one [`Tags`] (as a decoder hands them out) share one series.
    fn from(points: Vec<Point>) -> Self {
        let mut rows = Rows::new();
        let mut series: HashMap<(usize, usize), u32> = HashMap::default();
        let mut fields = Vec::new();
        for p in points {
            // By the addresses of the shared table name and tags, which `rows` keeps
            // alive, so no other series can take them over.
            let key = (p.table.as_ptr().addr(), p.tags.as_ptr().addr());
            let id = match series.get(&key) {
                Some(id) => *id,
                None => {
                    let id = rows.add_series(p.table, p.tags);
                    series.insert(key, id);
                    id
                }
            };
            fields.extend(p.fields);
            rows.push_row(id, &mut fields, p.time, p.line);
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(table: &Arc<str>, tags: &Tags, fields: Vec<(&str, FieldValue)>, line: usize) -> Point {
        Point {
            table: Arc::clone(table),
            tags: Arc::clone(tags),
            fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            time: line as i64,
            line,
        }
    }

    /// A block ends where the table, a tag key, a field key or a field's type changes,
    /// and the points come back out as they went in.
    #[test]
    fn blocks_break_where_the_layout_changes() {
        let a: Tags = vec![("host".into(), "a".into())].into();
        let b: Tags = vec![("host".into(), "b".into())].into();
        let c: Tags = vec![("pool".into(), "b".into())].into();
        let (cpu, mem): (Arc<str>, Arc<str>) = ("cpu".into(), "mem".into());
        let int = FieldValue::I64;
        let points = vec![
            point(&cpu, &a, vec![("u", int(1)), ("s", int(2))], 1),
            point(&cpu, &b, vec![("u", int(3)), ("s", int(4))], 2),
            point(
                &cpu,
                &b,
                vec![("u", FieldValue::F64(5.0)), ("s", int(6))],
                3,
            ),
            point(
                &cpu,
                &c,
                vec![("u", FieldValue::F64(7.0)), ("s", int(8))],
                4,
            ),
            point(
                &mem,
                &c,
                vec![("u", FieldValue::F64(9.0)), ("s", int(1))],
                5,
            ),
            point(&mem, &c, vec![("u", FieldValue::F64(2.0))], 6),
            point(&mem, &c, vec![("s", FieldValue::F64(3.0))], 7),
            point(&mem, &c, vec![("s", FieldValue::F64(4.0))], 8),
        ];
        let rows = Rows::from(points.clone());
        assert_eq!(rows.len(), 8);
        let sizes: Vec<usize> = rows.blocks().iter().map(Block::len).collect();
        assert_eq!(sizes, [2, 1, 1, 1, 1, 2]);
        assert_eq!(rows.series.len(), 4, "one series per table and shared tags");
        assert_eq!(rows.clone().into_points(), points);

        // Appended, the rows follow on, numbered on, and the last block continues.
        let mut both = rows.clone();
        let was = both.append(rows);
        assert_eq!(was, (1..=8).collect::<Vec<u32>>());
        let sizes: Vec<usize> = both.blocks().iter().map(Block::len).collect();
        assert_eq!(sizes, [2, 1, 1, 1, 1, 2, 2, 1, 1, 1, 1, 2]);
        let more = both.append(Rows::from(vec![points[7].clone()]));
        assert_eq!(more, [8]);
        assert_eq!(
            both.blocks().last().map(Block::len),
            Some(3),
            "one layout, one block"
        );
        let again = both.into_points();
        assert_eq!(again.len(), 17);
        for (i, p) in again.iter().enumerate() {
            let want = &points[if i == 16 { 7 } else { i % 8 }];
            assert_eq!(p.line, i + 1);
            assert_eq!(
                (&p.table, &p.tags, &p.fields, p.time),
                (&want.table, &want.tags, &want.fields, want.time)
            );
        }
    }
}

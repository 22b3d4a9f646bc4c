//! Time bounds of pushed filters: the intervals of `time` a query can need. Tier choice
//! and file pruning use them (`strata-sql`), and so does [`crate::scan::FileSet`], which
//! reads only the rows of a file's time blocks that overlap them.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};

use crate::schema::{TIME_COLUMN, time_type};

/// A time interval `[lo, hi]` (ns, inclusive) a query can need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub lo: i64,
    pub hi: i64,
}

impl TimeRange {
    pub const ALL: Self = Self {
        lo: i64::MIN,
        hi: i64::MAX,
    };

    /// The exclusive end of the range (`i64::MAX` when unbounded).
    pub fn end(&self) -> i64 {
        if self.hi == i64::MAX {
            i64::MAX
        } else {
            self.hi.saturating_add(1)
        }
    }

    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        min <= self.hi && max >= self.lo
    }

    /// The time bounds implied by a conjunction of pushed filters. Anything not
    /// understood leaves the range open, which is always safe.
    pub fn from_filters(filters: &[Expr]) -> Self {
        let mut r = Self::ALL;
        for f in filters {
            r.narrow(f);
        }
        r
    }

    fn narrow(&mut self, e: &Expr) {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if *op == Operator::And {
                    self.narrow(left);
                    self.narrow(right);
                    return;
                }
                let (op, v) = match (
                    time_col(left),
                    ts_value(right),
                    time_col(right),
                    ts_value(left),
                ) {
                    (true, Some(v), _, _) => (*op, v),
                    (_, _, true, Some(v)) => match op.swap() {
                        Some(o) => (o, v),
                        None => return,
                    },
                    _ => return,
                };
                match op {
                    Operator::Gt => self.lo = self.lo.max(v.saturating_add(1)),
                    Operator::GtEq => self.lo = self.lo.max(v),
                    Operator::Lt => self.hi = self.hi.min(v.saturating_sub(1)),
                    Operator::LtEq => self.hi = self.hi.min(v),
                    Operator::Eq => {
                        self.lo = self.lo.max(v);
                        self.hi = self.hi.min(v);
                    }
                    _ => {}
                }
            }
            Expr::Between(b) if !b.negated && time_col(&b.expr) => {
                if let (Some(lo), Some(hi)) = (ts_value(&b.low), ts_value(&b.high)) {
                    self.lo = self.lo.max(lo);
                    self.hi = self.hi.min(hi);
                }
            }
            _ => {}
        }
    }
}

/// The time intervals a conjunction of pushed filters keeps rows in, `OR`s of bounds
/// included (`[1, 3) OR [7, 9)` is two intervals): a superset of the rows kept, used to
/// choose the files and hot chunks to read. Anything not understood leaves its part open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeSpans(Vec<TimeRange>);

impl TimeSpans {
    /// More intervals than this are replaced by their hull (still a superset).
    const MAX: usize = 64;

    pub fn from_filters(filters: &[Expr]) -> Self {
        let mut spans = Self(vec![TimeRange::ALL]);
        for f in filters {
            spans = spans.intersect(&Self::of(f));
        }
        spans
    }

    fn of(e: &Expr) -> Self {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) if *op == Operator::And => {
                Self::of(left).intersect(&Self::of(right))
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) if *op == Operator::Or => {
                let mut spans = Self::of(left).0;
                spans.extend(Self::of(right).0);
                Self(spans).capped()
            }
            e => Self(vec![TimeRange::from_filters(std::slice::from_ref(e))]),
        }
    }

    fn intersect(&self, other: &Self) -> Self {
        let mut spans = Vec::new();
        for a in &self.0 {
            for b in &other.0 {
                let (lo, hi) = (a.lo.max(b.lo), a.hi.min(b.hi));
                if lo <= hi {
                    spans.push(TimeRange { lo, hi });
                }
            }
        }
        Self(spans).capped()
    }

    fn capped(self) -> Self {
        if self.0.len() <= Self::MAX {
            return self;
        }
        let lo = self.0.iter().map(|r| r.lo).min().unwrap_or(i64::MIN);
        let hi = self.0.iter().map(|r| r.hi).max().unwrap_or(i64::MAX);
        Self(vec![TimeRange { lo, hi }])
    }

    /// These intervals cut to `[lo, hi]`.
    pub fn within(&self, lo: i64, hi: i64) -> Self {
        self.intersect(&Self(vec![TimeRange { lo, hi }]))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The intervals, each `[lo, hi]` (ns, inclusive).
    pub fn ranges(&self) -> &[TimeRange] {
        &self.0
    }

    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        self.0.iter().any(|r| r.overlaps(min, max))
    }
}

fn time_col(e: &Expr) -> bool {
    match e {
        Expr::Column(c) => c.name == TIME_COLUMN,
        Expr::Cast(c) => time_col(&c.expr),
        _ => false,
    }
}

/// A literal timestamp in ns, after the type coercion DataFusion applied.
fn ts_value(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::TimestampNanosecond(Some(x), _) => Some(*x),
            ScalarValue::TimestampMicrosecond(Some(x), _) => x.checked_mul(1_000),
            ScalarValue::TimestampMillisecond(Some(x), _) => x.checked_mul(1_000_000),
            ScalarValue::TimestampSecond(Some(x), _) => x.checked_mul(1_000_000_000),
            _ => None,
        },
        Expr::Cast(c) => ts_value(&c.expr).or_else(|| match c.expr.as_ref() {
            Expr::Literal(ScalarValue::Utf8(Some(s)), _) => parse_ts(s),
            _ => None,
        }),
        _ => None,
    }
}

fn parse_ts(s: &str) -> Option<i64> {
    let v = ScalarValue::Utf8(Some(s.to_string()));
    match v.cast_to(&time_type()).ok()? {
        ScalarValue::TimestampNanosecond(Some(x), _) => Some(x),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(v: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(Some(v), None))
    }

    #[test]
    fn time_range_from_comparisons() {
        let f = vec![col("time").gt_eq(ts(10)), col("time").lt(ts(20))];
        assert_eq!(TimeRange::from_filters(&f), TimeRange { lo: 10, hi: 19 });
        let f = vec![ts(10).lt(col("time"))];
        assert_eq!(
            TimeRange::from_filters(&f),
            TimeRange {
                lo: 11,
                hi: i64::MAX
            }
        );
        let f = vec![col("time").between(ts(1), ts(5))];
        assert_eq!(TimeRange::from_filters(&f), TimeRange { lo: 1, hi: 5 });
        // An OR is not understood: stays open.
        let f = vec![col("time").lt(ts(3)).or(col("time").gt(ts(9)))];
        assert_eq!(TimeRange::from_filters(&f), TimeRange::ALL);
        let f = vec![col("host").eq(lit("a"))];
        assert_eq!(TimeRange::from_filters(&f), TimeRange::ALL);
    }

    #[test]
    fn time_spans_keep_each_side_of_an_or_of_bounds() {
        let range = |lo, hi| col("time").gt_eq(ts(lo)).and(col("time").lt(ts(hi)));
        let span = |lo, hi| TimeRange { lo, hi };
        let f = vec![range(1, 3).or(range(7, 9)), col("host").eq(lit("a"))];
        let spans = TimeSpans::from_filters(&f);
        assert_eq!(spans, TimeSpans(vec![span(1, 2), span(7, 8)]));
        assert!(!spans.overlaps(3, 6));
        assert!(spans.overlaps(0, 1) && spans.overlaps(8, 20));
        // A conjunct cuts every interval; one that misses an interval removes it.
        let f = vec![range(1, 3).or(range(7, 9)), col("time").gt_eq(ts(8))];
        assert_eq!(TimeSpans::from_filters(&f), TimeSpans(vec![span(8, 8)]));
        assert!(TimeSpans::from_filters(&f).within(0, 7).is_empty());
        // A side that is not a bound leaves everything open.
        let f = vec![range(1, 3).or(col("host").eq(lit("a")))];
        assert!(TimeSpans::from_filters(&f).overlaps(100, 200));
    }
}

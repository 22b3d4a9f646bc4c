//! The TSBS "cpu-only" data set: one row per host per 10 s, ten string tags and ten
//! usage fields, each a clamped random walk. Deterministic for a seed, independent of any
//! crate's random number generator (so a seed means the same data in every release).

use std::fmt::Write;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

/// Seconds between two rows of one host.
pub const INTERVAL_SECS: i64 = 10;

pub const FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];

pub const TAGS: [&str; 10] = [
    "hostname",
    "region",
    "datacenter",
    "rack",
    "os",
    "arch",
    "team",
    "service",
    "service_version",
    "service_environment",
];

/// Regions and their datacenters, as TSBS has them.
const REGIONS: [(&str, &[&str]); 9] = [
    (
        "us-east-1",
        &["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1e"],
    ),
    ("us-west-1", &["us-west-1a", "us-west-1b"]),
    ("us-west-2", &["us-west-2a", "us-west-2b", "us-west-2c"]),
    ("eu-west-1", &["eu-west-1a", "eu-west-1b", "eu-west-1c"]),
    ("eu-central-1", &["eu-central-1a", "eu-central-1b"]),
    ("ap-southeast-1", &["ap-southeast-1a", "ap-southeast-1b"]),
    ("ap-southeast-2", &["ap-southeast-2a", "ap-southeast-2b"]),
    ("ap-northeast-1", &["ap-northeast-1a", "ap-northeast-1c"]),
    ("sa-east-1", &["sa-east-1a", "sa-east-1b", "sa-east-1c"]),
];
const OS: [&str; 3] = ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"];
const ARCH: [&str; 2] = ["x64", "x86"];
const TEAM: [&str; 4] = ["SF", "NYC", "LON", "CHI"];
const ENVIRONMENT: [&str; 3] = ["production", "staging", "test"];

/// SplitMix64: tiny, fast and fully specified, so data never changes with a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// One host: its tag values (in [`TAGS`] order) and the state of its ten random walks.
#[derive(Debug, Clone)]
pub struct Host {
    pub tags: [String; 10],
    walk: [f64; 10],
    /// `cpu,hostname=…,…,service_environment=… ` ready to prefix a line.
    line_prefix: String,
}

/// Whether fields are integers (TSBS's own encoding) or floats with two decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Values {
    Int,
    Float,
}

/// Generates rows step by step: every host once per 10 s step, hosts in order.
pub struct Generator {
    pub hosts: Vec<Host>,
    rng: Rng,
    pub values: Values,
    pub start_ns: i64,
    pub steps: u64,
    step: u64,
}

impl Generator {
    pub fn new(seed: u64, hosts: usize, start_ns: i64, steps: u64, values: Values) -> Self {
        let mut rng = Rng::new(seed);
        let hosts = (0..hosts)
            .map(|i| {
                let (region, dcs) = REGIONS[rng.below(REGIONS.len())];
                let tags = [
                    format!("host_{i}"),
                    region.to_string(),
                    dcs[rng.below(dcs.len())].to_string(),
                    rng.below(100).to_string(),
                    OS[rng.below(OS.len())].to_string(),
                    ARCH[rng.below(ARCH.len())].to_string(),
                    TEAM[rng.below(TEAM.len())].to_string(),
                    rng.below(20).to_string(),
                    rng.below(2).to_string(),
                    ENVIRONMENT[rng.below(ENVIRONMENT.len())].to_string(),
                ];
                let walk = std::array::from_fn(|_| rng.unit() * 100.0);
                let mut line_prefix = String::from("cpu");
                for (k, v) in TAGS.iter().zip(&tags) {
                    line_prefix.push_str(&format!(",{k}={v}"));
                }
                line_prefix.push(' ');
                Host {
                    tags,
                    walk,
                    line_prefix,
                }
            })
            .collect();
        Self {
            hosts,
            rng,
            values,
            start_ns,
            steps,
            step: 0,
        }
    }

    pub fn rows(&self) -> u64 {
        self.hosts.len() as u64 * self.steps
    }

    pub fn end_ns(&self) -> i64 {
        self.start_ns + self.steps as i64 * INTERVAL_SECS * 1_000_000_000
    }

    pub fn done(&self) -> bool {
        self.step >= self.steps
    }

    /// Advances one step: every host's walks move, and `emit` sees each row.
    fn advance(&mut self, mut emit: impl FnMut(usize, &Host, i64)) {
        let t = self.start_ns + self.step as i64 * INTERVAL_SECS * 1_000_000_000;
        for (i, h) in self.hosts.iter_mut().enumerate() {
            for w in &mut h.walk {
                *w = (*w + self.rng.normal()).clamp(0.0, 100.0);
            }
            emit(i, h, t);
        }
        self.step += 1;
    }

    /// The next `steps` steps as line protocol and as one Arrow batch of the same rows.
    pub fn next_steps(&mut self, steps: u64) -> Result<(String, RecordBatch), ArrowError> {
        let steps = steps.min(self.steps - self.step);
        let n = (steps as usize) * self.hosts.len();
        let mut lines = String::with_capacity(n * 260);
        let mut time = Vec::with_capacity(n);
        let mut host_idx = Vec::with_capacity(n);
        let (int_n, float_n) = match self.values {
            Values::Int => (n, 0),
            Values::Float => (0, n),
        };
        let mut ints: Vec<Vec<i64>> = (0..10).map(|_| Vec::with_capacity(int_n)).collect();
        let mut floats: Vec<Vec<f64>> = (0..10).map(|_| Vec::with_capacity(float_n)).collect();
        let values = self.values;
        for _ in 0..steps {
            self.advance(|i, h, t| {
                lines.push_str(&h.line_prefix);
                for (f, (name, w)) in FIELDS.iter().zip(&h.walk).enumerate() {
                    if f > 0 {
                        lines.push(',');
                    }
                    lines.push_str(name);
                    lines.push('=');
                    match values {
                        Values::Int => {
                            let v = w.round() as i64;
                            let _ = write!(lines, "{v}i");
                            ints[f].push(v);
                        }
                        Values::Float => {
                            let v = (w * 100.0).round() / 100.0;
                            let _ = write!(lines, "{v}");
                            floats[f].push(v);
                        }
                    }
                }
                let _ = writeln!(lines, " {t}");
                time.push(t);
                host_idx.push(i);
            });
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(21);
        for tag in 0..TAGS.len() {
            columns.push(Arc::new(StringArray::from_iter_values(
                host_idx.iter().map(|&i| self.hosts[i].tags[tag].as_str()),
            )));
        }
        for f in 0..FIELDS.len() {
            columns.push(match values {
                Values::Int => Arc::new(Int64Array::from(std::mem::take(&mut ints[f]))),
                Values::Float => Arc::new(Float64Array::from(std::mem::take(&mut floats[f]))),
            });
        }
        columns.push(Arc::new(TimestampNanosecondArray::from(time)));
        let batch = RecordBatch::try_new(schema(values), columns)?;
        Ok((lines, batch))
    }
}

/// The Arrow schema of the exported Parquet: tags, fields, then `time` (as Strata has it:
/// nanoseconds, no time zone, holding UTC).
pub fn schema(values: Values) -> SchemaRef {
    let field_type = match values {
        Values::Int => DataType::Int64,
        Values::Float => DataType::Float64,
    };
    let mut fields: Vec<Field> = TAGS
        .iter()
        .map(|t| Field::new(*t, DataType::Utf8, false))
        .collect();
    fields.extend(
        FIELDS
            .iter()
            .map(|f| Field::new(*f, field_type.clone(), false)),
    );
    fields.push(Field::new(
        "time",
        DataType::Timestamp(TimeUnit::Nanosecond, None),
        false,
    ));
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_rows_and_walks_stay_in_range() {
        let mut a = Generator::new(7, 5, 0, 100, Values::Int);
        let mut b = Generator::new(7, 5, 0, 100, Values::Int);
        let (la, ba) = a.next_steps(100).expect("a");
        let (lb, _) = b.next_steps(100).expect("b");
        assert_eq!(la, lb);
        assert_eq!(ba.num_rows(), 500);
        assert!(a.done());
        for f in 10..20 {
            let col = ba
                .column(f)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("ints");
            assert!(col.iter().flatten().all(|v| (0..=100).contains(&v)));
        }
        let first = la.lines().next().expect("a line");
        assert!(first.starts_with("cpu,hostname=host_0,region="), "{first}");
        assert!(first.ends_with(" 0"), "{first}");
        assert_eq!(first.matches("i,").count(), 9, "{first}");
        let (lc, _) = Generator::new(8, 5, 0, 100, Values::Int)
            .next_steps(100)
            .expect("c");
        assert_ne!(la, lc);
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut r = Rng::new(1);
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.03, "variance {var}");
    }
}

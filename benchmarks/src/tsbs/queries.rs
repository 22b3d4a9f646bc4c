//! The TSBS cpu-only query types, each instantiated with random windows and hosts from a
//! seed, in three dialects: SQL as Strata (DataFusion) and DuckDB both read it,
//! ClickHouse SQL for chDB, and InfluxQL for InfluxDB 1.x.

use serde::Serialize;

use super::data::{FIELDS, Rng};

const MINUTE: i64 = 60 * 1_000_000_000;
const HOUR: i64 = 60 * MINUTE;

/// One query to run: the same question in every peer's dialect.
#[derive(Debug, Clone, Serialize)]
pub struct Query {
    pub sql: String,
    pub clickhouse: String,
    pub influxql: String,
}

/// A query type and its instances (each timed run uses the next instance).
#[derive(Debug, Clone, Serialize)]
pub struct QueryType {
    pub name: String,
    pub description: String,
    pub instances: Vec<Query>,
}

/// Every query type of the issue, in TSBS's order.
pub const NAMES: [&str; 15] = [
    "single-groupby-1-1-1",
    "single-groupby-1-1-12",
    "single-groupby-1-8-1",
    "single-groupby-5-1-1",
    "single-groupby-5-1-12",
    "single-groupby-5-8-1",
    "cpu-max-all-1",
    "cpu-max-all-8",
    "double-groupby-1",
    "double-groupby-5",
    "double-groupby-all",
    "high-cpu-1",
    "high-cpu-all",
    "lastpoint",
    "groupby-orderby-limit",
];

/// The data's extent: `hosts` hosts from `start_ns` (inclusive) to `end_ns` (exclusive).
#[derive(Debug, Clone, Copy)]
pub struct Extent {
    pub hosts: usize,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// Builds `instances` instances of every query type that fits the data: a window longer
/// than the data covers all of it (so a one-hour smoke run still runs every type), a type
/// that asks for more hosts than exist is left out.
pub fn query_types(extent: Extent, seed: u64, instances: usize) -> Vec<QueryType> {
    let mut rng = Rng::new(seed ^ 0x5155_4552_5953); // "QUERYS": apart from the data's seed
    NAMES
        .iter()
        .filter_map(|name| {
            let make = |rng: &mut Rng| instance(name, extent, rng);
            let first = make(&mut rng)?;
            let mut all = vec![first.0];
            for _ in 1..instances {
                all.push(make(&mut rng)?.0);
            }
            Some(QueryType {
                name: name.to_string(),
                description: first.1,
                instances: all,
            })
        })
        .collect()
}

/// One instance of `name` and its description, or `None` when it does not fit the data.
fn instance(name: &str, e: Extent, rng: &mut Rng) -> Option<(Query, String)> {
    let parts: Vec<&str> = name.split('-').collect();
    match parts.as_slice() {
        ["single", "groupby", m, h, t] => {
            let (m, h, t) = (m.parse().ok()?, h.parse().ok()?, t.parse::<i64>().ok()?);
            let window = window(e, t * HOUR, rng)?;
            let hosts = sample_hosts(e, h, rng)?;
            Some((
                groupby_time("minute", &FIELDS[..m], "max", Some(&hosts), window),
                format!("max of {m} field(s) per minute, {h} host(s), {t} h"),
            ))
        }
        ["cpu", "max", "all", h] => {
            let h = h.parse().ok()?;
            let window = window(e, 8 * HOUR, rng)?;
            let hosts = sample_hosts(e, h, rng)?;
            Some((
                groupby_time("hour", &FIELDS, "max", Some(&hosts), window),
                format!("max of all fields per hour, {h} host(s), 8 h"),
            ))
        }
        ["double", "groupby", m] => {
            let m = if *m == "all" {
                FIELDS.len()
            } else {
                m.parse().ok()?
            };
            let window = window(e, 12 * HOUR, rng)?;
            Some((
                double_groupby(&FIELDS[..m], window),
                format!("avg of {m} field(s) per hour and host, all hosts, 12 h"),
            ))
        }
        ["high", "cpu", h] => {
            let window = window(e, 12 * HOUR, rng)?;
            let hosts = match *h {
                "all" => None,
                h => Some(sample_hosts(e, h.parse().ok()?, rng)?),
            };
            let which = hosts
                .as_ref()
                .map_or("all hosts".into(), |h| format!("{} host(s)", h.len()));
            Some((
                high_cpu(hosts.as_deref(), window),
                format!("rows with usage_user > 90, {which}, 12 h"),
            ))
        }
        ["lastpoint"] => Some((lastpoint(), "the last row of every host".into())),
        ["groupby", "orderby", "limit"] => {
            let before = e.start_ns + (rng.unit() * (e.end_ns - e.start_ns) as f64) as i64;
            let before = before / 1_000_000_000 * 1_000_000_000;
            Some((
                groupby_orderby_limit(before, e.start_ns),
                "max usage_user per minute before a random time, newest 5 minutes".into(),
            ))
        }
        _ => None,
    }
}

/// A random `[from, to)` of `len` inside the data, on whole seconds (all the data when it
/// is shorter than `len`).
fn window(e: Extent, len: i64, rng: &mut Rng) -> Option<(i64, i64)> {
    let room = e.end_ns - e.start_ns - len;
    if room < 0 {
        return Some((e.start_ns, e.end_ns));
    }
    let from = e.start_ns + (rng.unit() * room as f64) as i64;
    let from = from / 1_000_000_000 * 1_000_000_000;
    Some((from, from + len))
}

/// `n` distinct host names.
fn sample_hosts(e: Extent, n: usize, rng: &mut Rng) -> Option<Vec<String>> {
    if n > e.hosts {
        return None;
    }
    let mut picked: Vec<usize> = Vec::with_capacity(n);
    while picked.len() < n {
        let h = rng.below(e.hosts);
        if !picked.contains(&h) {
            picked.push(h);
        }
    }
    Some(picked.into_iter().map(|h| format!("host_{h}")).collect())
}

fn sql_time(ns: i64) -> String {
    format!("TIMESTAMP '{}'", civil(ns))
}

fn ch_time(ns: i64) -> String {
    format!("toDateTime64('{}', 9, 'UTC')", civil(ns))
}

fn influx_time(ns: i64) -> String {
    format!("'{}Z'", civil(ns).replace(' ', "T"))
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
fn civil(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn host_list(hosts: &[String]) -> String {
    hosts
        .iter()
        .map(|h| format!("'{h}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn influx_hosts(hosts: &[String]) -> String {
    let ors = hosts
        .iter()
        .map(|h| format!("hostname = '{h}'"))
        .collect::<Vec<_>>()
        .join(" OR ");
    format!("({ors})")
}

fn aggregates(func: &str, fields: &[&str]) -> String {
    fields
        .iter()
        .map(|f| format!("{func}({f}) AS {func}_{f}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn influx_aggregates(func: &str, fields: &[&str]) -> String {
    let func = if func == "avg" { "mean" } else { func };
    fields
        .iter()
        .map(|f| format!("{func}({f})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn groupby_time(
    unit: &str,
    fields: &[&str],
    func: &str,
    hosts: Option<&[String]>,
    (from, to): (i64, i64),
) -> Query {
    let aggs = aggregates(func, fields);
    let hosts_sql = hosts.map_or(String::new(), |h| {
        format!("hostname IN ({}) AND ", host_list(h))
    });
    let hosts_influx = hosts.map_or(String::new(), |h| format!("{} AND ", influx_hosts(h)));
    let body = |t: fn(i64) -> String| {
        format!(
            "SELECT date_trunc('{unit}', time) AS {unit}, {aggs} FROM cpu \
             WHERE {hosts_sql}time >= {} AND time < {} GROUP BY 1 ORDER BY 1",
            t(from),
            t(to)
        )
    };
    let influxql = format!(
        "SELECT {} FROM cpu WHERE {hosts_influx}time >= {} AND time < {} GROUP BY time(1{})",
        influx_aggregates(func, fields),
        influx_time(from),
        influx_time(to),
        &unit[..1]
    );
    Query {
        sql: body(sql_time),
        clickhouse: body(ch_time),
        influxql,
    }
}

fn double_groupby(fields: &[&str], (from, to): (i64, i64)) -> Query {
    let aggs = aggregates("avg", fields);
    let body = |t: fn(i64) -> String| {
        format!(
            "SELECT date_trunc('hour', time) AS hour, hostname, {aggs} FROM cpu \
             WHERE time >= {} AND time < {} GROUP BY 1, 2 ORDER BY 1, 2",
            t(from),
            t(to)
        )
    };
    Query {
        sql: body(sql_time),
        clickhouse: body(ch_time),
        influxql: format!(
            "SELECT {} FROM cpu WHERE time >= {} AND time < {} GROUP BY time(1h), hostname",
            influx_aggregates("avg", fields),
            influx_time(from),
            influx_time(to)
        ),
    }
}

fn high_cpu(hosts: Option<&[String]>, (from, to): (i64, i64)) -> Query {
    let hosts_sql = hosts.map_or(String::new(), |h| {
        format!(" AND hostname IN ({})", host_list(h))
    });
    let hosts_influx = hosts.map_or(String::new(), |h| format!(" AND {}", influx_hosts(h)));
    let body = |t: fn(i64) -> String| {
        format!(
            "SELECT * FROM cpu WHERE usage_user > 90 AND time >= {} AND time < {}{hosts_sql}",
            t(from),
            t(to)
        )
    };
    Query {
        sql: body(sql_time),
        clickhouse: body(ch_time),
        influxql: format!(
            "SELECT * FROM cpu WHERE usage_user > 90 AND time >= {} AND time < {}{hosts_influx}",
            influx_time(from),
            influx_time(to)
        ),
    }
}

fn lastpoint() -> Query {
    Query {
        sql: "SELECT DISTINCT ON (hostname) * FROM cpu ORDER BY hostname, time DESC".into(),
        clickhouse: "SELECT * FROM cpu ORDER BY hostname, time DESC LIMIT 1 BY hostname".into(),
        influxql: "SELECT last(*) FROM cpu GROUP BY hostname".into(),
    }
}

fn groupby_orderby_limit(before: i64, data_start: i64) -> Query {
    let body = |t: fn(i64) -> String| {
        format!(
            "SELECT date_trunc('minute', time) AS minute, max(usage_user) AS max_usage_user \
             FROM cpu WHERE time < {} GROUP BY 1 ORDER BY 1 DESC LIMIT 5",
            t(before)
        )
    };
    Query {
        sql: body(sql_time),
        clickhouse: body(ch_time),
        // InfluxQL needs a lower bound for GROUP BY time(); the data starts there.
        influxql: format!(
            "SELECT max(usage_user) FROM cpu WHERE time >= {} AND time < {} \
             GROUP BY time(1m) ORDER BY time DESC LIMIT 5",
            influx_time(data_start),
            influx_time(before)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_fits_a_day_of_ten_hosts_and_windows_stay_inside() {
        let e = Extent {
            hosts: 10,
            start_ns: 1_700_000_000_000_000_000,
            end_ns: 1_700_000_000_000_000_000 + 24 * HOUR,
        };
        let types = query_types(e, 1, 3);
        assert_eq!(types.len(), NAMES.len());
        let q = &types[2].instances[0]; // single-groupby-1-8-1
        assert_eq!(q.sql.matches("'host_").count(), 8, "{}", q.sql);
        assert!(
            q.sql.contains("max(usage_user) AS max_usage_user"),
            "{}",
            q.sql
        );
        assert!(q.influxql.contains("GROUP BY time(1m)"), "{}", q.influxql);
        assert_ne!(types[0].instances[0].sql, types[0].instances[1].sql);
    }

    #[test]
    fn short_data_is_queried_whole_and_missing_hosts_leave_types_out() {
        let e = Extent {
            hosts: 4,
            start_ns: 0,
            end_ns: HOUR,
        };
        let types = query_types(e, 1, 1);
        let names: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
        assert!(!names.contains(&"single-groupby-1-8-1"), "{names:?}");
        assert!(!names.contains(&"cpu-max-all-8"), "{names:?}");
        assert_eq!(names.len(), NAMES.len() - 3, "{names:?}");
        let day = types
            .iter()
            .find(|t| t.name == "double-groupby-1")
            .expect("fits");
        assert!(
            day.instances[0].sql.contains(
                "time >= TIMESTAMP '1970-01-01 00:00:00' AND time < TIMESTAMP '1970-01-01 01:00:00'"
            ),
            "{}",
            day.instances[0].sql
        );
    }
}

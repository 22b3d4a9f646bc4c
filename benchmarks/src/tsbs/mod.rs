//! The TSBS cpu-only benchmark: generates the data, loads it into a real `strata serve`
//! over HTTP line protocol (timed to durable acknowledgement), measures storage, then runs
//! every query type against Strata (Arrow Flight SQL, the ADBC driver) and the peers on the
//! same data, checks Strata's answers against DuckDB's, and writes a Markdown report.
//!
//! The query runner is `benchmarks/peers/tsbs.py`: the peers (DuckDB, chDB) are in-process
//! Python engines, and Strata is timed through the same Python process with ADBC, so every
//! engine pays for handing its result to a Python client.

pub mod data;
pub mod influx;
pub mod queries;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Deserialize;
use serde_json::json;

use crate::server::Strata;
use data::{FIELDS, Generator, INTERVAL_SECS, Values};
use queries::Extent;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// The database the benchmark writes to.
pub const DATABASE: &str = "benchmark";

/// How long the run waits for a server to persist, compact or otherwise come to rest.
const WAIT_LIMIT: Duration = Duration::from_secs(1800);

/// A system measured beside Strata (DuckDB always runs: it is the correctness reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    Duckdb,
    Chdb,
    Influxdb,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Duckdb => "duckdb",
            Peer::Chdb => "chdb",
            Peer::Influxdb => "influxdb",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Hosts (TSBS `--scale`).
    #[arg(long, default_value_t = 1000)]
    pub hosts: usize,
    /// Hours of data, one row per host per 10 s, ending at the last whole hour.
    #[arg(long, default_value_t = 24)]
    pub hours: u64,
    /// Seed of the data and of the queries' random windows and hosts.
    #[arg(long, default_value_t = 123)]
    pub seed: u64,
    /// Field values: integers (TSBS) or floats with two decimals.
    #[arg(long, value_enum, default_value = "int")]
    pub values: Values,
    /// Rows per write request (rounded to whole 10 s steps of every host).
    #[arg(long, default_value_t = 10_000)]
    pub batch_size: usize,
    /// Concurrent write requests.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Timed runs per query type (each with its own random parameters), after a warm-up.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Peers to compare with: `all`, `none`, or a list (duckdb, chdb, influxdb). DuckDB
    /// always runs, as the reference Strata's answers are checked against.
    #[arg(long, default_value = "none", value_parser = parse_compare)]
    pub compare: Compare,
    /// The `strata` binary to measure (by default the one beside this harness, i.e. of the
    /// same `cargo build --release --workspace --bins`).
    #[arg(long)]
    pub strata: Option<PathBuf>,
    /// How long a hot chunk stays in memory before it is persisted (`--persist-age` of
    /// `strata serve`); queries run once everything is persisted.
    #[arg(long, default_value = "2s")]
    pub persist_age: String,
    /// Python with the peers (`benchmarks/scripts/peers.sh` installs them and prints it).
    #[arg(long, env = "STRATA_BENCH_PYTHON")]
    pub python: Option<PathBuf>,
    /// Where the data, the server's directory and the peers' files go (a temporary
    /// directory, removed afterwards, by default).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Where the Markdown report goes (`benchmarks/results/tsbs-….md` by default).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// The runner's engine name for Strata queried in two plain Flight SQL RPCs a query
/// (GetFlightInfo, DoGet) rather than through ADBC's DBAPI cursor.
pub const STRATA_FLIGHT: &str = "strata-flight";

#[derive(Debug, Clone, Default)]
pub struct Compare(pub Vec<Peer>);

fn parse_compare(s: &str) -> std::result::Result<Compare, String> {
    let all = [Peer::Duckdb, Peer::Chdb, Peer::Influxdb];
    match s {
        "all" => Ok(Compare(all.to_vec())),
        "none" | "" => Ok(Compare(Vec::new())),
        list => list
            .split(',')
            .map(|p| {
                all.iter()
                    .copied()
                    .find(|peer| peer.name() == p.trim())
                    .ok_or_else(|| {
                        format!("unknown peer {p:?}: use duckdb, chdb, influxdb, all or none")
                    })
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Compare),
    }
}

/// Everything a run measured; the report is written from it.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub rows: u64,
    pub values: u64,
    pub line_protocol_bytes: u64,
    pub requests: usize,
    pub ingest: IngestFigures,
    pub influx_ingest: Option<IngestFigures>,
    pub hot_rows: u64,
    pub hot_bytes: u64,
    /// The raw tier once every chunk is persisted, before compaction: (files, bytes).
    pub strata_persisted: (u64, u64),
    /// Every tier once compaction and rollups are at rest: (tier, files, rows, bytes).
    pub strata_tiers: Vec<(String, u64, u64, u64)>,
    pub export_parquet_bytes: u64,
    pub influx_bytes: Option<u64>,
    /// How long InfluxDB took to come to rest after its load, and its CPU seconds then.
    pub influx_rest: Option<(Duration, Duration)>,
    pub peak_rss_bytes: u64,
    /// CPU seconds Strata's tier-maintenance threads spent from start until at rest.
    pub maintenance_cpu_to_rest: Duration,
    /// CPU seconds of every other Strata thread from the load's start until no row was
    /// left in the hot table (including the harness's polls of `system.tables`).
    pub ingest_path_cpu_to_persisted: Duration,
    pub queries: Vec<QueryFigures>,
    pub mismatches: Vec<String>,
    pub engines: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct IngestFigures {
    pub wall: Duration,
    /// CPU seconds the server spent (user + system) while loading.
    pub server_cpu: Duration,
    /// Of which on Strata's tier-maintenance threads (rollups and compaction of what
    /// was already persisted); zero for other systems.
    pub maintenance_cpu: Duration,
    pub retries: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QueryFigures {
    pub name: String,
    pub description: String,
    /// Engine name → timing.
    pub engines: std::collections::BTreeMap<String, Timing>,
    pub checked: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Timing {
    pub median_ms: f64,
    pub p95_ms: f64,
    pub min_ms: f64,
    pub rows: u64,
    #[serde(default)]
    pub error: Option<String>,
}

/// Runs the whole benchmark and writes the report; an Err when anything failed,
/// including a Strata answer that differs from DuckDB's.
pub async fn run(opts: &Options) -> Result<(Outcome, PathBuf)> {
    let scratch;
    let work = match &opts.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            scratch = tempfile::tempdir()?;
            scratch.path().to_path_buf()
        }
    };
    let python = match &opts.python {
        Some(p) => p.clone(),
        None => install_peers()?,
    };
    let steps = opts.hours * 3600 / INTERVAL_SECS as u64;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as i64;
    let hour = 3_600_000_000_000;
    let start_ns = now / hour * hour - opts.hours as i64 * hour;
    let mut generator = Generator::new(opts.seed, opts.hosts, start_ns, steps, opts.values);
    let extent = Extent {
        hosts: opts.hosts,
        start_ns,
        end_ns: generator.end_ns(),
    };

    // Data first, before any clock starts: we measure the systems, not the generator.
    eprintln!(
        "tsbs: generating {} hosts × {} h = {} rows",
        opts.hosts,
        opts.hours,
        generator.rows()
    );
    let parquet_path = work.join("cpu.parquet");
    let bodies = generate(&mut generator, opts, &parquet_path)?;
    let mut outcome = Outcome {
        rows: generator.rows(),
        values: generator.rows() * FIELDS.len() as u64,
        line_protocol_bytes: bodies.iter().map(|b| b.len() as u64).sum(),
        requests: bodies.len(),
        export_parquet_bytes: std::fs::metadata(&parquet_path)?.len(),
        ..Outcome::default()
    };

    let data_dir = work.join("strata");
    let binary = crate::server::strata_binary(opts.strata.as_deref())?;
    // Rollups and compaction act on a window as soon as it ends (20 minutes later by
    // default), so the storage measured is what a server holds at rest.
    let config = work.join("strata.toml");
    std::fs::write(
        &config,
        "[storage]\nrollup_interval = \"1s\"\nrollup_settle = \"0s\"\n",
    )?;
    let config = config.to_string_lossy().into_owned();
    let server = Strata::start(
        &binary,
        &data_dir,
        &["--persist-age", &opts.persist_age, "--config", &config],
    )?;
    let pid = server.child.id();
    let client = reqwest::Client::new();
    eprintln!(
        "tsbs: loading {} requests into strata ({} workers)",
        bodies.len(),
        opts.workers
    );
    let url = server.url(&format!(
        "/api/v3/write_lp?db={DATABASE}&precision=nanosecond"
    ));
    // CPU from the load's start until every row is in Parquet: the load's figure alone
    // leaves out the persistence still running when the last write is acknowledged.
    let cpu_start = cpu_time(pid).unwrap_or_default();
    let maintenance_start = maintenance_cpu_time(pid).unwrap_or_default();
    outcome.ingest = load(&client, &url, &bodies, opts.workers, Some(pid), |s| {
        s == 204
    })
    .await?;
    outcome.peak_rss_bytes = peak_rss(pid).unwrap_or(0);

    let tables = || async {
        let rows = server
            .sql(
                &client,
                DATABASE,
                "SELECT * FROM system.tables WHERE table_name = 'cpu'",
            )
            .await?;
        rows.into_iter()
            .next()
            .ok_or_else(|| Error::from("no cpu table after the load"))
    };
    let t = tables().await?;
    outcome.hot_rows = t["hot_rows"].as_u64().unwrap_or(0);
    outcome.hot_bytes = t["hot_bytes"].as_u64().unwrap_or(0);
    eprintln!("tsbs: waiting until every chunk is persisted");
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let t = tables().await?;
        if t["hot_rows"].as_u64() == Some(0) {
            let cpu = cpu_time(pid).unwrap_or_default().saturating_sub(cpu_start);
            let maintenance = maintenance_cpu_time(pid)
                .unwrap_or_default()
                .saturating_sub(maintenance_start);
            outcome.ingest_path_cpu_to_persisted = cpu.saturating_sub(maintenance);
            outcome.strata_persisted = (
                t["parquet_files"].as_u64().unwrap_or(0),
                t["parquet_bytes"].as_u64().unwrap_or(0),
            );
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("persistence did not finish in {WAIT_LIMIT:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let counted = server
        .sql(&client, DATABASE, "SELECT count(*) AS n FROM cpu")
        .await?;
    if counted[0]["n"].as_u64() != Some(outcome.rows) {
        return Err(format!(
            "strata holds {} rows, {} were written",
            counted[0]["n"], outcome.rows
        )
        .into());
    }
    eprintln!("tsbs: waiting until compaction and rollups are at rest");
    let tiers_sql = "SELECT tier, count(*) AS files, sum(row_count) AS n, \
                     sum(size_bytes) AS bytes FROM system.parquet_files \
                     WHERE table_name = 'cpu' GROUP BY tier ORDER BY tier";
    let (mut last, mut same_since) = (Vec::new(), Instant::now());
    // Maintenance CPU as of `same_since`: one rollup or compaction can outlast any quiet
    // period of the file list, but not without using the maintenance thread.
    let mut busy_mark = maintenance_cpu_time(pid).unwrap_or_default();
    loop {
        let rows = server.sql(&client, DATABASE, tiers_sql).await?;
        let tiers: Vec<(String, u64, u64, u64)> = rows
            .iter()
            .map(|r| {
                let n = |k: &str| r[k].as_u64().unwrap_or(0);
                let tier = r["tier"].as_str().unwrap_or("").to_string();
                (tier, n("files"), n("n"), n("bytes"))
            })
            .collect();
        let busy = maintenance_cpu_time(pid).unwrap_or_default();
        if tiers != last || busy.saturating_sub(busy_mark) > Duration::from_secs(1) {
            (last, same_since, busy_mark) = (tiers, Instant::now(), busy);
        } else if same_since.elapsed() > Duration::from_secs(30) {
            // Thirty maintenance passes without a change to the files and with the
            // maintenance thread idle.
            outcome.strata_tiers = last;
            outcome.maintenance_cpu_to_rest = maintenance_cpu_time(pid).unwrap_or_default();
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("compaction did not come to rest in {WAIT_LIMIT:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    outcome.peak_rss_bytes = outcome.peak_rss_bytes.max(peak_rss(pid).unwrap_or(0));

    let influx = if opts.compare.0.contains(&Peer::Influxdb) {
        let influx = influx::Influx::start(&work.join("influxdb"))?;
        eprintln!("tsbs: loading the same line protocol into InfluxDB");
        let url = influx.write_url(DATABASE);
        influx.create_database(&client, DATABASE).await?;
        outcome.influx_ingest = Some(
            load(
                &client,
                &url,
                &bodies,
                opts.workers,
                Some(influx.pid()),
                |s| s == 204,
            )
            .await?,
        );
        eprintln!("tsbs: waiting until InfluxDB's compaction is at rest");
        outcome.influx_rest = Some(at_rest(influx.pid(), WAIT_LIMIT).await?);
        Some(influx)
    } else {
        None
    };
    drop(bodies);

    let types = queries::query_types(extent, opts.seed, opts.runs.max(1));
    // Strata twice: through ADBC (a DBAPI cursor, four RPCs a query) and in the two RPCs of
    // a Flight SQL client that does not prepare statements (`strata-flight`).
    let mut engines = vec![
        "strata".to_string(),
        STRATA_FLIGHT.to_string(),
        "duckdb".to_string(),
    ];
    for p in &opts.compare.0 {
        if !engines.iter().any(|e| e == p.name()) {
            engines.push(p.name().to_string());
        }
    }
    let spec = json!({
        "flight": server.addrs.flight,
        "database": DATABASE,
        "parquet": parquet_path,
        "engines": engines,
        "influx": influx.as_ref().map(|i| i.url()),
        "types": types,
    });
    let spec_path = work.join("queries.json");
    let results_path = work.join("results.json");
    std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec)?)?;
    eprintln!(
        "tsbs: running {} query types on {}",
        types.len(),
        engines.join(", ")
    );
    let runner = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/tsbs.py");
    let status = tokio::process::Command::new(&python)
        .arg(&runner)
        .arg(&spec_path)
        .arg(&results_path)
        .status()
        .await
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !status.success() {
        return Err(format!("the query runner failed ({status})").into());
    }
    #[derive(Deserialize)]
    struct Results {
        types: Vec<QueryFigures>,
        mismatches: Vec<String>,
    }
    let results: Results = serde_json::from_slice(&std::fs::read(&results_path)?)?;
    outcome.queries = results.types;
    outcome.mismatches = results.mismatches;
    outcome.engines = engines;
    if let Some(i) = &influx {
        outcome.influx_bytes = Some(i.disk_bytes());
    }
    outcome.peak_rss_bytes = outcome.peak_rss_bytes.max(peak_rss(pid).unwrap_or(0));

    let report_path = opts.report.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
            "results/tsbs-{}-hosts-{}h-{}-{}.md",
            opts.hosts,
            opts.hours,
            match opts.values {
                Values::Int => "int",
                Values::Float => "float",
            },
            chrono::Utc::now().format("%Y-%m-%d")
        ))
    });
    if let Some(dir) = report_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&report_path, report::markdown(opts, &outcome))?;
    if !outcome.mismatches.is_empty() {
        return Err(format!(
            "{} Strata answer(s) differ from DuckDB's, first: {}",
            outcome.mismatches.len(),
            outcome.mismatches[0]
        )
        .into());
    }
    // A peer's failures are reported; Strata's or the reference's fail the run.
    let fatal = |e: &str| ["strata", STRATA_FLIGHT, "duckdb"].contains(&e);
    let failures = || {
        outcome.queries.iter().flat_map(|q| {
            q.engines
                .iter()
                .filter_map(move |(e, t)| t.error.as_ref().map(|err| (q, e, err)))
        })
    };
    if failures().any(|(_, e, _)| fatal(e)) {
        let failed: Vec<String> = failures()
            .map(|(q, e, err)| format!("{} on {e}: {err}", q.name))
            .collect();
        return Err(format!("queries failed: {}", failed.join("; ")).into());
    }
    Ok((outcome, report_path))
}

/// Generates every request body, and the same rows as one Parquet file for the peers.
fn generate(g: &mut Generator, opts: &Options, parquet: &Path) -> Result<Vec<String>> {
    let steps_per_body = (opts.batch_size / opts.hosts.max(1)).max(1) as u64;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .build();
    let file = std::fs::File::create(parquet)?;
    let mut writer = ArrowWriter::try_new(file, data::schema(opts.values), Some(props))?;
    let mut bodies = Vec::new();
    while !g.done() {
        let (lines, batch) = g.next_steps(steps_per_body)?;
        writer.write(&batch)?;
        bodies.push(lines);
    }
    writer.close()?;
    Ok(bodies)
}

/// Posts every body with `workers` in flight; retries what the server asks to retry
/// (503 over its memory budget, 429), with a short backoff. Timed to the last success.
async fn load(
    client: &reqwest::Client,
    url: &str,
    bodies: &[String],
    workers: usize,
    pid: Option<u32>,
    ok: impl Fn(u16) -> bool + Copy,
) -> Result<IngestFigures> {
    let cpu_before = pid.and_then(cpu_time);
    let maintenance_before = pid.and_then(maintenance_cpu_time);
    let started = Instant::now();
    let results: Vec<Result<u64>> = futures::stream::iter(bodies)
        .map(|body| async move {
            let mut retries = 0u64;
            loop {
                let r = client.post(url).body(body.clone()).send().await?;
                let status = r.status().as_u16();
                if ok(status) {
                    return Ok(retries);
                }
                if (status == 503 || status == 429) && retries < 10_000 {
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(20 * retries.min(10))).await;
                    continue;
                }
                return Err(format!("write failed: {status} {}", r.text().await?).into());
            }
        })
        .buffer_unordered(workers.max(1))
        .collect()
        .await;
    let wall = started.elapsed();
    let cpu_after = pid.and_then(cpu_time);
    let maintenance_after = pid.and_then(maintenance_cpu_time);
    let mut retries = 0;
    for r in results {
        retries += r?;
    }
    Ok(IngestFigures {
        wall,
        server_cpu: match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => Duration::ZERO,
        },
        maintenance_cpu: match (maintenance_before, maintenance_after) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => Duration::ZERO,
        },
        retries,
    })
}

/// Waits at most `limit` until process `pid` is at rest: it used under a tenth of a
/// CPU-second in each of three 5-second spans in a row. A server still compacting what it
/// was sent would take CPU from every system timed after it (influxd compacts its TSM files
/// for minutes after a load, on a machine of two cores). Returns the time it took and the
/// CPU it used.
async fn at_rest(pid: u32, limit: Duration) -> Result<(Duration, Duration)> {
    const SPAN: Duration = Duration::from_secs(5);
    const QUIET: Duration = Duration::from_millis(100);
    let started = Instant::now();
    let first = cpu_time(pid).ok_or("the server's CPU time cannot be read")?;
    let (mut mark, mut quiet_spans) = (first, 0);
    while quiet_spans < 3 {
        if started.elapsed() > limit {
            return Err(format!("process {pid} did not come to rest in {limit:?}").into());
        }
        tokio::time::sleep(SPAN).await;
        let now = cpu_time(pid).ok_or("the server's CPU time cannot be read")?;
        quiet_spans = if now.saturating_sub(mark) < QUIET {
            quiet_spans + 1
        } else {
            0
        };
        mark = now;
    }
    Ok((started.elapsed(), mark.saturating_sub(first)))
}

/// User + system CPU time of a process so far (Linux `/proc/<pid>/stat`).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    stat_cpu_time(&format!("/proc/{pid}/stat"))
}

/// User + system CPU time so far of a Strata server's tier-maintenance threads (by
/// thread name, `/proc/<pid>/task/*/comm`). `None` if it has none.
pub fn maintenance_cpu_time(pid: u32) -> Option<Duration> {
    let mut found = None;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(strata_engine::MAINTENANCE_THREAD) {
            continue;
        }
        if let Some(t) = stat_cpu_time(&task.path().join("stat").to_string_lossy()) {
            *found.get_or_insert(Duration::ZERO) += t;
        }
    }
    found
}

/// User + system CPU time in a `/proc/…/stat` file.
fn stat_cpu_time(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// Peak resident memory of a process (`VmHWM`), in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Installs the peers (idempotent) with `benchmarks/scripts/peers.sh` and returns the
/// Python that has them.
fn install_peers() -> Result<PathBuf> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/peers.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg("python")
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("{} failed", script.display()).into());
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

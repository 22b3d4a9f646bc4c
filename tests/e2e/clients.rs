//! Real client libraries from PyPI (installed by `scripts/test.sh` into a virtualenv
//! outside the clone) against the real binary: ADBC's Go-based Flight SQL driver (the
//! client family of Grafana's FlightSQL plugin) and `influxdb3-python`. The scripts are in
//! `tests/python/`; each checks a time-bucketed aggregate against what was written.

use std::path::PathBuf;
use std::process::Command;

use super::flight::write_fleet;
use super::server::Server;

/// The virtualenv's Python: `STRATA_PYTHON`, else where `scripts/test.sh` puts it.
pub(super) fn python() -> PathBuf {
    let path = std::env::var_os("STRATA_PYTHON").map_or_else(
        || {
            let home = std::env::var_os("HOME").expect("HOME");
            PathBuf::from(home).join(".cache/strata/venv/bin/python")
        },
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh, which installs the Python clients",
        path.display()
    );
    path
}

/// Runs a script of `tests/python/`; panics with its output on failure, else returns
/// its stdout.
pub(super) fn run_script(script: &str, args: &[&str]) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn adbc_flight_sql_driver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]).await;
    let start = write_fleet(&s).await.to_string();
    run_script("flight_clients.py", &["adbc", &s.flight, &start]);
}

#[tokio::test]
async fn influxdb3_python_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]).await;
    let start = write_fleet(&s).await.to_string();
    run_script("flight_clients.py", &["influxdb3", &s.http, &start]);
}

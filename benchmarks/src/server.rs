//! Starting a `strata serve` process and reading its listening line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Strata {
    pub child: Child,
    pub http: String,
    pub addrs: Addrs,
}

/// The addresses of the `strata listening http=… flight=… pg=…` line.
#[derive(Debug, Clone, Default)]
pub struct Addrs {
    pub http: String,
    pub flight: String,
    pub pg: String,
}

impl Addrs {
    fn parse(line: &str) -> Option<Self> {
        let mut a = Self::default();
        for word in line.split_whitespace() {
            if let Some((k, v)) = word.split_once('=') {
                match k {
                    "http" => a.http = v.to_string(),
                    "flight" => a.flight = v.to_string(),
                    "pg" => a.pg = v.to_string(),
                    _ => {}
                }
            }
        }
        (!a.http.is_empty() && !a.flight.is_empty() && !a.pg.is_empty()).then_some(a)
    }
}

/// Starts `strata serve` on free ports with data in `data_dir`; returns the process and
/// the addresses from its `strata listening …` line. Stderr is inherited.
pub fn spawn(binary: &Path, data_dir: &Path, extra: &[&str]) -> std::io::Result<(Child, Addrs)> {
    // Free ports unless `extra` names an address.
    let defaults: Vec<&str> = ["--http-addr", "--flight-addr", "--pg-addr"]
        .into_iter()
        .filter(|flag| !extra.contains(flag))
        .flat_map(|flag| [flag, "127.0.0.1:0"])
        .collect();
    let mut child = Command::new(binary)
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(defaults)
        .args(extra)
        // `STRATA_TEST_LOG=info,strata_ingest=debug` shows more of a test's servers.
        .env(
            "STRATA_LOG",
            std::env::var("STRATA_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .spawn()?;
    let Some(out) = child.stdout.take() else {
        let _ = child.kill();
        return Err(std::io::Error::other("no stdout"));
    };
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    match Addrs::parse(&line) {
        Some(addrs) => Ok((child, addrs)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(std::io::Error::other(format!(
                "no listening line: {line:?}"
            )))
        }
    }
}

/// The `strata` binary: `given`, else the one beside this harness.
pub fn strata_binary(given: Option<&Path>) -> std::io::Result<std::path::PathBuf> {
    match given {
        Some(b) => Ok(b.to_path_buf()),
        None => Ok(std::env::current_exe()?.with_file_name("strata")),
    }
}

impl Strata {
    pub fn start(binary: &Path, data_dir: &Path, extra: &[&str]) -> std::io::Result<Self> {
        let (child, addrs) = spawn(binary, data_dir, extra)?;
        Ok(Self {
            child,
            http: addrs.http.clone(),
            addrs,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// Rows of a query on database `db` through the HTTP API, as JSON objects.
    pub async fn sql(
        &self,
        client: &reqwest::Client,
        db: &str,
        sql: &str,
    ) -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error + Send + Sync>> {
        let r = client
            .get(self.url("/api/v3/query_sql"))
            .query(&[("db", db), ("q", sql), ("format", "json")])
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(format!("query {sql:?} failed: {}", r.text().await?).into());
        }
        Ok(r.json().await?)
    }
}

impl Drop for Strata {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

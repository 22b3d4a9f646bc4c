//! Starting a `strata serve` process and reading its listening line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Strata {
    pub child: Child,
    pub http: String,
}

/// Starts `strata serve` on free ports with data in `data_dir`; returns the process and
/// the HTTP address from its `strata listening …` line. Stderr is inherited.
pub fn spawn(binary: &Path, data_dir: &Path, extra: &[&str]) -> std::io::Result<(Child, String)> {
    let mut child = Command::new(binary)
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--flight-addr",
            "127.0.0.1:0",
            "--pg-addr",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("STRATA_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let Some(out) = child.stdout.take() else {
        let _ = child.kill();
        return Err(std::io::Error::other("no stdout"));
    };
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    match line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
    {
        Some(http) => Ok((child, http.to_string())),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(std::io::Error::other(format!(
                "no listening line: {line:?}"
            )))
        }
    }
}

impl Strata {
    pub fn start(binary: &Path, data_dir: &Path, extra: &[&str]) -> std::io::Result<Self> {
        let (child, http) = spawn(binary, data_dir, extra)?;
        Ok(Self { child, http })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }
}

impl Drop for Strata {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Starting a `strata serve` process and reading its listening line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Strata {
    pub child: Child,
    pub http: String,
}

impl Strata {
    pub fn start(binary: &Path, data_dir: &Path, extra: &[&str]) -> std::io::Result<Self> {
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
        let out = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        let http = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .ok_or_else(|| std::io::Error::other(format!("no listening line: {line:?}")))?
            .to_string();
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

//! InfluxDB 1.x (Debian's `influxdb` package) as a peer: an `influxd` of its own on free
//! loopback ports with everything under the work directory, stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Result;

pub struct Influx {
    child: Child,
    http: String,
    dir: PathBuf,
}

impl Influx {
    /// Starts `influxd` (from `PATH`, or `/usr/bin/influxd`) and waits for `/ping`.
    pub fn start(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let http = free_addr()?;
        let rpc = free_addr()?;
        let d = dir.display();
        let config = format!(
            "reporting-disabled = true\n\
             bind-address = \"{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n  logging-enabled = false\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  enabled = true\n  bind-address = \"{http}\"\n  log-enabled = false\n  max-body-size = 0\n\
             [monitor]\n  store-enabled = false\n\
             [continuous_queries]\n  enabled = false\n\
             [logging]\n  level = \"warn\"\n"
        );
        let config_path = dir.join("influxdb.conf");
        std::fs::write(&config_path, config)?;
        let binary = which("influxd").unwrap_or_else(|| PathBuf::from("/usr/bin/influxd"));
        let child = Command::new(&binary)
            .arg("-config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "{}: {e} (benchmarks/scripts/peers.sh installs it)",
                    binary.display()
                )
            })?;
        let mut me = Self {
            child,
            http,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(&me.http) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /ping HTTP/1.0\r\n\r\n");
                let mut reply = String::new();
                let _ = s.read_to_string(&mut reply);
                if reply.starts_with("HTTP/1.0 204") || reply.starts_with("HTTP/1.1 204") {
                    return Ok(me);
                }
            }
            if let Ok(Some(status)) = me.child.try_wait() {
                return Err(format!("influxd exited at start: {status}").into());
            }
            if Instant::now() > deadline {
                let _ = me.child.kill();
                return Err("influxd did not answer /ping within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn write_url(&self, db: &str) -> String {
        format!("http://{}/write?db={db}&precision=ns", self.http)
    }

    pub async fn create_database(&self, client: &reqwest::Client, db: &str) -> Result<()> {
        let r = client
            .post(format!("http://{}/query", self.http))
            .form(&[("q", format!("CREATE DATABASE {db}"))])
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(format!("CREATE DATABASE: {}", r.text().await?).into());
        }
        Ok(())
    }

    /// Bytes under its data and WAL directories.
    pub fn disk_bytes(&self) -> u64 {
        dir_bytes(&self.dir.join("data")) + dir_bytes(&self.dir.join("wal"))
    }
}

impl Drop for Influx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

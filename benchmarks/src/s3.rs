//! A real S3-API server (s3s-fs, installed by `scripts/s3.sh`) for the cold tier in tests
//! and benchmarks. A bucket is a directory under the server's root.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "strata-test";
pub const SECRET_KEY: &str = "strata-test-secret";

/// Where `scripts/s3.sh install` puts s3s-fs (or `$STRATA_S3S`).
pub fn s3s_path() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATA_S3S") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    Path::new(&home).join(".cache/strata/tools/bin/s3s-fs")
}

/// A running s3s-fs; killed when dropped.
pub struct S3Server {
    child: Option<Child>,
    root: PathBuf,
    log: PathBuf,
    port: u16,
}

impl S3Server {
    /// Serves `root` (created if missing) on a free port; output goes to `log`.
    pub fn start(root: &Path, log: &Path) -> std::io::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut s = Self {
            child: None,
            root: root.to_path_buf(),
            log: log.to_path_buf(),
            port,
        };
        s.restart()?;
        Ok(s)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (a directory of the root).
    pub fn create_bucket(&self, name: &str) -> std::io::Result<PathBuf> {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Kills the server (an outage); [`Self::restart`] brings it back on the same port.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        let bin = s3s_path();
        if !bin.exists() {
            return Err(std::io::Error::other(format!(
                "the S3-API server is not installed at {} (run scripts/s3.sh install, \
                 or scripts/test.sh, which does)",
                bin.display()
            )));
        }
        std::fs::create_dir_all(&self.root)?;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "s3s-fs exited with {status}; see {}",
                    self.log.display()
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(std::io::Error::other("s3s-fs did not start listening"));
            }
            // Polling a port that is about to open; bounded by the deadline above.
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

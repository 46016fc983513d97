//! Child processes (our server, the Node reference server and driver) that are stopped
//! when their guard drops, also while a panic unwinds; and what /proc says about them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use lotse_testkit::TestDb;
use lotse_testkit::process::{Process, Stream, listening_addr, serve_command};

/// A running child (through `lotse_testkit`'s `Process`, which kills and reaps it on
/// drop), with what the bench reads from its output.
pub struct Proc {
    process: Process,
    pub addr: SocketAddr,
    /// Documents resident in our server's cache as its last "document cache trimmed"
    /// log line said (JSON logs); -1 before any.
    resident: Arc<AtomicI64>,
    /// The last lines the child wrote to stderr, to say why it died.
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

const STDERR_TAIL: usize = 20;

impl Proc {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Spawns `cmd` and waits (up to `deadline`) for a stdout line that `parse` accepts.
    fn spawn(
        name: &'static str,
        cmd: Command,
        deadline: Duration,
        parse: fn(&str) -> Option<SocketAddr>,
    ) -> Result<Self> {
        let resident = Arc::new(AtomicI64::new(-1));
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (seen, tail) = (resident.clone(), stderr_tail.clone());
        let process = Process::spawn(name, cmd, deadline, parse, move |stream, line| {
            match stream {
                // Our server logs to stdout; JSON when the bench starts it.
                Stream::Stdout if line.contains("document cache trimmed") => {
                    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
                    if let Some(n) = v["fields"]["resident"].as_i64() {
                        seen.store(n, Ordering::SeqCst);
                    }
                }
                Stream::Stdout => {}
                Stream::Stderr => {
                    let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                    if tail.len() == STDERR_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line.to_owned());
                }
            }
        })?;
        Ok(Proc {
            addr: process.addr,
            process,
            resident,
            stderr_tail,
        })
    }

    pub fn status(&self) -> ProcStatus {
        ProcStatus::of(self.pid())
    }

    /// `Err` with its exit status and last stderr lines when the child has exited.
    pub fn check_alive(&self) -> Result<()> {
        match self.process.exited() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                let tail = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
                let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
                bail!(
                    "the process exited ({status}); its last stderr lines:\n{}",
                    tail.join("\n")
                )
            }
            Err(e) => bail!("cannot query the process: {e}"),
        }
    }

    /// Runs `f`, failing early with the child's last words if it dies meanwhile.
    pub async fn while_alive<T>(&self, f: impl Future<Output = Result<T>>) -> Result<T> {
        let watch = async {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Err(e) = self.check_alive() {
                    return e;
                }
            }
        };
        tokio::select! {
            r = f => r,
            e = watch => Err(e),
        }
    }

    /// What the server last logged as resident after trimming its document cache.
    pub fn resident_after_trim(&self) -> Option<u64> {
        u64::try_from(self.resident.load(Ordering::SeqCst)).ok()
    }
}

/// Memory and CPU of a process, from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStatus {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// utime + stime in clock ticks (USER_HZ, 100 on Linux).
    pub cpu_ticks: u64,
}

impl ProcStatus {
    pub fn of(pid: u32) -> Self {
        let mut s = Self::default();
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            for line in text.lines() {
                let kib = || {
                    line.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                };
                if line.starts_with("VmRSS:") {
                    s.rss_kib = kib();
                } else if line.starts_with("VmHWM:") {
                    s.hwm_kib = kib();
                }
            }
        }
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // Fields after the command name (which may hold spaces) end with ')'.
            if let Some(rest) = text.rsplit_once(')').map(|(_, r)| r) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                // rest starts at field 3 (state); utime is field 14, stime 15.
                let t = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
                s.cpu_ticks = t(14).unwrap_or(0) + t(15).unwrap_or(0);
            }
        }
        s
    }
}

pub fn self_status() -> ProcStatus {
    ProcStatus::of(std::process::id())
}

fn parse_node(line: &str) -> Option<SocketAddr> {
    let port: u16 = line.strip_prefix("listening ")?.trim().parse().ok()?;
    Some(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Our server on a free loopback port over the database `db`.
pub fn start_server(bin: &Path, db: &TestDb, extra: &[&str]) -> Result<Proc> {
    let mut cmd = serve_command(bin, &db.url);
    cmd.args(extra)
        .args(["--log-format", "json"])
        // The bench's phones share a few device tokens (one enrolled device stands for
        // thousands of idle phones), so the per-device cap of production is lifted.
        .args(["--sockets-per-device", "1000000"])
        // Warnings, and the cache trimming that scenario 3 reads.
        .env("RUST_LOG", "warn,lotse_server::cache=info");
    Proc::spawn("lotse-server", cmd, Duration::from_secs(60), listening_addr)
}

/// The automerge-repo reference server over the storage folder `dir`.
pub fn start_reference(js: &Path, dir: &Path) -> Result<Proc> {
    let mut cmd = Command::new("node");
    cmd.arg(js.join("reference-server.mjs")).arg("0").arg(dir);
    Proc::spawn("reference-server", cmd, Duration::from_secs(60), parse_node)
}

/// Runs the JS driver to completion (killed at the deadline), returning its JSON line.
pub async fn run_driver(
    js: &Path,
    args: &[String],
    deadline: Duration,
) -> Result<serde_json::Value> {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(js.join("driver.mjs"))
        .args(args)
        .env("BENCH_TIMEOUT_MS", deadline.as_millis().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().context("starting node driver.mjs")?;
    let out = tokio::time::timeout(deadline + Duration::from_secs(10), child.wait_with_output())
        .await
        .map_err(|_| anyhow!("driver {args:?} exceeded {deadline:?}"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line).with_context(|| {
        format!(
            "driver {:?} printed {line:?}; stderr: {}",
            args.first(),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if v["status"] != "ok" {
        bail!("driver {:?} failed: {}", args.first(), v["reason"]);
    }
    Ok(v)
}

/// bench/js, with its Node packages installed (npm install on first use).
pub fn js_dir() -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js");
    if !dir.join("node_modules/@automerge/automerge-repo").exists() {
        eprintln!("installing the Node packages in {}", dir.display());
        let ok = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .context("running npm install (is Node 20 installed?)")?
            .success();
        if !ok {
            bail!("npm install failed in {}", dir.display());
        }
    }
    Ok(dir)
}

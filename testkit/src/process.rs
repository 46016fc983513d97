//! The lotse-server binary as a child process, for what an in-process server cannot show:
//! a real kill, the command line, the memory and CPU of the server alone. The port is
//! the free one the system picks (`--bind 127.0.0.1:0`), read back from the line the
//! server prints once it listens.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Which output of the child a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A child process that has said where it listens; killed (SIGKILL) and reaped when
/// dropped, so no path through a test or the bench, a panic included, leaves it behind.
pub struct Process {
    child: Mutex<Child>,
    pid: u32,
    pub addr: SocketAddr,
}

impl Process {
    /// Spawns `cmd` and waits up to `deadline` for a stdout line from which `addr` reads
    /// the address. Both outputs are read for the child's whole life, so it never blocks
    /// on a full pipe, and each line goes to `on_line`. Lines are read as bytes: one cut
    /// short by a kill need not be valid UTF-8 and must not stop the reading.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        deadline: Duration,
        addr: fn(&str) -> Option<SocketAddr>,
        on_line: impl Fn(Stream, &str) + Send + Sync + 'static,
    ) -> io::Result<Self> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting {name}: {e}")))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        // From here on the guard owns the child: an early return below still kills it.
        let mut process = Self {
            pid: child.id(),
            child: Mutex::new(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let on_line = Arc::new(on_line);
        let (tx, rx) = mpsc::channel();
        let each = on_line.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            read_lines(stdout, |line| {
                each(Stream::Stdout, line);
                if let Some(a) = addr(line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(a);
                }
            });
        });
        std::thread::spawn(move || read_lines(stderr, |line| on_line(Stream::Stderr, line)));
        process.addr = rx.recv_timeout(deadline).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{name} did not report its address within {deadline:?}"),
            ),
            mpsc::RecvTimeoutError::Disconnected => {
                io::Error::other(format!("{name} exited before reporting its address"))
            }
        })?;
        Ok(process)
    }

    /// `lotse-server serve` (see `serve_command`), output discarded.
    pub fn serve(bin: &Path, database_url: &str) -> io::Result<Self> {
        Self::spawn(
            "lotse-server",
            serve_command(bin, database_url),
            Duration::from_secs(60),
            listening_addr,
            |_, _| {},
        )
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The exit status if the child has exited, without waiting.
    pub fn exited(&self) -> io::Result<Option<ExitStatus>> {
        self.lock().try_wait()
    }

    /// Waits for the child to exit (after a signal the test sent it).
    pub fn wait(&self) -> io::Result<ExitStatus> {
        self.lock().wait()
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reaps it.
    pub fn kill(&self) -> io::Result<ExitStatus> {
        let mut child = self.lock();
        child.kill()?;
        child.wait()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn read_lines(from: impl Read, mut each: impl FnMut(&str)) {
    let mut from = BufReader::new(from);
    let mut line = Vec::new();
    while let Ok(n) = from.read_until(b'\n', &mut line) {
        if n == 0 {
            break;
        }
        each(String::from_utf8_lossy(&line).trim_end());
        line.clear();
    }
}

/// `lotse-server serve` on a free loopback port over `database_url`, logging warnings
/// only, with Leitung logging in by password alone (`--two-factor-optional`: the
/// coordinators these tests make have no second factor; `server/tests/team.rs` tests
/// it); the caller adds flags and environment. Settings of the caller's environment
/// that the flags do not override are removed, so they cannot leak in.
pub fn serve_command(bin: &Path, database_url: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args([
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--database-url",
        database_url,
        "--two-factor-optional",
    ])
    .env_remove("DATABASE_URL")
    .env_remove("LOTSE_BIND")
    .env("RUST_LOG", "warn");
    cmd
}

/// The address from the line the server prints once it listens
/// (`... listening on http://127.0.0.1:PORT`).
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    line.split("listening on http://")
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

/// `lotse-server create-coordinator` on `database_url`, the password on stdin, bounded
/// by a minute; on failure the error carries what the command wrote to stderr.
pub fn create_coordinator(
    bin: &Path,
    database_url: &str,
    org: &str,
    email: &str,
    password: &str,
) -> io::Result<()> {
    let mut child = Command::new(bin)
        .args(["create-coordinator", "--database-url", database_url])
        .args(["--org", org, "--email", email, "--password-stdin"])
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(password.as_bytes())?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "create-coordinator did not finish within 60 s",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    Err(io::Error::other(format!(
        "create-coordinator failed ({status}): {stderr}"
    )))
}

//! Child processes that cannot outlive the test: every binary runs under a small `sh`
//! wrapper that kills it when the wrapper's stdin (a pipe the test holds) reaches EOF, which
//! happens when the guard closes it or when the test process dies for any reason.
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// `sh -c WRAPPER sh PIDFILE BINARY ARGS...`: runs the binary in the background, records
/// its pid, and as soon as fd 3 (the wrapper's stdin) reads EOF sends it SIGTERM, then
/// SIGKILL 5 s later if it is still there (kube-apiserver can linger long after SIGTERM).
const WRAPPER: &str = r#"exec 3<&0; pidfile=$1; shift; "$@" & pid=$!; echo $pid > "$pidfile"; (read _ <&3; kill $pid 2>/dev/null && sleep 5 && kill -9 $pid 2>/dev/null) & wait $pid"#;

/// What to run: a name (used for the log and pid files), a program, its arguments and
/// extra environment variables.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Spec {
    pub fn new(name: &str, program: impl Into<PathBuf>, args: Vec<String>) -> Spec {
        Spec {
            name: name.into(),
            program: program.into(),
            args,
            env: Vec::new(),
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Spec {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// A running process; stopping it (or dropping the guard) kills it.
pub struct Proc {
    pub log: PathBuf,
    /// Standard output, when kept apart from the log ([`Proc::start_split`]).
    pub out: Option<PathBuf>,
    pidfile: PathBuf,
    wrapper: Child,
    stdin: Option<ChildStdin>,
    stopped: bool,
}

impl Proc {
    /// The JSON lines of the log so far (other lines are left out).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Starts `spec` with stdout and stderr appended to `dir/<name>.log`.
    pub fn start(spec: &Spec, dir: &Path) -> Proc {
        Proc::start_with(spec, dir, false)
    }

    /// Starts `spec` with stdout to `dir/<name>.out` and stderr to `dir/<name>.log`.
    pub fn start_split(spec: &Spec, dir: &Path) -> Proc {
        Proc::start_with(spec, dir, true)
    }

    fn start_with(spec: &Spec, dir: &Path, split: bool) -> Proc {
        let log = dir.join(format!("{}.log", spec.name));
        let pidfile = dir.join(format!("{}.pid", spec.name));
        let _ = std::fs::remove_file(&pidfile);
        let open = |path: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
        };
        let err = open(&log);
        let out_path = split.then(|| dir.join(format!("{}.out", spec.name)));
        let out = match &out_path {
            Some(path) => open(path),
            None => err.try_clone().expect("clone the log file handle"),
        };
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg("sh")
            .arg(&pidfile)
            .arg(&spec.program)
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", spec.program.display()));
        let stdin = wrapper.stdin.take();
        Proc {
            log,
            out: out_path,
            pidfile,
            wrapper,
            stdin,
            stopped: false,
        }
    }

    /// The pid of the binary itself (not the wrapper), once the wrapper recorded it.
    pub fn pid(&self) -> Option<u32> {
        let started = Instant::now();
        loop {
            if let Some(pid) = std::fs::read_to_string(&self.pidfile)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return Some(pid);
            }
            if started.elapsed() > Duration::from_secs(2) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `SIG<name>` (e.g. `TERM`, `KILL`) to the binary.
    pub fn signal(&self, name: &str) {
        let pid = self.pid().expect("the pid of a started process");
        signal(name, pid);
    }

    /// The exit status, when the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.wrapper.try_wait().ok().flatten()
    }

    /// SIGTERM, up to `patience` for it to exit, then SIGKILL; reaps the wrapper.
    pub fn stop_within(&mut self, patience: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let pid = self.pid();
        if self.exited().is_none() {
            if let Some(pid) = pid {
                signal("TERM", pid);
            }
            let started = Instant::now();
            while self.exited().is_none() && started.elapsed() < patience {
                std::thread::sleep(Duration::from_millis(50));
            }
            if self.exited().is_none() {
                if let Some(pid) = pid {
                    signal("KILL", pid);
                }
                let _ = self.wrapper.kill();
            }
        }
        // EOF on the wrapper's fd 3: its watcher kills the binary if it is still there.
        self.stdin.take();
        let _ = self.wrapper.wait();
    }

    pub fn stop(&mut self) {
        self.stop_within(Duration::from_secs(10));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

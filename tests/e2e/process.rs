//! The real `oneflow` binary in a child process, for the tests that kill
//! it, watch it exit, or restart it on the same data directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::support::ADMIN_KEY;

/// The real `oneflow` binary in a child process, killed when dropped (also
/// when a test fails half way).
pub struct Proc {
    child: Child,
    pub url: String,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `oneflow serve` and waits (bounded) for its listening line.
    /// `dir/oneflow.toml` is its config, `dir/data` its data directory.
    pub fn spawn(dir: &Path) -> Proc {
        Proc::spawn_with(dir, &[])
    }

    /// The same, with extra environment variables.
    pub fn spawn_with(dir: &Path, env: &[(&str, &str)]) -> Proc {
        Proc::try_spawn_with(dir, env).unwrap_or_else(|(why, stderr)| {
            panic!("oneflow did not start ({why}); stderr:\n{stderr}")
        })
    }

    /// The same, or, if the process ends before it listens, why and its
    /// stderr (a process made to fail during its start).
    pub fn try_spawn_with(dir: &Path, env: &[(&str, &str)]) -> Result<Proc, (String, String)> {
        let config = dir.join("oneflow.toml");
        let data: PathBuf = dir.join("data");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_oneflow"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--bind", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data)
            .current_dir(dir)
            .env("ONEFLOW_ADMIN_KEY", ADMIN_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ONEFLOW__") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let p = Proc {
            child,
            url: String::new(),
            stderr: Arc::new(Mutex::new(String::new())),
        };
        let buf = p.stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut b) = buf.lock() {
                    b.push_str(&line);
                    b.push('\n');
                }
            }
        });
        let (tx, rx) = mpsc::channel();
        // Reads the address, then keeps draining until the process ends.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("oneflow listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let mut p = p;
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => p.url = url,
            Err(e) => {
                // Reap it (killed first if it hung), and let the stderr
                // reader catch up.
                let _ = p.child.kill();
                let _ = p.child.wait();
                std::thread::sleep(Duration::from_millis(50));
                return Err((e.to_string(), p.stderr_text()));
            }
        }
        Ok(p)
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits (bounded) for the process to end by itself; its exit status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the process did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(9), "{status:?}");
        }
        #[cfg(not(unix))]
        assert!(!status.success());
    }
}

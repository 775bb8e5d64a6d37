//! The real `orderly-local` binary, started for a test.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub const ADMIN_PASSWORD: &str = "crash-test-admin-password";

pub struct Server {
    pub child: Child,
    pub base: String,
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server on a free port over `data_dir` and waits for its "listening" log line.
pub fn start(data_dir: &Path) -> Server {
    start_with(data_dir, &[])
}

/// The same, with extra environment variables.
pub fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orderly-local"))
        .env("ORDERLY_ADDR", "127.0.0.1:0")
        .env("ORDERLY_DATA_DIR", data_dir)
        .env_remove("ORDERLY_STORE")
        .env("RUST_LOG", "info")
        .env("ORDERLY_ADMIN_USERNAME", "admin")
        .env("ORDERLY_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env_remove("JWT_SECRET")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start orderly-local");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("server exited before listening").expect("log line");
        let entry: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if entry["fields"]["message"] == "orderly-local listening" {
            break entry["fields"]["addr"].as_str().expect("addr").to_owned();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Server { child, base: format!("http://{addr}"), addr }
}

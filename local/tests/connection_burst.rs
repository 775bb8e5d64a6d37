//! Customers connecting all at once: the kernel holds each finished handshake until the server
//! accepts it, up to the listen backlog. With std's 128, most of a 1,000-connection burst had
//! its SYNs dropped and retried a second later.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::start;

/// More connections than std's backlog of 128 holds, within the test's file descriptors.
const CONNECTIONS: usize = 600;

fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill");
    assert!(sent.success(), "kill {signal} {pid}");
}

#[test]
fn a_burst_of_connections_waits_in_the_backlog_rather_than_being_dropped() {
    let dir = std::env::temp_dir().join(format!("orderly-burst-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = start(&dir);
    let addr: SocketAddr = server.addr.parse().expect("address");
    let pid = server.child.id();
    // Stopped, the server accepts nothing: every connection must be held by the kernel. A SYN
    // dropped from a full backlog is only retried after a second, so 3 s tells them apart.
    signal(pid, "-STOP");
    let mut streams = Vec::new();
    let mut dropped = None;
    for index in 0..CONNECTIONS {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(stream) => streams.push(stream),
            Err(err) => {
                dropped = Some(format!("connection {index} of {CONNECTIONS} was not held: {err}"));
                break;
            }
        }
    }
    signal(pid, "-CONT");
    if let Some(dropped) = dropped {
        panic!("{dropped}");
    }
    // And once it runs again, the server answers every one of them.
    for stream in &mut streams {
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("read timeout");
        stream.write_all(b"GET /no-such-route HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
    }
    for (index, stream) in streams.iter_mut().enumerate() {
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 404"), "connection {index}: {answer}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

//! The real `orderly-local` binary against clients that misbehave on the wire: slow headers, a
//! body that never comes, oversized URIs and header blocks, garbage, and a stop while they hang.
//! The bounds asserted are generous (several times the configured timeouts): they check that
//! the server lets go, not how fast.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, start_with};

const TIMEOUTS: [(&str, &str); 3] = [
    ("ORDERLY_HEADER_TIMEOUT_SECONDS", "1"),
    ("ORDERLY_BODY_TIMEOUT_SECONDS", "1"),
    ("ORDERLY_SHUTDOWN_GRACE_SECONDS", "1"),
];

fn server(name: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("orderly-slow-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    start_with(&dir, &TIMEOUTS)
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(&server.addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("read timeout");
    stream
}

/// Everything the server sends until it closes the connection (or the 20 s read timeout).
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn send_raw(server: &Server, bytes: &[u8]) -> String {
    let mut stream = connect(server);
    stream.write_all(bytes).expect("write");
    read_to_close(&mut stream)
}

#[test]
fn half_sent_headers_are_dropped() {
    let server = server("headers");
    let mut stream = connect(&server);
    stream.write_all(b"GET /products HTTP/1.1\r\nHost: x\r\n").expect("write");
    let started = Instant::now();
    let answer = read_to_close(&mut stream);
    assert!(started.elapsed() < Duration::from_secs(15), "the connection was held {:?}", started.elapsed());
    assert!(!answer.contains("200 OK"), "{answer}");
}

#[test]
fn a_body_that_never_comes_gets_408() {
    let server = server("body");
    let mut stream = connect(&server);
    stream
        .write_all(b"POST /customers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"name\":")
        .expect("write");
    let answer = read_to_close(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json") && answer.contains("request-timeout"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("\r\nx-request-id: "), "{answer}");
}

#[test]
fn a_body_over_the_limit_gets_413_with_a_request_id() {
    let server = server("large");
    let body = format!("{{\"name\": \"{}\"}}", "a".repeat(70_000));
    let request = format!(
        "POST /customers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Request-Id: big-body-1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = send_raw(&server, request.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("\r\nx-request-id: big-body-1\r\n"), "{answer}");
}

#[test]
fn oversized_requests_get_problem_documents() {
    let server = server("oversized");
    let long_uri =
        |len| format!("GET /products?q={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "a".repeat(len));
    let answer = send_raw(&server, long_uri(20_000).as_bytes());
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    assert!(answer.contains("application/problem+json") && answer.contains("uri-too-long"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("\r\nx-request-id: "), "{answer}");
    // Past 64 KiB hyper refuses the URI itself: still 414, without a body (documented).
    assert!(send_raw(&server, long_uri(100_000).as_bytes()).starts_with("HTTP/1.1 414"));

    let mut many = String::from("GET /products HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    let answer = send_raw(&server, many.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(answer.contains("application/problem+json") && answer.contains("headers-too-large"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("\r\nx-request-id: "), "{answer}");

    // Not HTTP at all: hyper answers 400 itself, without a body (documented in the README).
    let garbage = send_raw(&server, b"\x16\x03\x01 hello there\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    // And the server is still serving.
    let ok = send_raw(&server, b"GET /categories HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[test]
fn sigterm_stops_the_server_despite_hanging_clients() {
    let mut server = server("stop");
    let mut hanging = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&server);
        stream
            .write_all(
                b"POST /customers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{",
            )
            .expect("write");
        hanging.push(stream);
    }
    let mut half = connect(&server);
    half.write_all(b"GET /products HTTP/1.1\r\n").expect("write");
    hanging.push(half);
    std::thread::sleep(Duration::from_millis(200));

    let started = Instant::now();
    let pid = server.child.id().to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(status.success());
    loop {
        if let Some(exit) = server.child.try_wait().expect("wait") {
            assert!(exit.success(), "a clean exit: {exit:?}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

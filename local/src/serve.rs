//! Serving the app over HTTP/1.1 with the limits a server on an open port needs: a client that
//! sends its headers too slowly is dropped (`ORDERLY_HEADER_TIMEOUT_SECONDS`, default 10), one
//! that sends its body too slowly gets 408 (`ORDERLY_BODY_TIMEOUT_SECONDS`, default 10), and
//! stopping waits for requests in flight for at most `ORDERLY_SHUTDOWN_GRACE_SECONDS` (default
//! 10), then closes what is left.
//! URIs up to 64 KiB and up to 1,000 headers reach the app, which answers oversized ones with
//! problem documents (414, 431); beyond that, and for a request line that is not HTTP, hyper
//! answers itself (414, 431, 400) with an empty body.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use orderly::http::{ApiError, MAX_BODY_BYTES, answered_before_the_app};
use tokio::net::{TcpListener, TcpSocket};
use tower::ServiceExt;

/// How long the server waits for a client and for itself.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read: Duration,
    pub body_read: Duration,
    pub shutdown_grace: Duration,
}

/// What hyper reads before the app sees a request: far above the app's own limits, so the
/// app, not hyper, answers oversized requests (with a problem document).
const MAX_BUFFER_BYTES: usize = 1024 * 1024;
const MAX_HEADERS: usize = 1000;

/// How many connections the kernel holds, handshake done, until the server accepts them. std and
/// mio listen with 128: a burst of 1,000 customers connecting at once overflowed that, and the
/// kernel dropped the SYNs beyond it (`nstat`: about 800 listen overflows a burst), so those
/// customers waited a second for their retry. Linux caps it at `net.core.somaxconn` (4096 by
/// default since 5.4).
const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `addr` (`host:port`; a name is resolved, and the first address that binds wins)
/// with room for a burst of connections ([`LISTEN_BACKLOG`]).
pub async fn bind(addr: &str) -> io::Result<TcpListener> {
    let mut refused = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        // As std's listeners do on Unix: a restart binds while the last run's connections linger.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(err) => refused = Some(err),
        }
    }
    Err(refused.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr} names no address"))))
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains within the grace period.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, shutdown: impl Future<Output = ()>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_buf_size(MAX_BUFFER_BYTES)
        .max_headers(MAX_HEADERS);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let app = app.clone();
            async move {
                // The peer address feeds the per-address limits (login, sign-up).
                request.extensions_mut().insert(ConnectInfo(peer));
                let (parts, body) = request.into_parts();
                // Bodies are small (64 KiB at most): read whole, within the time allowed.
                let read = tokio::time::timeout(limits.body_read, Limited::new(body, MAX_BODY_BYTES).collect()).await;
                let refused = match read {
                    Ok(Ok(body)) => {
                        return app.oneshot(Request::from_parts(parts, Body::from(body.to_bytes()))).await;
                    }
                    Ok(Err(err)) if err.is::<LengthLimitError>() => ApiError::PayloadTooLarge,
                    Ok(Err(err)) => ApiError::MalformedJson(format!("the body could not be read: {err}")),
                    Err(_) => ApiError::BodyTimeout,
                };
                Ok(answered_before_the_app(&Request::from_parts(parts, Body::empty()), refused))
            }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(peer = %peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(grace_s = limits.shutdown_grace.as_secs(), "stopping: finishing requests in flight");
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("grace period over: closing the connections still open");
    }
}

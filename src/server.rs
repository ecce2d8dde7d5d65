//! Serving the app over HTTP/1.1 with the limits that keep a handful of slow
//! or idle clients from holding the service. poem's own `Server` has no
//! header or keep-alive timeout, no connection cap, no TCP keepalive, spins
//! on `accept` errors such as EMFILE, and offers unbounded cleartext HTTP/2;
//! this loop drives hyper directly with the same endpoint instead.
//!
//! HTTP/2 is not served: behind a load balancer or reverse proxy (the only
//! way to reach the service over TLS) the hop to the service is HTTP/1.1,
//! and prior-knowledge h2c is refused (505) rather than left unbounded.

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::Gauge;
use poem::{
    Addr, Endpoint, Request,
    endpoint::BoxEndpoint,
    http::{HeaderValue, Uri, uri::Scheme},
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, Semaphore},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Largest request head (request line and headers) accepted; larger ones get
/// 431 from hyper. Browsers and proxies stay far below it (cookies included).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// How the server bounds its clients.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request's head must arrive within this, from its first byte (or
    /// from the connection's start, for its first request).
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this.
    pub keep_alive_timeout: Duration,
    /// A response the client stops reading (the socket takes no byte) is
    /// abandoned after this, and its connection closed.
    pub send_timeout: Duration,
    /// Connections served at once; beyond it, new ones wait in the backlog.
    pub max_connections: usize,
    /// On shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
}

/// Serves `endpoint` on `listener` until `shutdown` resolves; then stops
/// accepting, closes idle and stalled connections at once, lets in-flight
/// requests finish within the grace period, and returns. `open` counts the
/// connections open.
pub async fn serve(
    listener: TcpListener,
    endpoint: BoxEndpoint<'static>,
    limits: Limits,
    open: Gauge,
    shutdown: impl Future<Output = ()>,
) {
    let endpoint: Arc<BoxEndpoint<'static>> = Arc::new(endpoint);
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let stopping = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut accept_errors = AcceptErrors::default();
    let local_addr = listener.local_addr().ok();
    tokio::pin!(shutdown);

    loop {
        // At capacity, stop accepting: new connections wait in the kernel's
        // backlog instead of costing memory here.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                // Only closing the semaphore fails an acquire, and nothing does.
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_errors.back_off(err).await;
                    continue;
                }
            },
        };
        configure_socket(&stream);
        let connection = serve_connection(
            stream,
            local_addr.unwrap_or(remote),
            remote,
            endpoint.clone(),
            limits.clone(),
            stopping.clone(),
        );
        open.increment(1.0);
        let open = open.clone();
        connections.spawn(async move {
            connection.await;
            open.decrement(1.0);
            drop(slot);
        });
    }

    drop(listener);
    stopping.cancel();
    connections.close();
    tracing::info!(
        open = connections.len(),
        "stopped accepting; waiting for in-flight requests"
    );
    if tokio::time::timeout(limits.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "shutdown grace period over; closing the remaining connections"
        );
    }
}

/// TCP keepalive finds peers that vanished without a FIN (a laptop that
/// slept, a NAT that forgot the flow); `TCP_NODELAY` because every response
/// is written whole.
fn configure_socket(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    if let Err(err) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %err, "cannot enable TCP keepalive");
    }
}

/// `accept` failures: the ones about a single connection are skipped; the
/// rest (EMFILE, ENFILE, ENOBUFS, ENOMEM) would fail again at once, so the
/// loop pauses instead of spinning, and says so at most every 10 s.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    since_logged: u64,
}

impl AcceptErrors {
    async fn back_off(&mut self, err: io::Error) {
        use io::ErrorKind as K;
        if matches!(
            err.kind(),
            K::ConnectionAborted | K::ConnectionReset | K::ConnectionRefused | K::Interrupted
        ) {
            return;
        }
        self.since_logged += 1;
        if self
            .last_logged
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(10))
        {
            tracing::error!(
                error = %err,
                failures = self.since_logged,
                "cannot accept connections (open files limit?); pausing accept"
            );
            self.last_logged = Some(Instant::now());
            self.since_logged = 0;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where a connection is between requests, which decides how long it may
/// stay silent.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Accepted, no byte yet: the first head must arrive within the header timeout.
    Fresh { since: Instant },
    /// Waiting for the next request on a kept-alive connection.
    Idle { since: Instant },
    /// Part of a request head has arrived.
    Head { since: Instant },
    /// A request is being served; `body_received` once its body is read, so
    /// a request stuck waiting for the client's body counts as stalled.
    Busy { body_received: bool },
}

/// A connection's phase, shared by its socket, its requests and its watchdog.
/// The watchdog is not woken on phase changes (two wake-ups per request cost
/// measurable throughput): it wakes at the deadline it last computed, which a
/// phase change can only move later, and checks again. A stalled send is the
/// exception, which is rare and can move the deadline earlier.
struct ConnectionState {
    phase: Mutex<Phase>,
    /// Since when the socket has refused the bytes waiting to be sent: the
    /// client stopped reading (or its network did).
    send_stalled: Mutex<Option<Instant>>,
    stall_began: Notify,
}

impl ConnectionState {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Fresh {
                since: Instant::now(),
            }),
            send_stalled: Mutex::new(None),
            stall_began: Notify::new(),
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    fn bytes_arrived(&self) {
        // A fresh connection's header clock runs from accept; an idle one's
        // starts with the first byte of its next request.
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head {
                since: Instant::now(),
            };
        }
    }

    fn send_stalled(&self) -> Option<Instant> {
        *self.send_stalled.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_send_stalled(&self, since: Option<Instant>) {
        *self.send_stalled.lock().unwrap_or_else(|e| e.into_inner()) = since;
        if since.is_some() {
            self.stall_began.notify_one();
        }
    }

    /// When this connection is to be closed if nothing changes.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let phase = match self.phase() {
            Phase::Fresh { since } | Phase::Head { since } => Some(since + limits.header_timeout),
            Phase::Idle { since } => Some(since + limits.keep_alive_timeout),
            Phase::Busy { .. } => None,
        };
        let send = self.send_stalled().map(|since| since + limits.send_timeout);
        match (phase, send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// On shutdown: nothing is lost by closing it now.
    fn is_idle_or_stalled(&self) -> bool {
        !matches!(
            self.phase(),
            Phase::Busy {
                body_received: true
            }
        )
    }
}

/// Marks, from inside the app, that the request's body has been read: from
/// then on the request is in flight, no longer waiting for its client.
#[derive(Clone)]
pub struct BodyProgress(Arc<ConnectionState>);

impl BodyProgress {
    pub fn received(&self) {
        self.0.set(Phase::Busy {
            body_received: true,
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    endpoint: Arc<BoxEndpoint<'static>>,
    limits: Arc<Limits>,
    stopping: CancellationToken,
) {
    let state = Arc::new(ConnectionState::new());
    // hyper allocates its read and write buffers (16 KiB) as soon as it is
    // handed the socket: until its first byte, a client costs only the socket.
    // (`peek`, because `readable()` reports a fresh socket ready at once.)
    let mut first_byte = [0; 1];
    tokio::select! {
        peeked = stream.peek(&mut first_byte) => if peeked.is_err() { return },
        () = sleep_until(state.deadline(&limits)) => {
            tracing::debug!(%remote, "closing a connection that sent nothing");
            return;
        }
        () = stopping.cancelled() => return,
    }
    let service = hyper::service::service_fn({
        let state = state.clone();
        move |mut req: hyper::Request<Incoming>| {
            state.set(Phase::Busy {
                body_received: req.body().is_end_stream(),
            });
            detach_head(&mut req);
            req.extensions_mut().insert(BodyProgress(state.clone()));
            let req = Request::from((
                req,
                LocalAddr(Addr::SocketAddr(local)),
                RemoteAddr(Addr::SocketAddr(remote)),
                Scheme::HTTP,
            ));
            let endpoint = endpoint.clone();
            let state = state.clone();
            // Boxed per request: hyper keeps a slot the size of the service's
            // future for the connection's whole life, idle or not.
            Box::pin(async move {
                let response = endpoint.get_response(req).await;
                let response: hyper::Response<_> = response.into();
                Ok::<_, Infallible>(response.map(|body| ResponseBody {
                    inner: body,
                    state: Some(state),
                }))
            })
        }
    });
    let io = TokioIo::new(WatchedStream {
        inner: stream,
        state: state.clone(),
        stalled: false,
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        // Our own clock (above) tells a slow head from an idle keep-alive;
        // hyper's would close idle connections after the header timeout.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_header_size(MAX_HEADER_BYTES)
        .serve_connection(io, service);
    tokio::pin!(connection);

    let mut shutting_down = false;
    loop {
        let deadline = state.deadline(&limits);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, %remote, "connection ended with an error");
                }
                return;
            }
            () = sleep_until(deadline) => {
                if state.deadline(&limits).is_some_and(|at| at <= Instant::now()) {
                    if state.send_stalled().is_some() {
                        tracing::info!(%remote, "closing a connection whose client stopped reading");
                    } else {
                        tracing::debug!(%remote, phase = ?state.phase(), "closing a slow or idle connection");
                    }
                    return;
                }
            }
            () = state.stall_began.notified() => {}
            () = stopping.cancelled(), if !shutting_down => {
                if state.is_idle_or_stalled() {
                    return;
                }
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
        }
        if shutting_down && state.is_idle_or_stalled() {
            return;
        }
    }
}

/// hyper's request head points into its read buffer, which therefore cannot
/// be reused while the request is in flight: reading the body (or noticing
/// the client's next request) would allocate a second 8 KiB buffer for every
/// connection with a request in progress. The head is a few hundred bytes;
/// copying it out frees the buffer.
fn detach_head(req: &mut hyper::Request<Incoming>) {
    for value in req.headers_mut().values_mut() {
        if let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
    }
    if let Ok(uri) = Uri::try_from(req.uri().to_string()) {
        *req.uri_mut() = uri;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The socket, noting when the first byte of a new request arrives and
/// when sending stalls.
struct WatchedStream {
    inner: TcpStream,
    state: Arc<ConnectionState>,
    /// Whether the last write was refused: kept here so that the shared
    /// state is touched only when a stall begins or ends, not per write.
    stalled: bool,
}

impl WatchedStream {
    fn note_send<T>(&mut self, result: Poll<T>) -> Poll<T> {
        let stalled = result.is_pending();
        if stalled != self.stalled {
            self.stalled = stalled;
            self.state.set_send_stalled(stalled.then(Instant::now));
        }
        result
    }
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.bytes_arrived();
        }
        result
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_send(result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_send(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type PoemBody = http_body_util::combinators::BoxBody<bytes::Bytes, io::Error>;

/// A response body that returns its connection to idle once it has been
/// sent (or dropped), which starts the keep-alive clock.
struct ResponseBody {
    inner: PoemBody,
    state: Option<Arc<ConnectionState>>,
}

impl ResponseBody {
    fn finish(&mut self) {
        if let Some(state) = self.state.take() {
            state.set(Phase::Idle {
                since: Instant::now(),
            });
        }
    }
}

impl HttpBody for ResponseBody {
    type Data = bytes::Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let result = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(result, Poll::Ready(None)) {
            self.finish();
        }
        result
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.finish();
    }
}

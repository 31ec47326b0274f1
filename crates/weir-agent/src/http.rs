//! The agent's HTTP endpoint: `/healthz`, `/readyz`, `/metrics`, `/revision`, and `/drops`
//! when enabled.
//!
//! Its clients are not trusted: hyper with a header-read timeout (slow clients are cut),
//! a small request buffer (a huge request line is refused, not buffered), a bound on
//! connections and on `/drops` streams, and a whole-exchange timeout for everything but
//! `/drops`. It runs on its own thread and runtime: `/healthz` never waits on `nft`, and
//! the kernel counters for `/metrics` are listed at most once a second on a blocking
//! thread, with a timeout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use weir_nft::apply::NftCli;

use crate::metrics::{self, Metrics};
use crate::Attribution;

/// Connections served at once; more are closed at accept. Each costs a task and a
/// 16 KiB buffer at most, and idle ones are cut after [`HEADER_TIMEOUT`], so the bound
/// is generous: a few dozen idle clients must not take the probes down.
pub const MAX_CONNECTIONS: usize = 256;
/// `/drops` streams at once.
pub const MAX_DROP_STREAMS: usize = 4;
/// Time a client has to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a whole exchange (not `/drops`).
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);
/// Read buffer of a connection: the request line and headers must fit.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Lines buffered per `/drops` client before lines are dropped for it.
const DROPS_BUFFER: usize = 1024;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;
/// The counters and when they were listed.
type Denied = Option<(Instant, metrics::Counted)>;

/// (labels or policy, packets) per series.
type Series = Vec<(String, u64)>;

pub struct Http {
    pub metrics: Arc<Metrics>,
    pub nft: NftCli,
    pub attribution: Arc<Mutex<Attribution>>,
    /// `/drops` is served only when enabled: it tells who talks to whom.
    pub serve_drops: bool,
    drop_streams: AtomicUsize,
    /// (when listed, drop counters): one `nft` listing per second at most.
    denied: Mutex<Denied>,
}

impl Http {
    pub fn new(
        metrics: Arc<Metrics>,
        nft: NftCli,
        attribution: Arc<Mutex<Attribution>>,
        serve_drops: bool,
    ) -> Self {
        Http {
            metrics,
            nft,
            attribution,
            serve_drops,
            drop_streams: AtomicUsize::new(0),
            denied: Mutex::new(None),
        }
    }

    /// Drop counters, and would-drop counters per audited policy, from the kernel, listed
    /// at most once a second (one listing at a time).
    fn denied(&self) -> (Series, Series) {
        let counted = self.counted();
        let by_policy = self
            .attribution
            .lock()
            .expect("attribution")
            .would_drop_by_policy(&counted.would_drop);
        (counted.denied, by_policy)
    }

    fn counted(&self) -> metrics::Counted {
        let mut cache = self.denied.lock().expect("denied cache");
        if let Some((at, v)) = cache.as_ref() {
            if at.elapsed() < Duration::from_secs(1) {
                return v.clone();
            }
        }
        let listing = self
            .nft
            .run_tool(
                "nft",
                &["-j", "list", "table", "inet", "weir"],
                Duration::from_secs(10),
            )
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let v = metrics::counted_from_listing(&listing);
        *cache = Some((Instant::now(), v.clone()));
        v
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// Holds a `/drops` slot until the stream ends.
struct StreamSlot(Arc<Http>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.drop_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    req: Request<Incoming>,
    http: Arc<Http>,
    streaming: Arc<AtomicBool>,
) -> Result<Response<Body>, Infallible> {
    if req.method() != hyper::Method::GET {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into()));
    }
    Ok(match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match http.metrics.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready:\n{}\n", why.join("\n")),
            ),
        },
        // What the kernel enforces, as one value: a client waits for every node's to equal
        // the one it computes from the API's policy objects (weir_kube::revision_line).
        "/revision" => match http.metrics.revision() {
            Some(r) => text(StatusCode::OK, format!("{r}\n")),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no revision: not synced yet, or a source without versions\n".into(),
            ),
        },
        "/metrics" => {
            let h = http.clone();
            let (denied, would_drop) = tokio::task::spawn_blocking(move || h.denied())
                .await
                .unwrap_or_default();
            text(StatusCode::OK, http.metrics.render(&denied, &would_drop))
        }
        "/drops" if !http.serve_drops => text(
            StatusCode::NOT_FOUND,
            "/drops is off (start the agent with --serve-drops)\n".into(),
        ),
        "/drops" => {
            if http.drop_streams.fetch_add(1, Ordering::SeqCst) >= MAX_DROP_STREAMS {
                http.drop_streams.fetch_sub(1, Ordering::SeqCst);
                return Ok(text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many /drops streams\n".into(),
                ));
            }
            let slot = StreamSlot(http.clone());
            streaming.store(true, Ordering::SeqCst);
            let (tx, rx) = mpsc::sync_channel::<String>(DROPS_BUFFER);
            http.attribution
                .lock()
                .expect("attribution")
                .subscribers
                .push(tx);
            // The lines arrive on a std channel (from the NFLOG thread); a blocking task
            // forwards them into the response.
            let (atx, arx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                for line in rx {
                    if atx
                        .blocking_send(Ok(Frame::data(Bytes::from(line + "\n"))))
                        .is_err()
                    {
                        return;
                    }
                }
            });
            let stream = futures::stream::unfold(arx, |mut arx| async move {
                arx.recv().await.map(|item| (item, arx))
            });
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain"),
            );
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    })
}

/// Serves on `listener` until `stop` is set, on a thread of its own.
pub fn serve(
    listener: std::net::TcpListener,
    http: Arc<Http>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("weir-http".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "no runtime for the HTTP endpoint");
                    return;
                }
            };
            rt.block_on(accept_loop(listener, http, stop));
        })?;
    Ok(addr)
}

async fn accept_loop(listener: std::net::TcpListener, http: Arc<Http>, stop: Arc<AtomicBool>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "HTTP listener");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while !stop.load(Ordering::Relaxed) {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = tick.tick() => continue,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream); // full: close rather than queue
            continue;
        };
        let http = http.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let streaming = Arc::new(AtomicBool::new(false));
            let s = streaming.clone();
            let service =
                hyper::service::service_fn(move |req| handle(req, http.clone(), s.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_REQUEST_HEAD)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = &mut conn => return,
                _ = tokio::time::sleep(EXCHANGE_TIMEOUT) => {}
            }
            if streaming.load(Ordering::SeqCst) {
                let _ = conn.await;
            }
        });
    }
}

//! `app::serve`: `--metrics-addr IP:PORT`, an HTTP/1 endpoint (hyper, on
//! the loop's tokio runtime) with `/metrics` (OpenMetrics,
//! [`crate::metrics`]) and `/debug/pprof/mapleak` (the gzipped pprof
//! profile `--pprof` writes, [`crate::report::pprof`]).
//!
//! Scrape-driven: a request asks the loop for a [`Snapshot`] (an mpsc
//! message carrying a oneshot for the answer, one `select!` arm of the
//! loop), and the loop builds it from the sessions between its other work:
//! each process's report as the live view builds it, from the model and
//! the probe counters (no read of any target's memory, no key read). A
//! snapshot is reused for [`reuse_for`] its build time (at least
//! [`SNAPSHOT_REUSE`]): building them takes at most 1% of one CPU. Encoding runs in the request's task. At most
//! [`MAX_CONNECTIONS`] connections are served at once (others are closed
//! at once), each for at most [`CONNECTION_LIMIT`].
use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, header};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{
    metrics::{self, ProcessView, TracerView},
    report::{Report, pprof},
};

/// A snapshot this recent is served again instead of building another.
pub const SNAPSHOT_REUSE: Duration = Duration::from_millis(500);

/// Share of one CPU that building snapshots may take, at most.
pub const SNAPSHOT_CPU_SHARE: f64 = 0.01;

/// How long a snapshot that took `build_s` seconds to build is served
/// again: [`SNAPSHOT_REUSE`], or longer for a costly one, so that building
/// snapshots takes at most [`SNAPSHOT_CPU_SHARE`] of one CPU (100,000
/// tracked maps took 70-110 ms here: one build per 7-11 s).
#[must_use]
pub fn reuse_for(build_s: f64) -> Duration {
    let by_cost = build_s / SNAPSHOT_CPU_SHARE;
    if by_cost.is_finite() && by_cost > SNAPSHOT_REUSE.as_secs_f64() {
        Duration::from_secs_f64(by_cost.min(300.0))
    } else {
        SNAPSHOT_REUSE
    }
}

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 8;

/// Longest a connection is kept (a slow or idle client is cut off).
pub const CONNECTION_LIMIT: Duration = Duration::from_secs(30);

/// The path of the profile.
pub const PPROF_PATH: &str = "/debug/pprof/mapleak";

/// One traced process in a snapshot.
#[derive(Debug)]
pub struct Process {
    /// Its report.
    pub report: Report,
    /// The governed probes are attached now.
    pub governed_on: bool,
    /// A write window is open now.
    pub window_open: bool,
    /// The large-growth probes are attached now.
    pub large_growth_on: bool,
}

/// What the loop answers a scrape with.
#[derive(Debug)]
pub struct Snapshot {
    /// The processes traced now.
    pub processes: Vec<Process>,
    /// The tracer's CPU seconds so far.
    pub tracer_cpu_s: f64,
    /// Its peak resident memory.
    pub tracer_max_rss_bytes: u64,
    /// Its resident memory now.
    pub tracer_rss_bytes: u64,
    /// Seconds the loop took to build this snapshot.
    pub build_s: f64,
    /// The previous snapshot's, if any.
    pub previous_build_s: Option<f64>,
    /// `--all`: how new processes were looked for.
    pub scans: Option<crate::metrics::ScanCounts>,
    /// Seconds traced.
    pub duration_s: f64,
}

/// A scrape's request to the loop.
#[derive(Debug)]
pub struct Scrape {
    /// Where the snapshot goes.
    pub reply: oneshot::Sender<Arc<Snapshot>>,
}

/// The bound listener, before the runtime runs.
#[derive(Debug)]
pub struct Endpoint {
    listener: std::net::TcpListener,
}

impl Endpoint {
    /// Binds `addr` (before anything is attached: an address in use fails
    /// the run at once).
    pub fn bind(addr: SocketAddr) -> Result<Self> {
        let listener = std::net::TcpListener::bind(addr).with_context(|| {
            format!("--metrics-addr {addr}: cannot listen there (in use, or not an address of this host? try 127.0.0.1:9464)")
        })?;
        listener
            .set_nonblocking(true)
            .context("--metrics-addr: setting the socket non-blocking")?;
        Ok(Self { listener })
    }

    /// The address bound (the port chosen when 0 was given).
    #[must_use]
    pub fn addr(&self) -> String {
        self.listener
            .local_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string())
    }

    /// Serves on the current tokio runtime; scrapes come out of the
    /// receiver for the loop to answer.
    pub fn start(self) -> mpsc::Receiver<Scrape> {
        let (tx, rx) = mpsc::channel(MAX_CONNECTIONS);
        match tokio::net::TcpListener::from_std(self.listener) {
            Ok(l) => {
                tokio::spawn(accept(l, tx));
            }
            Err(e) => eprintln!("mapleak-trace: --metrics-addr: cannot serve: {e}"),
        }
        rx
    }
}

async fn accept(listener: tokio::net::TcpListener, tx: mpsc::Sender<Scrape>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                // Out of descriptors, say: try again a little later.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = hyper::service::service_fn(move |req| handle(req, tx.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(io, svc);
            let _ = tokio::time::timeout(CONNECTION_LIMIT, conn).await;
            drop(permit);
        });
    }
}

fn respond(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

async fn snapshot(tx: &mpsc::Sender<Scrape>) -> Option<Arc<Snapshot>> {
    let (reply, rx) = oneshot::channel();
    tx.send(Scrape { reply }).await.ok()?;
    rx.await.ok()
}

async fn handle(
    req: Request<Incoming>,
    tx: mpsc::Sender<Scrape>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return Ok(respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n"));
    }
    let path = req.uri().path();
    if path != "/metrics" && path != PPROF_PATH {
        return Ok(respond(
            StatusCode::NOT_FOUND,
            TEXT,
            format!("not found: serving /metrics and {PPROF_PATH}\n"),
        ));
    }
    let Some(snap) = snapshot(&tx).await else {
        return Ok(respond(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "the trace is ending: no more snapshots\n",
        ));
    };
    if path == "/metrics" {
        let views: Vec<ProcessView<'_>> = snap
            .processes
            .iter()
            .map(|p| ProcessView {
                report: &p.report,
                governed_on: p.governed_on,
                large_growth_on: p.large_growth_on,
                window_open: p.window_open,
            })
            .collect();
        let t = TracerView {
            cpu_s: snap.tracer_cpu_s,
            rss_bytes: snap.tracer_rss_bytes,
            max_rss_bytes: snap.tracer_max_rss_bytes,
            snapshot_build_s: snap.build_s,
            scans: snap.scans,
        };
        let text = metrics::render(&views, &t, metrics::TOP);
        return Ok(respond(StatusCode::OK, metrics::CONTENT_TYPE, text));
    }
    let reports: Vec<Report> = snap.processes.iter().map(|p| p.report.clone()).collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let dur = (snap.duration_s * 1e9) as i64;
    Ok(respond(
        StatusCode::OK,
        "application/octet-stream",
        pprof::profile(&reports, now, dur),
    ))
}

/// The tracer's resident memory now (`/proc/self/statm`), bytes.
#[must_use]
pub fn current_rss() -> u64 {
    let page = {
        // SAFETY: sysconf has no preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(p).unwrap_or(4096)
    };
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap snapshots are reused for 500 ms, costly ones long enough to
    /// keep their building at 1% of one CPU, never beyond 5 minutes.
    #[test]
    fn snapshot_reuse_bounds_the_cost() {
        assert_eq!(reuse_for(0.001), SNAPSHOT_REUSE);
        assert_eq!(reuse_for(0.1), Duration::from_secs(10));
        assert_eq!(reuse_for(100.0), Duration::from_secs(300));
        assert_eq!(reuse_for(f64::NAN), SNAPSHOT_REUSE);
    }
}

//! Accepting connections so that no client can lock the others out: a
//! connection has [`HEADER_TIMEOUT`] to send a request's headers, and may
//! sit idle between requests no longer than that; their number is capped
//! below the open-file limit (raised at start). Past the regular cap a few
//! spare connections are served one request each, on a short timeout, so
//! `/health` and a real client still get through while idle sockets pile
//! up; past those, a new connection is closed at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long a connection may take to send a request's headers, and stay
/// idle between requests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// The same for the spare connections beyond the cap.
const SPARE_HEADER_TIMEOUT: Duration = Duration::from_secs(3);
/// Open files kept for all but connections (the model, the log, …).
const RESERVED_FILES: u64 = 64;
/// The most connections served at once, whatever the file limit.
pub const MAX_CONNECTIONS: usize = 8192;

/// How many connections are served at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub regular: usize,
    /// Beyond `regular`: served one request each, on a short timeout.
    pub spare: usize,
}

impl Caps {
    /// `total` connections, an eighth of them (32 at most) spare.
    pub fn of(total: usize) -> Caps {
        let total = total.max(2);
        let spare = (total / 8).clamp(1, 32);
        Caps {
            regular: total - spare,
            spare,
        }
    }

    /// What the open-file limit allows, after raising it as far as this
    /// process may.
    pub fn from_file_limit() -> Caps {
        let files = raise_file_limit();
        Caps::of(
            files
                .saturating_sub(RESERVED_FILES)
                .min(MAX_CONNECTIONS as u64) as usize,
        )
    }
}

/// Raises the soft open-file limit towards the hard one (65,536 at most);
/// returns the limit now in force.
#[cfg(unix)]
fn raise_file_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        let wanted = limit.rlim_max.min(65_536);
        if limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = wanted;
            }
        }
        limit.rlim_cur as u64
    }
}

#[cfg(not(unix))]
fn raise_file_limit() -> u64 {
    // Windows' socket limit is not an open-file limit.
    MAX_CONNECTIONS as u64 + RESERVED_FILES
}

/// Serves `app` on `listener` until `stop` resolves; then waits for the
/// open requests to end (the caller bounds that wait).
pub async fn serve(listener: TcpListener, app: Router, caps: Caps, stop: impl Future<Output = ()>) {
    let regular = Arc::new(Semaphore::new(caps.regular));
    let spare = Arc::new(Semaphore::new(caps.spare));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let mut spare_builder = builder.clone();
    spare_builder
        .header_read_timeout(SPARE_HEADER_TIMEOUT)
        .keep_alive(false);
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let (permit, builder) = match regular.clone().try_acquire_owned() {
            Ok(p) => (p, &builder),
            Err(_) => match spare.clone().try_acquire_owned() {
                Ok(p) => (p, &spare_builder),
                Err(_) => {
                    tracing::warn!(
                        "over {} connections: one closed at once",
                        caps.regular + caps.spare
                    );
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eighth_of_the_connections_are_spare() {
        assert_eq!(
            Caps::of(64),
            Caps {
                regular: 56,
                spare: 8
            }
        );
        assert_eq!(
            Caps::of(8192),
            Caps {
                regular: 8160,
                spare: 32
            }
        );
        assert_eq!(
            Caps::of(0),
            Caps {
                regular: 1,
                spare: 1
            }
        );
    }
}

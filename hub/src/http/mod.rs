//! Requests to the hub: URLs, redirects, status codes, retries.
//!
//! Redirects are followed here, not by reqwest, so that the token goes only
//! to the endpoint's own origin (scheme, host and port): the hub redirects
//! LFS downloads to a CDN on another host, which must never see it.

use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, ACCEPT_ENCODING, CONTENT_LENGTH, ETAG, LOCATION, RANGE};
use reqwest::{Method, StatusCode, Url};

use crate::cache::is_commit_hash;
use crate::error::{HubError, Result};
use crate::options::{HfToken, PullOptions, RetryPolicy};
use crate::progress::PullProgress;

mod headers;

pub(crate) use headers::{encode, network_error, same_origin, shown};
use headers::{error_chain, header_str, host_of, is_loopback};
pub use headers::{
    innermost_cause, is_loopback_host, parse_file_head, redirect_location, FileHead,
};

/// Redirect hops followed before giving up.
const MAX_REDIRECTS: usize = 10;

/// The largest listing read: the listing of a model repo with thousands of
/// files is a few hundred KB; anything past this is a broken or hostile server.
pub(crate) const MAX_LISTING_BYTES: usize = 10 << 20;

/// What a request is about, for error messages.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx<'a> {
    pub repo: &'a str,
    pub revision: &'a str,
    pub file: Option<&'a str>,
}

/// A failed attempt, and whether another attempt may succeed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: HubError,
    pub transient: bool,
}

impl Failure {
    pub(crate) fn fatal(error: HubError) -> Self {
        Failure {
            error,
            transient: false,
        }
    }

    pub(crate) fn transient(error: HubError) -> Self {
        Failure {
            error,
            transient: true,
        }
    }
}

impl From<HubError> for Failure {
    fn from(error: HubError) -> Self {
        Failure::fatal(error)
    }
}

/// Which redirects to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Follow {
    /// Every redirect (downloads go on to the CDN).
    All,
    /// Only those within the current origin (renamed repos); a HEAD stops at
    /// the redirect to the CDN, whose headers carry the file's metadata.
    SameOrigin,
}

/// An HTTP client bound to one endpoint, token and retry policy.
pub(crate) struct Http {
    client: Client,
    endpoint: Url,
    /// The token to send, if any (not one withheld from a plain-HTTP host).
    token: Option<HfToken>,
    /// A token was given but is not sent: see [`PullOptions::token_over_http`].
    token_withheld: bool,
    retry: RetryPolicy,
    stall_timeout: Duration,
    metadata_timeout: Duration,
    cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Http {
    /// A client for `options.endpoint`; fails on a malformed endpoint.
    pub(crate) fn new(options: &PullOptions) -> Result<Self> {
        let endpoint = Url::parse(options.endpoint.trim_end_matches('/'))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| HubError::InvalidInput {
                what: "hub endpoint",
                value: options.endpoint.clone(),
                reason: "expected an http(s) URL such as https://huggingface.co",
            })?;
        let mut builder = Client::builder();
        if is_loopback(&endpoint) {
            // A hub on this machine (a local mirror, the tests) is never
            // reached through the HTTP(S)_PROXY of the environment.
            builder = builder.no_proxy();
        }
        let client = builder
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(options.connect_timeout)
            // In the blocking client this bounds each wait (for the headers,
            // for the next bytes of a body), not the whole transfer.
            .timeout(options.stall_timeout)
            .user_agent(concat!("o1-hub/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HubError::Protocol {
                url: endpoint.to_string(),
                detail: format!("cannot set up the HTTP client: {}", error_chain(&e)),
            })?;
        // Over plain HTTP to another machine the token would cross the
        // network readable by anyone on the way.
        let token_withheld = options.token.is_some()
            && endpoint.scheme() == "http"
            && !is_loopback(&endpoint)
            && !options.token_over_http;
        Ok(Http {
            client,
            token: options.token.clone().filter(|_| !token_withheld),
            token_withheld,
            endpoint,
            retry: options.retry.clone(),
            stall_timeout: options.stall_timeout,
            metadata_timeout: options.metadata_timeout,
            cancel: options.cancel.clone(),
        })
    }

    /// The warning to show once when the token is withheld.
    pub(crate) fn token_warning(&self) -> Option<String> {
        self.token_withheld.then(|| {
            format!(
                "HF_TOKEN is not sent to {}: it is plain http:// on another machine, where the \
                 token would cross the network unencrypted; use an https:// endpoint, or set \
                 O1_HF_TOKEN_OVER_HTTP=1 to send it anyway",
                self.endpoint()
            )
        })
    }

    /// The retry policy, for loops that retry on their own (downloads).
    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Whether a token will be sent.
    pub(crate) fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The endpoint's base URL, without a trailing slash.
    pub(crate) fn endpoint(&self) -> &str {
        self.endpoint.as_str().trim_end_matches('/')
    }

    /// `{endpoint}/{path}`; `path` must already be percent-encoded.
    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        let url = format!("{}/{path}", self.endpoint());
        Url::parse(&url).map_err(|e| HubError::Protocol {
            url,
            detail: format!("not a valid URL: {e}"),
        })
    }

    /// Fails with [`HubError::Interrupted`] once the cancel flag is set.
    pub(crate) fn check_cancel(&self) -> Result<()> {
        match &self.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(HubError::Interrupted),
            _ => Ok(()),
        }
    }

    /// Sleeps, waking early (with an error) if the cancel flag is set.
    pub(crate) fn sleep(&self, duration: Duration) -> Result<()> {
        let until = Instant::now() + duration;
        loop {
            self.check_cancel()?;
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }

    /// Runs `op` until it succeeds, fails for good, or runs out of retries
    /// (or of time before `deadline`), waiting with exponential backoff in
    /// between.
    fn retrying<T>(
        &self,
        progress: &mut dyn PullProgress,
        deadline: Instant,
        mut op: impl FnMut() -> Result<T, Failure>,
    ) -> Result<T> {
        let mut retry = 0;
        loop {
            self.check_cancel()?;
            match op() {
                Ok(value) => return Ok(value),
                Err(failure) if failure.transient && retry < self.retry.max_retries => {
                    let wait = self.retry.backoff(retry);
                    if Instant::now() + wait >= deadline {
                        return Err(failure.error);
                    }
                    retry += 1;
                    progress.message(&format!(
                        "{}; retrying in {:.1}s ({retry}/{})",
                        failure.error,
                        wait.as_secs_f64(),
                        self.retry.max_retries
                    ));
                    self.sleep(wait)?;
                }
                Err(failure) => return Err(failure.error),
            }
        }
    }

    /// GETs the listing's body, with retries, within the metadata deadline
    /// and at most [`MAX_LISTING_BYTES`] of it.
    pub(crate) fn get_listing(
        &self,
        url: &Url,
        ctx: Ctx<'_>,
        progress: &mut dyn PullProgress,
    ) -> Result<Vec<u8>> {
        let deadline = Instant::now() + self.metadata_timeout;
        self.retrying(progress, deadline, || {
            let resp = self.send(Method::GET, url, None, Follow::All, Some(deadline))?;
            let resp = self.check_status(resp, ctx, false)?;
            self.read_listing(resp, deadline)
        })
    }

    /// Reads a listing body, refusing one larger than [`MAX_LISTING_BYTES`]
    /// (as announced, or as it comes) and one still coming at `deadline`.
    fn read_listing(&self, mut resp: Response, deadline: Instant) -> Result<Vec<u8>, Failure> {
        let url = resp.url().clone();
        let too_big = || {
            Failure::fatal(HubError::Protocol {
                url: url.to_string(),
                detail: format!(
                    "the listing is larger than {} MiB, the most a listing may be; not reading on",
                    MAX_LISTING_BYTES >> 20
                ),
            })
        };
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_LISTING_BYTES as u64)
        {
            return Err(too_big());
        }
        let mut body = Vec::new();
        let mut buf = vec![0; 64 << 10];
        loop {
            self.check_cancel()?;
            if Instant::now() >= deadline {
                return Err(Failure::fatal(self.deadline_error(&url)));
            }
            let n = match resp.read(&mut buf) {
                Ok(0) => return Ok(body),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.attempt_failure(&url, &e, Some(deadline))),
            };
            if body.len() + n > MAX_LISTING_BYTES {
                return Err(too_big());
            }
            body.extend_from_slice(&buf[..n]);
        }
    }

    /// HEADs a resolve URL, with retries within the metadata deadline,
    /// following only same-origin redirects: the hub's redirect to the CDN
    /// carries the file's headers.
    pub(crate) fn head(
        &self,
        url: &Url,
        ctx: Ctx<'_>,
        progress: &mut dyn PullProgress,
    ) -> Result<FileHead> {
        let deadline = Instant::now() + self.metadata_timeout;
        self.retrying(progress, deadline, || {
            let resp = self.send(Method::HEAD, url, None, Follow::SameOrigin, Some(deadline))?;
            let resp = self.check_status(resp, ctx, true)?;
            Ok(parse_file_head(
                resp.url().as_str(),
                resp.status().as_u16(),
                resp.headers(),
            )?)
        })
    }

    /// The error for a metadata request still unanswered at its deadline.
    fn deadline_error(&self, url: &Url) -> HubError {
        HubError::Network {
            host: host_of(url),
            detail: format!(
                "{url}: no complete answer within {} s, the limit for a listing or a file's headers",
                self.metadata_timeout.as_secs_f64()
            ),
        }
    }

    /// A failed attempt: past `deadline`, for good; otherwise worth a retry.
    fn attempt_failure(
        &self,
        url: &Url,
        err: &dyn std::error::Error,
        deadline: Option<Instant>,
    ) -> Failure {
        match deadline {
            Some(deadline) if Instant::now() >= deadline => {
                Failure::fatal(self.deadline_error(url))
            }
            _ => Failure::transient(network_error(url, err)),
        }
    }

    /// One GET attempt of a file from byte `from` on (a `Range` request when
    /// `from > 0`), following redirects to the CDN. Success means 200, 206
    /// or 416 (range not satisfiable); the caller reads the body.
    pub(crate) fn get_file(&self, url: &Url, from: u64, ctx: Ctx<'_>) -> Result<Response, Failure> {
        let range = (from > 0).then_some(from);
        let resp = self.send(Method::GET, url, range, Follow::All, None)?;
        if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok(resp);
        }
        self.check_status(resp, ctx, false)
    }

    /// Sends one request, following redirects as `follow` says, with the
    /// token only for the endpoint's origin. With a `deadline` (metadata),
    /// the whole answer, body included, must come by then.
    fn send(
        &self,
        method: Method,
        url: &Url,
        range_from: Option<u64>,
        follow: Follow,
        deadline: Option<Instant>,
    ) -> Result<Response, Failure> {
        let mut url = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self
                .client
                .request(method.clone(), url.clone())
                .header(ACCEPT_ENCODING, "identity");
            if let Some(from) = range_from {
                req = req.header(RANGE, format!("bytes={from}-"));
            }
            if let Some(token) = &self.token {
                if same_origin(&url, &self.endpoint) {
                    req = req.bearer_auth(token.secret());
                }
            }
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Failure::fatal(self.deadline_error(&url)));
                }
                // For one request reqwest's timeout covers the whole answer.
                req = req.timeout(left.min(self.stall_timeout));
            }
            let resp = req
                .send()
                .map_err(|e| self.attempt_failure(&url, &e, deadline))?;
            let location = resp.headers().get(LOCATION).map(|v| v.as_bytes());
            let next = redirect_location(resp.url(), resp.status().as_u16(), location)
                .map_err(Failure::fatal)?;
            let Some(next) = next else {
                return Ok(resp);
            };
            if follow == Follow::SameOrigin && !same_origin(&next, &url) {
                return Ok(resp);
            }
            url = next;
        }
        Err(Failure::fatal(HubError::Protocol {
            url: url.to_string(),
            detail: format!("more than {MAX_REDIRECTS} redirects"),
        }))
    }

    /// Passes a success (or, when `redirect_ok`, a redirect) through and maps
    /// anything else to the matching error, transient or not.
    fn check_status(
        &self,
        resp: Response,
        ctx: Ctx<'_>,
        redirect_ok: bool,
    ) -> Result<Response, Failure> {
        let status = resp.status();
        if status.is_success() || (redirect_ok && status.is_redirection()) {
            return Ok(resp);
        }
        Err(self.status_failure(status, resp.headers(), resp.url(), ctx))
    }

    /// The error for an unsuccessful status, using the hub's `X-Error-Code`.
    fn status_failure(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        url: &Url,
        ctx: Ctx<'_>,
    ) -> Failure {
        let code = header_str(headers, "x-error-code").unwrap_or_default();
        let server_says = header_str(headers, "x-error-message")
            .map(|m| format!(" (hub: {})", m.chars().take(200).collect::<String>()))
            .unwrap_or_default();
        let repo = ctx.repo.to_owned();
        let withheld = if self.token_withheld {
            " (HF_TOKEN was not sent to this plain http:// endpoint; set \
             O1_HF_TOKEN_OVER_HTTP=1 to send it)"
                .to_owned()
        } else {
            String::new()
        };
        let not_found = |what: String| {
            let hint = if self.has_token() {
                server_says.clone()
            } else {
                format!(
                    "{server_says}; if the repo is private, set HF_TOKEN to a token that can read it{withheld}"
                )
            };
            Failure::fatal(HubError::NotFound {
                repo: repo.clone(),
                what,
                hint,
            })
        };
        match (status.as_u16(), code.as_str()) {
            (_, "RepoNotFound") => not_found("repository".to_owned()),
            (_, "RevisionNotFound") => not_found(format!("revision {:?}", ctx.revision)),
            (_, "EntryNotFound") | (404, _) => match ctx.file {
                Some(file) => not_found(format!("file {file} at revision {:?}", ctx.revision)),
                None => not_found(format!("repository or revision {:?}", ctx.revision)),
            },
            (s @ (401 | 403), _) | (s, "GatedRepo") => {
                let hint = match (&self.token, s) {
                    (None, _) => format!(
                        "the repo is gated or private; set HF_TOKEN to a token that can read it (create one at {}/settings/tokens){withheld}{server_says}",
                        self.endpoint()
                    ),
                    (Some(_), 401) => format!(
                        "the hub rejected the token in HF_TOKEN; check that it is valid{server_says}"
                    ),
                    (Some(_), _) => format!(
                        "the token cannot read this repo; accept its terms at {}/{} or use a token with access{server_says}",
                        self.endpoint(),
                        ctx.repo
                    ),
                };
                Failure::fatal(HubError::Unauthorized {
                    repo,
                    status: s,
                    hint,
                })
            }
            (s, _) if status.is_server_error() || s == 429 || s == 408 => {
                Failure::transient(HubError::Server {
                    url: url.to_string(),
                    status: s,
                })
            }
            (s, _) => Failure::fatal(HubError::Protocol {
                url: url.to_string(),
                detail: format!("HTTP {s}{server_says}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::headers::normalize_etag;
    use super::*;

    #[test]
    fn etags() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(normalize_etag("abc"), "abc");
    }

    #[test]
    fn encoding() {
        assert_eq!(encode("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(encode("a b/c.json", true), "a%20b/c.json");
    }

    #[test]
    fn origins() {
        let a = Url::parse("https://huggingface.co/x").unwrap();
        let b = Url::parse("https://huggingface.co:443/y").unwrap();
        let c = Url::parse("https://cdn-lfs.huggingface.co/y").unwrap();
        let d = Url::parse("http://huggingface.co/x").unwrap();
        let e = Url::parse("http://127.0.0.1:1/x").unwrap();
        let f = Url::parse("http://127.0.0.1:2/x").unwrap();
        assert!(same_origin(&a, &b));
        assert!(!same_origin(&a, &c));
        assert!(!same_origin(&a, &d));
        assert!(!same_origin(&e, &f));
        assert!(is_loopback(&e));
        assert!(is_loopback(&Url::parse("http://[::1]:8/").unwrap()));
        assert!(is_loopback(&Url::parse("http://localhost/").unwrap()));
        assert!(!is_loopback(&a));
    }

    #[test]
    fn head_headers() {
        let url = "http://h/x";
        let commit = "c".repeat(40);
        let mut h = HeaderMap::new();
        h.insert("x-linked-etag", "\"sha\"".parse().unwrap());
        h.insert("etag", "W/\"other\"".parse().unwrap());
        h.insert("x-linked-size", "42".parse().unwrap());
        h.insert("content-length", "0".parse().unwrap());
        h.insert("x-repo-commit", commit.parse().unwrap());
        let head = parse_file_head(url, 302, &h).unwrap();
        assert_eq!(head.etag.as_deref(), Some("sha"));
        assert_eq!(head.size, Some(42));
        assert_eq!(head.commit, Some(commit));
        h.remove("x-linked-etag");
        h.remove("x-linked-size");
        let head = parse_file_head(url, 200, &h).unwrap();
        assert_eq!(head.etag.as_deref(), Some("other"));
        assert_eq!(head.size, Some(0));
    }

    #[test]
    fn a_redirects_own_length_is_not_the_files_size() {
        let mut h = HeaderMap::new();
        h.insert("content-length", "17".parse().unwrap());
        assert_eq!(parse_file_head("http://h/x", 302, &h).unwrap().size, None);
        assert_eq!(
            parse_file_head("http://h/x", 200, &h).unwrap().size,
            Some(17)
        );
    }

    #[test]
    fn malformed_file_headers_are_errors() {
        for (name, value) in [
            ("x-linked-size", "-1"),
            ("x-linked-size", "+5"),
            ("x-linked-size", "99999999999999999999999"),
            ("x-linked-size", ""),
            ("x-repo-commit", "main"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, value.parse().unwrap());
            let err = parse_file_head("http://h/x", 200, &h).unwrap_err();
            assert!(
                matches!(err, HubError::Protocol { .. }),
                "{name}: {value}: {err}"
            );
        }
        let mut h = HeaderMap::new();
        h.insert(
            "etag",
            reqwest::header::HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        assert!(parse_file_head("http://h/x", 200, &h).is_err());
    }

    #[test]
    fn redirects() {
        let base = Url::parse("https://hub.test/o/n/resolve/main/x").unwrap();
        let next =
            |status, location: &str| redirect_location(&base, status, Some(location.as_bytes()));
        assert_eq!(
            next(307, "/p/n/resolve/main/x").unwrap().unwrap().as_str(),
            "https://hub.test/p/n/resolve/main/x"
        );
        assert_eq!(
            next(302, "https://cdn.test/a").unwrap().unwrap().as_str(),
            "https://cdn.test/a"
        );
        assert_eq!(next(200, "/elsewhere").unwrap(), None);
        assert_eq!(redirect_location(&base, 302, None).unwrap(), None);
        for bad in ["file:///etc/passwd", "data:text/plain,x", "http://"] {
            assert!(next(302, bad).is_err(), "{bad}");
        }
        assert!(redirect_location(&base, 302, Some(b"\xff")).is_err());
    }
}

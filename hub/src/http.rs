//! Requests to the hub: URLs, redirects, status codes, retries.
//!
//! Redirects are followed here, not by reqwest, so that the token goes only
//! to the endpoint's own origin (scheme, host and port): the hub redirects
//! LFS downloads to a CDN on another host, which must never see it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, ACCEPT_ENCODING, CONTENT_LENGTH, ETAG, LOCATION, RANGE};
use reqwest::{Method, StatusCode, Url};

use crate::error::{HubError, Result};
use crate::options::{HfToken, PullOptions, RetryPolicy};
use crate::progress::PullProgress;

/// Redirect hops followed before giving up.
const MAX_REDIRECTS: usize = 10;

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

/// What a `HEAD` on a resolve URL tells about a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FileHead {
    /// `X-Repo-Commit`.
    pub commit: Option<String>,
    /// `X-Linked-Etag`, else `ETag`, without quotes or `W/`.
    pub etag: Option<String>,
    /// `X-Linked-Size`, else `Content-Length`.
    pub size: Option<u64>,
}

/// An HTTP client bound to one endpoint, token and retry policy.
pub(crate) struct Http {
    client: Client,
    endpoint: Url,
    token: Option<HfToken>,
    retry: RetryPolicy,
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
        Ok(Http {
            client,
            endpoint,
            token: options.token.clone(),
            retry: options.retry.clone(),
            cancel: options.cancel.clone(),
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

    /// Runs `op` until it succeeds, fails for good, or runs out of retries,
    /// waiting with exponential backoff in between.
    pub(crate) fn retrying<T>(
        &self,
        progress: &mut dyn PullProgress,
        mut op: impl FnMut() -> Result<T, Failure>,
    ) -> Result<T> {
        let mut retry = 0;
        loop {
            self.check_cancel()?;
            match op() {
                Ok(value) => return Ok(value),
                Err(failure) if failure.transient && retry < self.retry.max_retries => {
                    let wait = self.retry.backoff(retry);
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

    /// GETs a JSON document, with retries.
    pub(crate) fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &Url,
        ctx: Ctx<'_>,
        progress: &mut dyn PullProgress,
    ) -> Result<T> {
        let body = self.retrying(progress, || {
            let resp = self.send(Method::GET, url, None, Follow::All)?;
            let resp = self.check_status(resp, ctx, false)?;
            let final_url = resp.url().clone();
            resp.bytes()
                .map_err(|e| Failure::transient(network_error(&final_url, &e)))
        })?;
        serde_json::from_slice(&body).map_err(|e| HubError::Protocol {
            url: url.to_string(),
            detail: format!("invalid JSON: {e}"),
        })
    }

    /// HEADs a resolve URL, with retries, following only same-origin
    /// redirects: the hub's redirect to the CDN carries the file's headers.
    pub(crate) fn head(
        &self,
        url: &Url,
        ctx: Ctx<'_>,
        progress: &mut dyn PullProgress,
    ) -> Result<FileHead> {
        self.retrying(progress, || {
            let resp = self.send(Method::HEAD, url, None, Follow::SameOrigin)?;
            let resp = self.check_status(resp, ctx, true)?;
            Ok(parse_head(resp.headers()))
        })
    }

    /// One GET attempt of a file from byte `from` on (a `Range` request when
    /// `from > 0`), following redirects to the CDN. Success means 200, 206
    /// or 416 (range not satisfiable); the caller reads the body.
    pub(crate) fn get_file(&self, url: &Url, from: u64, ctx: Ctx<'_>) -> Result<Response, Failure> {
        let range = (from > 0).then_some(from);
        let resp = self.send(Method::GET, url, range, Follow::All)?;
        if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok(resp);
        }
        self.check_status(resp, ctx, false)
    }

    /// Sends one request, following redirects as `follow` says, with the
    /// token only for the endpoint's origin.
    fn send(
        &self,
        method: Method,
        url: &Url,
        range_from: Option<u64>,
        follow: Follow,
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
            let resp = req
                .send()
                .map_err(|e| Failure::transient(network_error(&url, &e)))?;
            let Some(next) = redirect_target(&resp)? else {
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
        let not_found = |what: String| {
            let hint = if self.has_token() {
                server_says.clone()
            } else {
                format!(
                    "{server_says}; if the repo is private, set HF_TOKEN to a token that can read it"
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
                        "the repo is gated or private; set HF_TOKEN to a token that can read it (create one at {}/settings/tokens){server_says}",
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

/// Whether the URL names this machine.
fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether two URLs share scheme, host and port.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Where a redirect response points, resolved against its URL; `None` for
/// anything that is not a redirect with a `Location`.
fn redirect_target(resp: &Response) -> Result<Option<Url>, Failure> {
    if !matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
        return Ok(None);
    }
    let Some(location) = resp.headers().get(LOCATION) else {
        return Ok(None);
    };
    let bad = |detail: String| {
        Failure::fatal(HubError::Protocol {
            url: resp.url().to_string(),
            detail,
        })
    };
    let location = location
        .to_str()
        .map_err(|_| bad("redirect Location is not text".to_owned()))?;
    let next = resp
        .url()
        .join(location)
        .map_err(|e| bad(format!("bad redirect Location {location:?}: {e}")))?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(bad(format!("redirect to a non-HTTP URL {location:?}")));
    }
    Ok(Some(next))
}

/// The metadata headers of a HEAD answer.
fn parse_head(headers: &HeaderMap) -> FileHead {
    let etag = header_str(headers, "x-linked-etag")
        .or_else(|| header_str(headers, ETAG.as_str()))
        .map(|e| normalize_etag(&e))
        .filter(|e| !e.is_empty());
    let size = header_str(headers, "x-linked-size")
        .or_else(|| header_str(headers, CONTENT_LENGTH.as_str()))
        .and_then(|s| s.trim().parse().ok());
    FileHead {
        commit: header_str(headers, "x-repo-commit").map(|c| c.trim().to_owned()),
        etag,
        size,
    }
}

/// `W/"abc"` → `abc`.
pub(crate) fn normalize_etag(etag: &str) -> String {
    let etag = etag.trim();
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    etag.trim_matches('"').to_owned()
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A reqwest failure (connect, timeout, dropped body) as a network error.
pub(crate) fn network_error(url: &Url, err: &dyn std::error::Error) -> HubError {
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => url.to_string(),
    };
    HubError::Network {
        host,
        detail: error_chain(err),
    }
}

/// An error and its causes, joined: reqwest's own message alone is vague.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let msg = cause.to_string();
        if !text.contains(&msg) {
            text.push_str(": ");
            text.push_str(&msg);
        }
        source = cause.source();
    }
    text
}

/// Percent-encodes a revision or file path for a URL; `/` is kept only when
/// `keep_slash` (paths), and escaped as `%2F` otherwise (revisions).
pub(crate) fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
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
        let mut h = HeaderMap::new();
        h.insert("x-linked-etag", "\"sha\"".parse().unwrap());
        h.insert("etag", "W/\"other\"".parse().unwrap());
        h.insert("x-linked-size", "42".parse().unwrap());
        h.insert("content-length", "0".parse().unwrap());
        h.insert("x-repo-commit", "c0".parse().unwrap());
        let head = parse_head(&h);
        assert_eq!(head.etag.as_deref(), Some("sha"));
        assert_eq!(head.size, Some(42));
        assert_eq!(head.commit.as_deref(), Some("c0"));
        h.remove("x-linked-etag");
        h.remove("x-linked-size");
        let head = parse_head(&h);
        assert_eq!(head.etag.as_deref(), Some("other"));
        assert_eq!(head.size, Some(0));
    }
}

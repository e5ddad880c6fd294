//! Reading what a server sent: redirects, a file's metadata headers, and
//! the URL and error text the client's messages show.

use super::*;

/// What a `HEAD` on a resolve URL tells about a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileHead {
    /// `X-Repo-Commit`: a commit hash.
    pub commit: Option<String>,
    /// `X-Linked-Etag`, else `ETag`, without quotes or `W/`; never empty.
    pub etag: Option<String>,
    /// `X-Linked-Size`, else (for an answer that is not a redirect)
    /// `Content-Length`.
    pub size: Option<u64>,
}

/// Whether the URL names this machine.
pub(super) fn is_loopback(url: &Url) -> bool {
    is_loopback_host(url.host_str().unwrap_or_default())
}

/// Whether a host (a name or an IP address, IPv6 in brackets or not)
/// names this machine: `localhost` or a loopback address. The one list of
/// them, for the hub's endpoint and the server's origins and address.
pub fn is_loopback_host(host: &str) -> bool {
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

/// Where a redirect answer points: its `Location` resolved against `base`,
/// the URL asked. `None` when `status` is not a redirect or there is no
/// `Location` (the answer is then taken as it is); an error for a `Location`
/// that is not text, not a URL, or not `http(s)`.
pub fn redirect_location(base: &Url, status: u16, location: Option<&[u8]>) -> Result<Option<Url>> {
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return Ok(None);
    }
    let Some(location) = location else {
        return Ok(None);
    };
    let bad = |detail: String| HubError::Protocol {
        url: base.to_string(),
        detail,
    };
    let location = std::str::from_utf8(location)
        .map_err(|_| bad("redirect Location is not text".to_owned()))?
        .trim();
    let next = base
        .join(location)
        .map_err(|e| bad(format!("bad redirect Location {}: {e}", shown(location))))?;
    if !matches!(next.scheme(), "http" | "https") || next.host_str().is_none() {
        return Err(bad(format!(
            "redirect to a non-HTTP URL {}",
            shown(location)
        )));
    }
    Ok(Some(next))
}

/// Reads the metadata headers of the answer to a `HEAD` on a resolve URL
/// (`status`: its status, `url`: for messages). Headers that are present
/// must be well formed: text, a byte count, a commit hash.
pub fn parse_file_head(url: &str, status: u16, headers: &HeaderMap) -> Result<FileHead> {
    let bad = |detail: String| HubError::Protocol {
        url: url.to_owned(),
        detail,
    };
    let text = |name: &str| -> Result<Option<&str>> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(|s| Some(s.trim()))
                .map_err(|_| bad(format!("the {name} header is not text"))),
        }
    };
    let etag = match text("x-linked-etag")? {
        Some(etag) => Some(etag),
        None => text(ETAG.as_str())?,
    };
    let etag = etag.map(normalize_etag).filter(|e| !e.is_empty());
    let size = match text("x-linked-size")? {
        Some(size) => Some(("X-Linked-Size", size)),
        // A redirect's own length is that of its body, not of the file.
        None if (200..300).contains(&status) => {
            text(CONTENT_LENGTH.as_str())?.map(|s| ("Content-Length", s))
        }
        None => None,
    };
    let size = size
        .map(|(name, value)| {
            value
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| value.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| bad(format!("{name} {} is not a byte count", shown(value))))
        })
        .transpose()?;
    let commit = text("x-repo-commit")?
        .map(|c| {
            is_commit_hash(c)
                .then(|| c.to_owned())
                .ok_or_else(|| bad(format!("X-Repo-Commit {} is not a commit hash", shown(c))))
        })
        .transpose()?;
    Ok(FileHead { commit, etag, size })
}

/// `W/"abc"` → `abc`.
pub(super) fn normalize_etag(etag: &str) -> String {
    let etag = etag.trim();
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    etag.trim_matches('"').to_owned()
}

/// A value from the server for a message: quoted, escaped, at most 64 characters.
pub(crate) fn shown(value: &str) -> String {
    let mut short: String = value.chars().take(64).collect();
    if short.len() < value.len() {
        short.push('…');
    }
    format!("{short:?}")
}

pub(super) fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A reqwest failure (connect, timeout, dropped body) as a network error.
pub(crate) fn network_error(url: &Url, err: &dyn std::error::Error) -> HubError {
    HubError::Network {
        host: host_of(url),
        detail: error_chain(err),
    }
}

/// `host` or `host:port`, for messages.
pub(super) fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => url.to_string(),
    }
}

/// An error and its causes, joined: reqwest's own message alone is vague.
pub(super) fn error_chain(err: &dyn std::error::Error) -> String {
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

/// The innermost cause of an error (the refused connection, the unknown
/// host, the cut-off body), which is what a person can act on.
pub fn innermost_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last = err;
    while let Some(source) = last.source() {
        last = source;
    }
    last.to_string()
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

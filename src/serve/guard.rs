//! What every request passes before a handler: the access log, the
//! host-name and browser-origin checks, the API key, and a JSON body of
//! bounded size that arrives in bounded time. Every refusal is an
//! [`ApiError`] in the shape the route's clients expect.

use std::time::{Duration, Instant};

use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;

/// The largest request body accepted (a long conversation is well under it).
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// How long a request body may take to arrive once its headers have.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// The error body clients expect: OpenAI's `{"error": {message, type,
/// param, code}}`, or ollama's `{"error": message}` on its routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    OpenAi,
    Ollama,
}

impl Shape {
    /// ollama's routes are under `/api/`; every other route is OpenAI's.
    pub fn for_path(path: &str) -> Shape {
        if path.starts_with("/api/") {
            Shape::Ollama
        } else {
            Shape::OpenAi
        }
    }
}

#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`.
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub param: Option<String>,
    /// Seconds, for a 503.
    pub retry_after: Option<u64>,
    pub shape: Shape,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            code: None,
            param: None,
            retry_after: None,
            shape: Shape::OpenAi,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// A field o1 cannot honour.
    pub fn unsupported(param: &str, why: &str) -> Self {
        let mut e = Self::bad_request(format!("`{param}` is not supported by o1: {why}"));
        e.param = Some(param.to_string());
        e.code = Some("unsupported_parameter");
        e
    }

    pub fn invalid_value(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::bad_request(format!("`{param}` {}", message.into()));
        e.param = Some(param.to_string());
        e.code = Some("invalid_value");
        e
    }

    pub fn unknown_model(model: &str, served: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("the model `{model}` does not exist: this server runs `{served}`"),
        );
        e.param = Some("model".into());
        e.code = Some("model_not_found");
        e
    }

    /// A capability this model lacks (e.g. embeddings).
    pub fn unsupported_capability(what: &str) -> Self {
        let mut e = Self::bad_request(format!(
            "this model does not support {what}: it is a text generation model"
        ));
        e.param = Some("model".into());
        e.code = Some("model_not_supported");
        e
    }

    pub fn not_found(what: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("no such route: {what}"),
        );
        e.code = Some("not_found");
        e
    }

    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message);
        e.retry_after = Some(retry_after);
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn shaped(mut self, shape: Shape) -> Self {
        self.shape = shape;
        self
    }

    /// The error as JSON, as a response body or inside a stream.
    pub fn body(&self) -> serde_json::Value {
        match self.shape {
            Shape::OpenAi => serde_json::json!({"error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }}),
            Shape::Ollama => serde_json::json!({"error": self.message}),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A JSON request body: at most [`MAX_BODY_BYTES`], parsed into `T`, with
/// errors that say what is wrong (and where) as JSON.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let shape = Shape::for_path(req.uri().path());
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            )
            .with_code("body_too_large")
            .shaped(shape)
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(n) = declared.filter(|&n| n > MAX_BODY_BYTES as u64) {
            // A client reads the answer only once it has sent its body: a
            // body of a few times the limit is read and dropped first, so
            // the client learns why; a larger one is refused unread.
            if n <= 4 * MAX_BODY_BYTES as u64 {
                let mut body = req.into_body();
                let _ = tokio::time::timeout(BODY_TIMEOUT, async {
                    while let Some(Ok(_)) = body.frame().await {}
                })
                .await;
            }
            return Err(too_large());
        }
        let read = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES);
        let bytes = match tokio::time::timeout(BODY_TIMEOUT, read).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "invalid_request_error",
                    format!(
                        "the request body did not arrive within {} s",
                        BODY_TIMEOUT.as_secs()
                    ),
                )
                .with_code("body_timeout")
                .shaped(shape))
            }
            Ok(Err(e)) if is_length_limit(&e) => return Err(too_large()),
            // A cut-off body, a bad chunk, fewer bytes than Content-Length.
            Ok(Err(e)) => {
                return Err(ApiError::bad_request(format!(
                    "the request body could not be read: {}",
                    o1_hub::innermost_cause(&e)
                ))
                .with_code("bad_body")
                .shaped(shape))
            }
            Ok(Ok(bytes)) => bytes,
        };
        let mut json = serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(&mut json)
            .map(JsonBody)
            .map_err(|e| {
                // Name the field when the JSON is valid but a value is not.
                let path = e.path().to_string();
                let field = (path != ".").then_some(path);
                let message = match &field {
                    Some(f) => format!("`{f}`: {}", e.inner()),
                    None => format!(
                        "the request body is not valid JSON for this route: {}",
                        e.inner()
                    ),
                };
                let mut error = ApiError::bad_request(message).with_code("invalid_json");
                error.param = field;
                error.shaped(shape)
            })
    }
}

/// Whether reading a body failed on the size limit.
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The host part of a `Host` header: no port, no IPv6 brackets.
fn host_name(host: &str) -> &str {
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split_once(']').map_or(v6, |(h, _)| h);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Whether a request addressed to `host` (its `Host` header) may be served.
/// A web page can reach a loopback server under a name it controls (DNS
/// rebinding: `evil.example` made to resolve to 127.0.0.1); such a request
/// carries that name. So names are refused unless they are this machine's
/// (`localhost`, `*.localhost`, the name the server listens on) or listed in
/// `allow_hosts` (`*`: any); IP addresses, which no page can rebind, pass.
pub fn host_allowed(host: &str, listen_host: &str, allowed: &[String]) -> bool {
    let name = host_name(host).trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::IpAddr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || name.eq_ignore_ascii_case(listen_host)
        || allowed
            .iter()
            .any(|a| a == "*" || host_name(a).eq_ignore_ascii_case(&name))
}

/// Whether a browser page from `origin` may call the server: loopback
/// pages always, others only when `allow_origins` lists them (or is `*`).
pub fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    if scheme != "http" && scheme != "https" {
        return false;
    }
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split_once(']').map_or("", |(h, _)| h)
    } else {
        rest.split(':').next().unwrap_or("")
    };
    o1_hub::is_loopback_host(host)
}

/// The outermost layer: refuses requests for other host names and pages
/// from other origins, and writes the access log line of every request (to
/// o1's log file).
pub async fn screen_and_log(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned());
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
    let options = &state.options;
    let response = match (&host, &origin) {
        (Some(h), _) if !host_allowed(h, &options.host, &options.allow_hosts) => ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            format!(
                "requests addressed to the host name `{h}` are refused, as a web page could use such a name to reach this server (DNS rebinding): if it is this machine's name, add it to the allow_hosts setting (--allow-hosts)"
            ),
        )
        .with_code("host_not_allowed")
        .shaped(Shape::for_path(uri.path()))
        .into_response(),
        (_, Some(o)) if !origin_allowed(o, &options.allow_origins) => ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            format!(
                "requests from the web page at {o} are refused: add it to the allow_origins setting to allow it"
            ),
        )
        .with_code("origin_not_allowed")
        .shaped(Shape::for_path(uri.path()))
        .into_response(),
        _ => next.run(req).await,
    };
    let mut response = response;
    if let Ok(server) = HeaderValue::from_str(&format!("o1/{}", *super::VERSION)) {
        response.headers_mut().insert(header::SERVER, server);
    }
    tracing::info!(
        target: "o1::access",
        %method,
        path = uri.path(),
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        origin = origin.as_deref().unwrap_or("-"),
    );
    response
}

/// Whether `given` is the key, in time that does not depend on where they differ.
pub fn key_matches(given: &str, key: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(key.as_bytes());
    a.ct_eq(&b).into()
}

/// Who sent a request: the index of the API key it gave, among the
/// server's keys (`None` when the server has none). Remembered reasoning
/// and the prompt cache are kept apart per caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Caller(pub Option<usize>);

/// The credentials of `Authorization: Bearer KEY` (the scheme in any case,
/// as RFC 7235 has it).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// With API keys set, every route but the health check needs
/// `Authorization: Bearer KEY` with one of them; the request then carries
/// its [`Caller`].
pub async fn api_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let keys = &state.options.api_keys;
    let open = req.method() == Method::GET && matches!(req.uri().path(), "/" | "/health");
    if keys.is_empty() || open {
        req.extensions_mut().insert(Caller(None));
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    // Every key is compared, so the time taken does not say which matched.
    let matched = given.and_then(|g| {
        keys.iter()
            .map(|k| key_matches(g, k))
            .collect::<Vec<_>>()
            .into_iter()
            .position(|m| m)
    });
    match matched {
        Some(i) => {
            req.extensions_mut().insert(Caller(Some(i)));
            next.run(req).await
        }
        None => {
            let message = if given.is_some() {
                "the API key is wrong"
            } else {
                "this server needs an API key: send `Authorization: Bearer KEY`"
            };
            ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
                .with_code("invalid_api_key")
                .shaped(Shape::for_path(req.uri().path()))
                .into_response()
        }
    }
}

/// Any route that does not exist.
pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path()).shaped(Shape::for_path(uri.path()))
}

/// A route called with the wrong method.
pub async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("{} does not take {method}", uri.path()),
    );
    e.code = Some("method_not_allowed");
    e.shaped(Shape::for_path(uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_pages_are_allowed_and_others_only_when_listed() {
        let none: Vec<String> = vec![];
        for ok in [
            "http://localhost:3000",
            "http://127.0.0.1",
            "https://localhost",
            "http://[::1]:8080",
        ] {
            assert!(origin_allowed(ok, &none), "{ok}");
        }
        for refused in [
            "https://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example:80",
            "null",
            "file://",
        ] {
            assert!(!origin_allowed(refused, &none), "{refused}");
        }
        let listed = vec!["https://chat.example".to_string()];
        assert!(origin_allowed("https://chat.example", &listed));
        assert!(!origin_allowed("https://other.example", &listed));
        assert!(origin_allowed("https://other.example", &["*".to_string()]));
    }

    #[test]
    fn host_names_other_than_this_machines_are_refused() {
        let none: Vec<String> = vec![];
        for ok in [
            "localhost:11435",
            "127.0.0.1:11435",
            "[::1]:11435",
            "LOCALHOST",
            "app.localhost:80",
            "192.168.1.20:11435",
            "localhost.:11435",
        ] {
            assert!(host_allowed(ok, "127.0.0.1", &none), "{ok}");
        }
        for refused in [
            "evil.example:11435",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
        ] {
            assert!(!host_allowed(refused, "127.0.0.1", &none), "{refused}");
        }
        assert!(host_allowed("gpu-box:11435", "gpu-box", &none));
        let listed = vec!["chat.example".to_string()];
        assert!(host_allowed("chat.example:443", "127.0.0.1", &listed));
        assert!(host_allowed("any.example", "127.0.0.1", &["*".to_string()]));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer("Bearer k1"), Some("k1"));
        assert_eq!(bearer("bearer k1"), Some("k1"));
        assert_eq!(bearer("BEARER  k1 "), Some("k1"));
        assert_eq!(bearer("Basic k1"), None);
        assert_eq!(bearer("Bearerk1"), None);
    }

    #[test]
    fn keys_match_only_exactly() {
        assert!(key_matches("secret", "secret"));
        assert!(!key_matches("secret ", "secret"));
        assert!(!key_matches("", "secret"));
        assert!(!key_matches("secreT", "secret"));
    }

    #[test]
    fn errors_take_the_shape_of_their_route() {
        let e = ApiError::unsupported("tools", "o1 does not call tools");
        let body = e.body();
        assert_eq!(body["error"]["param"], "tools");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`tools`"));
        let body = e.shaped(Shape::for_path("/api/chat")).body();
        assert!(body["error"].as_str().unwrap().contains("`tools`"));
    }
}

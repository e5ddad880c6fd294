//! What every request passes before a handler: the access log, the
//! browser-origin check, the API key, and a JSON body of bounded size. Every
//! refusal is an [`ApiError`] in the shape the route's clients expect.

use std::time::Instant;

use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;

/// The largest request body accepted (a long conversation is well under it).
pub const MAX_BODY_BYTES: usize = 8 << 20;

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
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request_error",
                    format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                )
                .with_code("body_too_large")
                .shaped(shape)
            })?;
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
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

/// The outermost layer: refuses pages from other origins, and writes the
/// access log line of every request (to o1's log file).
pub async fn origin_and_log(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned());
    let response = match &origin {
        Some(o) if !origin_allowed(o, &state.options.allow_origins) => ApiError::new(
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

/// With an API key set, every route but the health check needs
/// `Authorization: Bearer KEY`.
pub async fn api_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(key) = &state.options.api_key else {
        return next.run(req).await;
    };
    let open = req.method() == Method::GET && matches!(req.uri().path(), "/" | "/health");
    if open {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if key_matches(given, key) => next.run(req).await,
        _ => {
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

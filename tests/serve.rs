//! `o1 serve` as clients use it: OpenAI's and ollama's chat APIs on a tiny
//! synthetic model, every kind of bad request, the queue, disconnects,
//! shutdown, and the official `openai` Python client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod fixture;
use fixture::Served;

/// The tiny synthetic model the tests serve.
fn fixture() -> &'static fixture::Tiny {
    fixture::tiny()
}

/// The served model's name.
const MODEL: &str = "tiny";

fn o1() -> Command {
    let f = fixture();
    let mut c = Command::new(env!("CARGO_BIN_EXE_o1"));
    c.env("O1_LOG_FILE", f.dir.path().join("o1.log"))
        .env("O1_MODELS_DIR", f.dir.path().join("store"))
        .env("O1_CONFIG", f.dir.path().join("config.toml"))
        .env("O1_CACHE_DIR", f.dir.path().join("cache"))
        .env_remove("O1_MODEL")
        .env_remove("O1_API_KEY");
    c
}

/// A running o1 serve of the tiny model with short phases
/// (`--max-reasoning 6 --max-answer 5` unless `args` say otherwise).
fn start(args: &[&str], env: &[(&str, &str)]) -> Served {
    let mut all: Vec<&str> = args.to_vec();
    for (flag, value) in [("--max-reasoning", "6"), ("--max-answer", "5")] {
        if !args.contains(&flag) {
            all.extend([flag, value]);
        }
    }
    let server = Served::start(&fixture().model, fixture().dir.path(), &all, env);
    let health = get(&server.url("/health"));
    assert_eq!(
        (health.0, &health.1["status"]),
        (200, &json!("ok")),
        "{health:?}"
    );
    server
}

/// What the tests ask of a running server.
trait ServedExt {
    fn addr(&self) -> &str;
    fn chat(&self, body: &Value) -> (u16, Value);
}

impl ServedExt for Served {
    fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    fn chat(&self, body: &Value) -> (u16, Value) {
        post(&self.url("/v1/chat/completions"), body, None)
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

fn get(url: &str) -> (u16, Value) {
    let r = client().get(url).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn post(url: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
    let mut req = client().post(url).json(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn question(q: &str) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": q}]})
}

/// The lines of an NDJSON body, parsed.
fn ndjson(r: reqwest::blocking::Response) -> Vec<Value> {
    r.text()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The data lines of a server-sent event stream, without `data: `.
fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(String::from)
        .collect()
}

/// Reasoning and answer put together from a stream's deltas.
fn streamed_texts(body: &str) -> (String, String, Vec<Value>) {
    let (mut reasoning, mut answer, mut chunks) = (String::new(), String::new(), vec![]);
    for data in sse_data(body) {
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(&data).unwrap();
        if let Some(choice) = chunk["choices"].get(0) {
            if let Some(t) = choice["delta"]["reasoning_content"].as_str() {
                reasoning.push_str(t);
            }
            if let Some(t) = choice["delta"]["content"].as_str() {
                answer.push_str(t);
            }
        }
        chunks.push(chunk);
    }
    (reasoning, answer, chunks)
}

/// Reasoning as the server shows it: without the whitespace the format
/// puts around it.
fn shown(reasoning: &Value) -> &str {
    reasoning.as_str().unwrap().trim()
}

/// `o1 run --json` on the same model and settings.
fn run_json(q: &str) -> Value {
    let out = o1()
        .args(["run", fixture().model.to_str().unwrap(), q, "--json"])
        .args(["--max-reasoning", "6", "--max-answer", "5"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn completions_streamed_or_not_equal_o1_run_and_carry_the_reasoning_apart() {
    let server = start(&[], &[]);
    let expected = run_json("What is 2+2?");

    let (status, v) = server.chat(&question("What is 2+2?"));
    assert_eq!(status, 200, "{v}");
    let message = &v["choices"][0]["message"];
    assert_eq!(message["role"], "assistant");
    assert_eq!(
        message["reasoning_content"].as_str().unwrap_or(""),
        shown(&expected["reasoning"])
    );
    assert_eq!(message["content"], expected["answer"]);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], MODEL);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let usage = &v["usage"];
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 6);
    assert_eq!(usage["completion_tokens"], 11);
    assert_eq!(
        usage["prompt_tokens"],
        expected["stats"]["reasoning"]["prompt_tokens"]
    );
    assert!(usage["prompt_tokens_details"]["cached_tokens"].is_u64());

    let mut body = question("What is 2+2?");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = client()
        .post(server.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = r.text().unwrap();
    let (reasoning, answer, chunks) = streamed_texts(&text);
    assert_eq!(reasoning, shown(&expected["reasoning"]));
    assert_eq!(answer, expected["answer"].as_str().unwrap());
    assert_eq!(sse_data(&text).last().unwrap(), "[DONE]");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    // The reasoning comes first, then the answer.
    let kinds: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .filter_map(|c| {
            if c["delta"]["reasoning_content"].is_string() {
                Some("r")
            } else if c["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
            {
                Some("a")
            } else {
                None
            }
        })
        .collect();
    let first_answer = kinds.iter().position(|k| *k == "a").unwrap();
    assert!(kinds[first_answer..].iter().all(|k| *k == "a"), "{kinds:?}");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 11);
    // The same question again: its whole prompt is in the cache.
    assert!(
        last["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            >= last["usage"]["prompt_tokens"].as_u64().unwrap() - 1,
        "{last}"
    );
}

#[test]
fn later_turns_of_a_conversation_prefill_only_their_new_tokens() {
    let server = start(&[], &[]);
    let mut messages = vec![json!({"role": "user", "content": "Name a colour."})];
    let mut previous: Option<(u64, u64)> = None;
    for turn in 0..5 {
        let (status, v) = server.chat(&json!({"model": MODEL, "messages": messages}));
        assert_eq!(status, 200, "{v}");
        let usage = &v["usage"];
        let prompt = usage["prompt_tokens"].as_u64().unwrap();
        let cached = usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap();
        if let Some((last_prompt, last_generated)) = previous {
            // All of the last turn's prompt and what it generated is re-used
            // (the client sent the answer back without its reasoning: the
            // server put the reasoning back).
            assert!(
                cached >= last_prompt + last_generated - 2,
                "turn {turn}: {cached} cached of {prompt}, last prompt {last_prompt} + {last_generated}"
            );
        }
        previous = Some((prompt, usage["completion_tokens"].as_u64().unwrap()));
        // Some clients send the reasoning back, most do not: both keep the
        // trained format, so both re-use the cache.
        let message = &v["choices"][0]["message"];
        let mut answer = json!({"role": "assistant", "content": message["content"]});
        if turn % 2 == 1 {
            answer["reasoning_content"] = message["reasoning_content"].clone();
        }
        messages.push(answer);
        messages.push(json!({"role": "user", "content": format!("And another? ({turn})")}));
    }
}

#[test]
fn reasoning_sent_back_is_rendered_as_the_turns_reasoning_message() {
    let server = start(&[], &[]);
    let reasoning = "Let me think step by step about this. ".repeat(10);
    let history = |with_reasoning: bool| {
        let mut answer =
            json!({"role": "assistant", "content": "An answer this server never wrote."});
        if with_reasoning {
            answer["reasoning_content"] = json!(reasoning);
        }
        json!({"model": MODEL, "messages": [
            {"role": "user", "content": "First question"},
            answer,
            {"role": "user", "content": "Second question"},
        ]})
    };
    let (_, plain) = server.chat(&history(false));
    let (_, with) = server.chat(&history(true));
    let tokens = |v: &Value| v["usage"]["prompt_tokens"].as_u64().unwrap();
    // The reasoning message: its text plus `<|im_start|><|reasoning|>\n` and `<|im_end|>\n`.
    assert!(
        tokens(&with) > tokens(&plain) + 60,
        "{} vs {}",
        tokens(&with),
        tokens(&plain)
    );
}

/// A client that cut the reasoning short sends it as the last assistant
/// message, without content: the server writes only the answer after it.
/// A streamed reasoning that reaches its budget says so in a delta.
#[test]
fn an_assistant_message_with_only_reasoning_gets_the_answer_after_it() {
    let server = start(&[], &[]);
    let question = json!({"role": "user", "content": "Why is the sky blue?"});
    let (status, full) = server.chat(&json!({"model": MODEL, "messages": [question]}));
    assert_eq!(status, 200, "{full}");
    let cut = "Light scatters";
    let (status, answered) = server.chat(&json!({"model": MODEL, "messages": [
        question,
        {"role": "assistant", "content": "", "reasoning_content": cut},
    ]}));
    assert_eq!(status, 200, "{answered}");
    let message = &answered["choices"][0]["message"];
    assert!(message.get("reasoning_content").is_none(), "{answered}");
    assert!(message["content"].is_string(), "{answered}");
    // No reasoning phase: every generated token is the answer's.
    let usage = &answered["usage"];
    assert_eq!(
        usage["completion_tokens_details"]["reasoning_tokens"], 0,
        "{answered}"
    );
    // The prompt is the question's plus the reasoning message and the
    // answer's opener, and the question's part came from the cache.
    let prompt = |v: &Value| v["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt(&answered) > prompt(&full), "{answered}");
    assert!(
        usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            >= prompt(&full) - 1,
        "{answered}"
    );

    // A reasoning at its budget is marked in the stream, once.
    let body = client()
        .post(server.url("/v1/chat/completions"))
        .json(&json!({"model": MODEL, "stream": true, "max_reasoning_tokens": 3, "messages": [question]}))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let (reasoning, _, chunks) = streamed_texts(&body);
    let marks: Vec<&Value> = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["reasoning_stop"] == "length")
        .collect();
    assert_eq!(marks.len(), 1, "{body}");
    assert!(!reasoning.is_empty());

    // Nothing to answer: an assistant message with neither is refused.
    let (status, refused) = server.chat(&json!({"model": MODEL, "messages": [
        {"role": "assistant", "content": "", "reasoning_content": cut},
    ]}));
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only `reasoning_content`"),
        "{refused}"
    );
}

#[test]
fn ollama_chat_streams_thinking_then_content_as_ndjson() {
    let server = start(&[], &[]);
    let expected = run_json("Hello");
    let body = json!({"model": "tiny:latest", "messages": [{"role": "user", "content": "Hello"}]});
    let r = client()
        .post(server.url("/api/chat"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let lines = ndjson(r);
    let thinking: String = lines
        .iter()
        .filter_map(|l| l["message"]["thinking"].as_str())
        .collect();
    let content: String = lines
        .iter()
        .filter_map(|l| l["message"]["content"].as_str())
        .collect();
    assert_eq!(thinking, shown(&expected["reasoning"]));
    assert_eq!(content, expected["answer"].as_str().unwrap());
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "length");
    assert_eq!(last["eval_count"], 11);
    assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false));

    // Not streamed, the reasoning hidden.
    let mut body = body;
    body["stream"] = json!(false);
    body["think"] = json!(false);
    let (status, v) = post(&server.url("/api/chat"), &body, None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["message"]["content"], expected["answer"]);
    assert!(v["message"].get("thinking").is_none(), "{v}");

    let (status, tags) = get(&server.url("/api/tags"));
    assert_eq!(status, 200);
    assert_eq!(tags["models"][0]["name"], "tiny:latest");
    assert_eq!(tags["models"][0]["details"]["format"], "gguf");
    let (status, show) = post(&server.url("/api/show"), &json!({"model": "tiny"}), None);
    assert_eq!(status, 200, "{show}");
    assert!(show["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("thinking")));
    let (status, version) = get(&server.url("/api/version"));
    assert_eq!(status, 200);
    assert!(version["version"].is_string());
    let (status, e) = post(&server.url("/api/show"), &json!({"model": "llama3"}), None);
    assert_eq!(status, 404);
    assert!(e["error"].as_str().unwrap().contains("llama3"), "{e}");
}

#[test]
fn bad_requests_get_json_errors_that_name_the_problem() {
    let server = start(&[], &[]);
    let url = server.url("/v1/chat/completions");
    let raw = |body: &str| {
        let r = client()
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    let (status, e) = raw("{\"model\": ");
    assert_eq!(status, 400);
    assert_eq!(e["error"]["code"], "invalid_json");
    let (status, e) = raw("[1, 2]");
    assert_eq!(status, 400, "{e}");
    // Valid JSON with a bad value: the field is named.
    let (status, e) = raw(r#"{"model": "tiny", "max_tokens": -1, "messages": []}"#);
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["param"], "max_tokens", "{e}");
    let (status, e) = raw(r#"{"model": "tiny", "messages": [{"role": 3}]}"#);
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["param"], "messages[0].role", "{e}");

    let huge = "x".repeat(o1::serve::MAX_BODY_BYTES + 1);
    let (status, e) =
        server.chat(&json!({"model": MODEL, "messages": [{"role": "user", "content": huge}]}));
    assert_eq!(status, 413, "{e}");
    assert_eq!(e["error"]["code"], "body_too_large");

    let (status, e) =
        server.chat(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(status, 404);
    assert_eq!(e["error"]["code"], "model_not_found");
    assert!(e["error"]["message"].as_str().unwrap().contains("gpt-4o"));

    for (field, value) in [
        (
            "tools",
            json!([{"type": "function", "function": {"name": "f"}}]),
        ),
        ("response_format", json!({"type": "json_object"})),
        ("n", json!(2)),
        ("logprobs", json!(true)),
        ("frequency_penalty", json!(0.5)),
    ] {
        let mut body = question("hi");
        body[field] = value;
        let (status, e) = server.chat(&body);
        assert_eq!(status, 400, "{field}: {e}");
        assert_eq!(e["error"]["param"], field, "{e}");
        assert_eq!(e["error"]["code"], "unsupported_parameter");
    }
    for (body, param) in [
        (json!({"model": MODEL, "messages": []}), "messages"),
        (
            json!({"model": MODEL, "messages": [{"role": "assistant", "content": "hi"}]}),
            "messages",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": MODEL, "temperature": 5000.0, "messages": [{"role": "user", "content": "hi"}]}),
            "temperature",
        ),
        (
            json!({"model": MODEL, "reasoning_effort": "extreme", "messages": [{"role": "user", "content": "hi"}]}),
            "reasoning_effort",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            "model",
        ),
        (
            json!({"model": MODEL, "stop": ["x".repeat(2000)], "messages": [{"role": "user", "content": "hi"}]}),
            "stop",
        ),
    ] {
        let (status, e) = server.chat(&body);
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["error"]["param"], param, "{e}");
    }
    let (status, m) = get(&server.url("/v1/models/tiny"));
    assert_eq!((status, &m["id"]), (200, &json!("tiny")), "{m}");
    assert_eq!(get(&server.url("/v1/models/gpt-4o")).0, 404);
    let (status, e) = get(&server.url("/v2/nothing"));
    assert_eq!(status, 404);
    assert_eq!(e["error"]["code"], "not_found");
    let (status, e) = get(&url);
    assert_eq!(status, 405, "{e}");
    // The ollama routes answer in ollama's shape.
    let (status, e) = post(
        &server.url("/api/chat"),
        &json!({"model": "tiny", "messages": [], "format": "json"}),
        None,
    );
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("format"), "{e}");

    // After all that, the server still serves.
    let (status, _) = server.chat(&question("still there?"));
    assert_eq!(status, 200);
}

#[test]
fn an_api_key_is_required_when_set_and_compared_exactly() {
    let server = start(&["--api-key", "s3cret"], &[]);
    let url = server.url("/v1/chat/completions");
    let (status, e) = post(&url, &question("hi"), None);
    assert_eq!(status, 401);
    assert_eq!(e["error"]["code"], "invalid_api_key");
    assert!(e["error"]["message"].as_str().unwrap().contains("Bearer"));
    let (status, _) = post(&url, &question("hi"), Some("s3cret!"));
    assert_eq!(status, 401);
    let (status, _) = post(&server.url("/api/chat"), &question("hi"), Some("wrong"));
    assert_eq!(status, 401);
    let (status, v) = post(&url, &question("hi"), Some("s3cret"));
    assert_eq!(status, 200, "{v}");
    // The scheme's case does not matter (RFC 7235).
    for scheme in ["bearer", "BEARER"] {
        let r = client()
            .post(&url)
            .header("authorization", format!("{scheme} s3cret"))
            .json(&question("hi"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    // The health check stays open.
    assert_eq!(get(&server.url("/health")).0, 200);
    let r = client().get(server.url("/v1/models")).send().unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn pages_from_other_origins_are_refused_unless_allowed() {
    let server = start(&["--allow-origins", "https://chat.example"], &[]);
    let models = |origin: &str| {
        client()
            .get(server.url("/v1/models"))
            .header("origin", origin)
            .send()
            .unwrap()
    };
    let r = models("https://evil.example");
    assert_eq!(r.status(), 403);
    let r = models("http://localhost:5173");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    let r = models("https://chat.example");
    assert_eq!(r.status(), 200);
    let preflight = client()
        .request(reqwest::Method::OPTIONS, server.url("/v1/chat/completions"))
        .header("origin", "https://chat.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://chat.example"
    );
}

#[test]
fn a_stop_sequence_ends_the_answer_before_it() {
    let server = start(&["--max-answer", "24"], &[]);
    let (_, v) = server.chat(&question("Tell me something."));
    let answer = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let chars: Vec<char> = answer.chars().collect();
    assert!(chars.len() > 8, "{answer:?}");
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
    let before = &answer[..answer.find(&stop).unwrap()];
    let mut body = question("Tell me something.");
    body["stop"] = json!([stop]);
    let (status, v) = server.chat(&body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], before);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

/// Sends a streamed request by hand and returns the connection once the
/// first bytes of the body are in.
fn open_stream(addr: &str, body: &Value) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let body = body.to_string();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("reasoning_content") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    s
}

fn long_question() -> Value {
    let mut body = question("Go on at length.");
    body["stream"] = json!(true);
    body["max_reasoning_tokens"] = json!(400);
    body
}

/// Every token takes this long, so a request runs for a while.
const SLOW: (&str, &str) = ("O1_TEST_TOKEN_DELAY_MS", "25");

#[test]
fn a_client_that_disconnects_cancels_its_generation() {
    let server = start(&[], &[SLOW]);
    // 400 reasoning tokens at 25 ms: 10 s if it ran to the end.
    let stream = open_stream(server.addr(), &long_question());
    let cut = Instant::now();
    drop(stream);
    assert_served_soon_after(&server, cut, "next");

    // The same without streaming: the client gives up while it waits.
    let mut body = long_question();
    body["stream"] = json!(false);
    let mut s = TcpStream::connect(server.addr()).unwrap();
    let body = body.to_string();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let cut = Instant::now();
    drop(s);
    assert_served_soon_after(&server, cut, "after");
}

/// The next request (`q`) is answered well before the cancelled one, which
/// the client dropped at `cut`, would have ended.
fn assert_served_soon_after(server: &Served, cut: Instant, q: &str) {
    let (status, v) = server.chat(&question(q));
    assert_eq!(status, 200, "{v}");
    let waited = cut.elapsed();
    // Well under the 10 s the dropped request would still run, with room for
    // the other tests' servers sharing the cores.
    assert!(
        waited < Duration::from_secs(6),
        "the next request waited {waited:?}"
    );
}

#[test]
fn requests_run_one_at_a_time_in_order_and_a_full_queue_says_retry() {
    let server = start(&["--queue", "1"], &[SLOW]);
    let first = open_stream(server.addr(), &long_question());
    // The second waits in the queue while the first runs.
    let url = server.url("/v1/chat/completions");
    let waiting = std::thread::spawn(move || {
        let (status, v) = post(&url, &question("second"), None);
        (status, v, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(500));
    let (status, e) = server.chat(&question("third"));
    assert_eq!(status, 503, "{e}");
    assert_eq!(e["error"]["code"], "queue_full");
    let r = client()
        .post(server.url("/v1/chat/completions"))
        .json(&question("third"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));

    // The first runs to its end, then the second runs.
    let mut first = first;
    let mut rest = String::new();
    first.read_to_string(&mut rest).ok();
    let first_done = Instant::now();
    assert!(rest.contains("[DONE]"), "{rest}");
    let (status, v, second_done) = waiting.join().unwrap();
    assert_eq!(status, 200, "{v}");
    assert!(
        second_done > first_done,
        "the second ended before the first"
    );
}

#[test]
fn two_clients_at_once_both_complete_in_order() {
    let server = start(&[], &[SLOW]);
    let url = server.url("/v1/chat/completions");
    let done = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = ["one", "two"]
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let (url, done) = (url.clone(), done.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200 * i as u64));
                let (status, v) = post(&url, &question(name), None);
                assert_eq!(status, 200, "{v}");
                done.lock().unwrap().push(name);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*done.lock().unwrap(), ["one", "two"]);
}

#[test]
fn shutdown_mid_stream_ends_the_stream_with_an_error_and_exits() {
    let mut server = start(&[], &[SLOW]);
    let mut stream = open_stream(server.addr(), &long_question());
    let pid = server.child.id() as libc::pid_t;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let stopped = Instant::now();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).ok();
    assert!(rest.contains("shutting_down"), "{rest}");
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(8),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(server.stderr.lock().unwrap().contains("stopping"));
}

#[test]
fn a_model_that_cannot_load_ends_the_server_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"not a gguf file at all").unwrap();
    let out = o1()
        .args(["serve", bad.to_str().unwrap(), "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = o1()
        .args(["serve", fixture().model.to_str().unwrap(), "--port", &port])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

/// The official `openai` Python package against the server: streamed and
/// not, the texts equal `o1 run --json`'s, later turns report cached tokens.
#[test]
#[ignore = "needs Python and the openai and ollama packages from PyPI (`just test` runs it)"]
fn the_official_openai_and_ollama_python_clients_get_the_reasoning_and_the_answer() {
    let root = env!("CARGO_MANIFEST_DIR");
    let venv = dirs_cache().join("clients-venv");
    let python = Command::new(format!("{root}/scripts/python-env"))
        .arg(&venv)
        .arg(format!("{root}/tests/clients/requirements.txt"))
        .output()
        .unwrap();
    assert!(
        python.status.success(),
        "{}",
        String::from_utf8_lossy(&python.stderr)
    );
    let python = String::from_utf8(python.stdout).unwrap().trim().to_string();
    let server = start(&[], &[]);
    let expected = run_json("What is 2+2?");
    for (script, base) in [
        ("openai_client.py", format!("{}/v1", server.base)),
        ("ollama_client.py", server.base.clone()),
    ] {
        let out = Command::new(&python)
            .arg(format!("{root}/tests/clients/{script}"))
            .arg(base)
            .arg(MODEL)
            .arg(expected.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn dirs_cache() -> PathBuf {
    std::env::var_os("O1_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/o1"))
}

#[test]
fn a_crash_in_native_code_ends_the_server_with_the_message_and_128_plus_the_signal() {
    let mut server = start(&[], &[("O1_INJECT_FAULT", "SIGSEGV@decode")]);
    // The connection drops with the process: no answer comes.
    let sent = client()
        .post(server.url("/v1/chat/completions"))
        .json(&question("Hello"))
        .send();
    assert!(sent.is_err(), "{sent:?}");
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 11));
    let started = Instant::now();
    while !server
        .stderr
        .lock()
        .unwrap()
        .contains("to force a CPU path")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            server.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = server.stderr.lock().unwrap().clone();
    assert!(
        err.contains("o1: crashed: segmentation fault (SIGSEGV) in native code"),
        "{err}"
    );
    assert!(err.contains("o1: CPU path: "), "{err}");
}

/// Sends `request` as it is on a new connection and reads the response
/// until the server closes it (or 10 s pass).
fn raw_http(addr: &str, request: &[u8], close_write: bool) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    if close_write {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {response:?}"))
}

#[test]
fn requests_for_other_host_names_are_refused_against_dns_rebinding() {
    let server = start(&[], &[]);
    let port = server.addr().rsplit(':').next().unwrap().to_string();
    let request = |method: &str, path: &str, host: &str| {
        let body = if method == "POST" {
            r#"{"model":"tiny"}"#
        } else {
            ""
        };
        let r = raw_http(
            server.addr(),
            format!(
                "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
            false,
        );
        (status_of(&r), r)
    };
    let evil = format!("evil.example:{port}");
    for (method, path) in [
        ("GET", "/v1/models"),
        ("GET", "/api/tags"),
        ("GET", "/api/version"),
        ("GET", "/api/ps"),
        ("POST", "/api/show"),
    ] {
        let (status, r) = request(method, path, &evil);
        assert_eq!(status, 403, "{path}: {r}");
        assert!(r.contains("allow_hosts"), "{r}");
        for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
            let (status, r) = request(method, path, &host);
            assert_eq!(status, 200, "{path} {host}: {r}");
        }
    }
    let allowed = start(&["--allow-hosts", "evil.example"], &[]);
    let r = raw_http(
        allowed.addr(),
        format!("GET /api/tags HTTP/1.1\r\nHost: {evil}\r\nConnection: close\r\n\r\n").as_bytes(),
        false,
    );
    assert_eq!(status_of(&r), 200, "{r}");
}

#[test]
fn idle_connections_are_closed_and_health_answers_past_the_cap() {
    let server = start(&["--max-connections", "40"], &[]);
    // More idle sockets than the server keeps: they never send a byte.
    let idle: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let health = loop {
        let r = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap()
            .get(server.url("/health"))
            .send();
        if let Ok(r) = r {
            break r.status().as_u16();
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "/health never answered past the cap"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(health, 200);
    // The server closes idle connections: the first ones after the header
    // timeout (15 s), those past the cap at once.
    let mut first = idle.into_iter().next().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(25)))
        .unwrap();
    let mut buf = [0u8; 64];
    let closed = Instant::now();
    let n = first.read(&mut buf);
    assert!(
        matches!(n, Ok(0)) || n.is_err() && closed.elapsed() < Duration::from_secs(24),
        "an idle connection stayed open: {n:?}"
    );
}

#[test]
fn clients_that_leave_the_queue_free_their_place_at_once() {
    let server = start(&["--queue", "2"], &[SLOW]);
    let running = open_stream(server.addr(), &long_question());
    // Two clients queue behind it, then hang up.
    let queued: Vec<TcpStream> = (0..2)
        .map(|i| {
            let mut s = TcpStream::connect(server.addr()).unwrap();
            let body = question(&format!("queued {i}")).to_string();
            write!(
                s,
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    drop(queued);
    std::thread::sleep(Duration::from_millis(300));
    // Their places are free: this one queues instead of getting 503.
    let url = server.url("/v1/chat/completions");
    let next = std::thread::spawn(move || {
        let (status, v) = post(&url, &question("next"), None);
        (status, v, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(500));
    let cut = Instant::now();
    drop(running);
    let (status, v, done) = next.join().unwrap();
    assert_eq!(status, 200, "{v}");
    // Served as soon as the running one is cancelled, not after the
    // abandoned ones had their turns.
    let waited = done - cut;
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
}

/// The prompt tokens and cached tokens of a chat completion.
fn prompt_usage(v: &Value) -> (u64, u64) {
    let u = &v["usage"];
    (
        u["prompt_tokens"].as_u64().unwrap(),
        u["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap(),
    )
}

#[test]
fn remembered_reasoning_and_the_cache_stay_within_a_conversation_and_a_key() {
    let keys = ["--api-key", "alice-key,bob-key"];
    let server = start(&keys, &[]);
    let control = start(&[keys[0], keys[1], "--remember-reasoning", "false"], &[]);
    let url = |s: &Served| s.url("/v1/chat/completions");
    let first = question("My PIN is 4711. What is 2+2?");
    let (status, v) = post(&url(&server), &first, Some("alice-key"));
    assert_eq!(status, 200, "{v}");
    let answer = v["choices"][0]["message"]["content"].clone();
    let reasoning = v["usage"]["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap();
    let follow_up = |first_question: &str| {
        json!({"model": MODEL, "messages": [
            {"role": "user", "content": first_question},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "And 3+3?"},
        ]})
    };
    let same = follow_up("My PIN is 4711. What is 2+2?");
    let other = follow_up("What is 2+2?");
    let without = |body: &Value| prompt_usage(&post(&url(&control), body, Some("alice-key")).1).0;

    // Alice's own conversation gets its reasoning back, and her cache.
    let (status, v) = post(&url(&server), &same, Some("alice-key"));
    assert_eq!(status, 200, "{v}");
    let (prompt, cached) = prompt_usage(&v);
    assert!(
        prompt >= without(&same) + reasoning,
        "{prompt} vs {} + {reasoning}",
        without(&same)
    );
    assert!(cached > 0);
    // Another conversation with the same answer, or Bob with Alice's
    // conversation: no reasoning, and none of Alice's cache.
    let (_, v) = post(&url(&server), &other, Some("alice-key"));
    assert_eq!(prompt_usage(&v).0, without(&other));
    let (_, v) = post(&url(&server), &same, Some("bob-key"));
    assert_eq!(prompt_usage(&v), (without(&same), 0));
}

#[test]
fn malformed_bodies_get_400_with_the_cause_and_oversized_ones_413() {
    let server = start(&[], &[]);
    let head = |extra: &str| {
        format!("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{extra}\r\n")
    };
    // Fewer bytes than Content-Length, then the client stops sending.
    let r = raw_http(
        server.addr(),
        format!("{}{{\"model\":", head("Content-Length: 100\r\n")).as_bytes(),
        true,
    );
    assert_eq!(status_of(&r), 400, "{r}");
    assert!(r.contains("could not be read"), "{r}");
    assert!(!r.contains("larger than"), "{r}");
    // A chunk size that is not a number.
    let r = raw_http(
        server.addr(),
        format!(
            "{}ZZ\r\nabc\r\n0\r\n\r\n",
            head("Transfer-Encoding: chunked\r\n")
        )
        .as_bytes(),
        true,
    );
    assert_eq!(status_of(&r), 400, "{r}");
    // Truly too large: 413, without reading it.
    let r = raw_http(
        server.addr(),
        head("Content-Length: 999999999\r\nConnection: close\r\n").as_bytes(),
        false,
    );
    assert_eq!(status_of(&r), 413, "{r}");
}

#[test]
fn ollama_clients_get_generate_ps_load_unload_and_the_served_context() {
    let server = start(&["--ctx", "256"], &[]);
    let expected = run_json("Hello");
    let api = |path: &str| server.url(path);

    let body = json!({"model": "tiny", "prompt": "Hello", "stream": false});
    let (status, v) = post(&api("/api/generate"), &body, None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["response"], expected["answer"]);
    assert_eq!(
        v["thinking"].as_str().unwrap_or(""),
        shown(&expected["reasoning"])
    );
    assert_eq!(v["done"], true);
    assert_eq!(v["done_reason"], "length");
    let r = client()
        .post(api("/api/generate"))
        .json(&json!({"model": "tiny", "prompt": "Hello"}))
        .send()
        .unwrap();
    let lines = ndjson(r);
    let response: String = lines
        .iter()
        .filter_map(|l| l["response"].as_str())
        .collect();
    assert_eq!(response, expected["answer"].as_str().unwrap());
    assert_eq!(lines.last().unwrap()["done"], true);
    for (field, value) in [("suffix", json!("end")), ("images", json!(["aGk="]))] {
        let mut body = json!({"model": "tiny", "prompt": "Hello"});
        body[field] = value;
        let (status, e) = post(&api("/api/generate"), &body, None);
        assert_eq!(status, 400, "{e}");
        assert!(e["error"].as_str().unwrap().contains(field), "{e}");
    }

    // Loading and unloading: an empty request answers done.
    for (path, body, reason) in [
        (
            "/api/chat",
            json!({"model": "tiny", "messages": []}),
            "load",
        ),
        (
            "/api/chat",
            json!({"model": "tiny", "messages": [], "keep_alive": 0}),
            "unload",
        ),
        ("/api/generate", json!({"model": "tiny"}), "load"),
        (
            "/api/generate",
            json!({"model": "tiny", "keep_alive": "0s"}),
            "unload",
        ),
    ] {
        let (status, v) = post(&api(path), &body, None);
        assert_eq!(status, 200, "{path} {body}: {v}");
        assert_eq!(
            (v["done"].clone(), v["done_reason"].clone()),
            (json!(true), json!(reason))
        );
    }

    let (status, ps) = get(&api("/api/ps"));
    assert_eq!(status, 200);
    assert_eq!(ps["models"][0]["name"], "tiny:latest");
    assert_eq!(ps["models"][0]["context_length"], 256);
    assert!(ps["models"][0]["size"].as_u64().unwrap() > 0);
    let (_, show) = post(&api("/api/show"), &json!({"model": "tiny"}), None);
    let arch = show["details"]["family"].as_str().unwrap().to_string();
    assert_eq!(show["model_info"][format!("{arch}.context_length")], 256);

    // No embeddings, said in each API's shape.
    for path in ["/api/embed", "/api/embeddings"] {
        let (status, e) = post(&api(path), &json!({"model": "tiny", "input": "hi"}), None);
        assert_eq!(status, 400, "{path}");
        assert!(e["error"].as_str().unwrap().contains("embeddings"), "{e}");
    }
    let (status, e) = post(
        &api("/v1/embeddings"),
        &json!({"model": "tiny", "input": "hi"}),
        None,
    );
    assert_eq!(status, 400);
    assert_eq!(e["error"]["code"], "model_not_supported");

    // The version is o1's, with its commit; so is the Server header.
    let r = client().get(api("/api/version")).send().unwrap();
    let server_header = r.headers()["server"].to_str().unwrap().to_string();
    let version = r.json::<Value>().unwrap()["version"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        version.starts_with(env!("CARGO_PKG_VERSION")) && version.contains('+'),
        "{version}"
    );
    assert_eq!(server_header, format!("o1/{version}"));
}

#[test]
fn shown_reasoning_has_no_whitespace_around_it() {
    let server = start(&["--max-reasoning", "12"], &[]);
    for q in ["Hi", "What is 2+2?", "Write a poem.", "?"] {
        let (status, v) = server.chat(&question(q));
        assert_eq!(status, 200, "{v}");
        let message = &v["choices"][0]["message"];
        match message.get("reasoning_content") {
            None => {}
            Some(Value::String(r)) => {
                assert!(!r.is_empty() && r.trim() == r, "{q}: {r:?}");
            }
            Some(other) => panic!("{q}: reasoning_content is {other}"),
        }
    }
}

#[test]
fn raw_prompts_are_continued_as_they_are() {
    let server = start(&[], &[]);
    let expected = run_json("Hello");
    // The reasoning phase's prompt, spelled out: its continuation is the
    // reasoning `o1 run` wrote.
    let prompt = "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n\
                  <|im_start|>user\nHello<|im_end|>\n<|im_start|><|reasoning|>\n";
    let body = json!({"model": MODEL, "prompt": prompt, "max_tokens": 6});
    let (status, v) = post(&server.url("/v1/completions"), &body, None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], expected["reasoning"]);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 6);
    assert_eq!(
        v["usage"]["prompt_tokens"],
        expected["stats"]["reasoning"]["prompt_tokens"]
    );

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = client()
        .post(server.url("/v1/completions"))
        .json(&streamed)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let joined: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| c["choices"][0]["text"].as_str().map(String::from))
        .collect();
    assert_eq!(joined, expected["reasoning"].as_str().unwrap());

    // ollama's raw generate: the same continuation, no thinking.
    let body = json!({"model": "tiny", "prompt": prompt, "raw": true, "stream": false,
                      "options": {"num_predict": 6}});
    let (status, v) = post(&server.url("/api/generate"), &body, None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["response"], expected["reasoning"]);
    assert!(v.get("thinking").is_none(), "{v}");

    let (status, e) = post(
        &server.url("/v1/completions"),
        &json!({"model": MODEL, "prompt": ["a", "b"]}),
        None,
    );
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["param"], "prompt");
}

#[test]
fn the_responses_api_gives_the_reasoning_as_an_item_streamed_or_not() {
    let server = start(&[], &[]);
    let expected = run_json("What is 2+2?");
    let url = server.url("/v1/responses");
    let body = json!({"model": MODEL, "input": "What is 2+2?"});
    let (status, v) = post(&url, &body, None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "response");
    let output = v["output"].as_array().unwrap();
    let message = output.last().unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"][0]["text"], expected["answer"]);
    let reasoning = shown(&expected["reasoning"]);
    if !reasoning.is_empty() {
        assert_eq!(output[0]["type"], "reasoning");
        assert_eq!(output[0]["content"][0]["text"], reasoning);
    }
    // The answer ran out of tokens: incomplete, as the API says it.
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = client()
        .post(&url)
        .json(&streamed)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let events: Vec<Value> = sse_data(&text)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds[..2], ["response.created", "response.in_progress"]);
    assert_eq!(*kinds.last().unwrap(), "response.incomplete");
    let numbers: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
    let deltas = |kind: &str| -> String {
        events
            .iter()
            .filter(|e| e["type"] == kind)
            .map(|e| e["delta"].as_str().unwrap())
            .collect()
    };
    assert_eq!(deltas("response.reasoning_text.delta"), reasoning);
    assert_eq!(
        deltas("response.output_text.delta"),
        expected["answer"].as_str().unwrap()
    );

    // A conversation sent back as items, reasoning item included.
    let (status, v) = post(
        &url,
        &json!({"model": MODEL, "input": [
            {"role": "user", "content": "What is 2+2?"},
            {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "Add them."}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "4"}]},
            {"role": "user", "content": [{"type": "input_text", "text": "And 3+3?"}]},
        ]}),
        None,
    );
    assert_eq!(status, 200, "{v}");
    let (status, e) = post(
        &url,
        &json!({"model": MODEL, "input": "hi", "previous_response_id": "resp_1"}),
        None,
    );
    assert_eq!(status, 400);
    assert_eq!(e["error"]["param"], "previous_response_id");
}

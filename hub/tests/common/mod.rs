//! A fake Hugging Face hub on 127.0.0.1 for the tests: the listing API,
//! resolve URLs with the hub's headers, a redirect of LFS files to a second
//! listener standing in for the CDN (another origin), Range requests, a log
//! of every request with its headers, and faults to inject.

#![allow(dead_code)] // each test file uses a different part of it

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use o1_hub::{HfToken, PullOptions, PullProgress, RetryPolicy};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Which listener answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Hub,
    Cdn,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub side: Side,
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Lowercased names.
    pub headers: Vec<(String, String)>,
    /// The status answered.
    pub status: u16,
}

impl Logged {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A file of a fake repo.
#[derive(Clone, Debug)]
pub struct FileSpec {
    pub name: String,
    pub content: Vec<u8>,
    /// LFS files are listed with a sha256 and redirected to the CDN.
    pub lfs: bool,
}

impl FileSpec {
    pub fn sha256(&self) -> String {
        sha256_hex(&self.content)
    }

    /// The blob name the hub's headers give: the SHA-256 for LFS files, the
    /// git blob id for the others.
    pub fn etag(&self) -> String {
        if self.lfs {
            self.sha256()
        } else {
            git_blob_id(&self.content)
        }
    }
}

/// A fake repo.
#[derive(Clone, Debug)]
pub struct RepoSpec {
    pub id: String,
    pub commit: String,
    /// Branches and tags resolving to `commit`.
    pub revisions: Vec<String>,
    pub files: Vec<FileSpec>,
    /// When set, every request must carry `Authorization: Bearer {token}`.
    pub token: Option<String>,
}

/// A listing answer that never ends.
#[derive(Clone, Copy, Debug)]
pub enum EndlessListing {
    /// As fast as the client reads, with this `Content-Length` (none if
    /// `None`), up to 64 MiB; then the connection just stays open.
    Flood(Option<u64>),
    /// One byte every 100 ms, for ever.
    Drip,
}

/// Injected misbehaviour; counted ones are used up as they fire.
#[derive(Default)]
struct Faults {
    /// How every listing is answered, instead of the listing.
    endless_listing: Option<EndlessListing>,
    /// Files listed without a size.
    unlisted_size: Vec<String>,
    /// LFS files whose `X-Linked-Size` says this instead (`None`: no header).
    linked_size: HashMap<String, Option<u64>>,
    /// file name → (bytes to send before closing the connection, times).
    drop_after: HashMap<String, (usize, u32)>,
    /// File names served with one byte flipped.
    corrupt: Vec<String>,
    /// Answer 200 with the whole file to Range requests.
    ignore_range: bool,
    /// (substring of the target, status, times).
    fail: Vec<(String, u16, u32)>,
    /// (substring of the target, delay before answering, times).
    stall: Vec<(String, Duration, u32)>,
    /// Delay between 16 KiB chunks of every body.
    chunk_delay: Option<Duration>,
}

#[derive(Default)]
struct State {
    repos: Vec<RepoSpec>,
    /// (old repo id, new repo id): renamed repos, redirected relatively.
    renamed: Vec<(String, String)>,
    faults: Faults,
    log: Vec<Logged>,
}

/// The two listeners and their shared state; stops them when dropped.
pub struct TestHub {
    pub endpoint: String,
    pub cdn: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    addrs: Vec<SocketAddr>,
}

impl TestHub {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let hub = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn = TcpListener::bind("127.0.0.1:0").unwrap();
        let hub_addr = hub.local_addr().unwrap();
        let cdn_addr = cdn.local_addr().unwrap();
        let cdn_base = format!("http://{cdn_addr}");
        for (listener, side) in [(hub, Side::Hub), (cdn, Side::Cdn)] {
            let state = state.clone();
            let stop = stop.clone();
            let cdn_base = cdn_base.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let state = state.clone();
                    let cdn_base = cdn_base.clone();
                    thread::spawn(move || serve(stream, side, &state, &cdn_base));
                }
            });
        }
        TestHub {
            endpoint: format!("http://{hub_addr}"),
            cdn: cdn_base,
            state,
            stop,
            addrs: vec![hub_addr, cdn_addr],
        }
    }

    pub fn add_repo(&self, repo: RepoSpec) {
        self.state.lock().unwrap().repos.push(repo);
    }

    /// Replaces the repo of the same id (a new commit on its branches).
    pub fn replace_repo(&self, repo: RepoSpec) {
        let mut s = self.state.lock().unwrap();
        s.repos.retain(|r| r.id != repo.id);
        s.repos.push(repo);
    }

    /// Answers requests for `old` with a relative redirect to `new`.
    pub fn rename(&self, old: &str, new: &str) {
        let mut s = self.state.lock().unwrap();
        s.renamed.push((old.to_owned(), new.to_owned()));
    }

    /// Closes the connection after `bytes` body bytes, for the next `times`
    /// transfers of `file`.
    pub fn drop_after(&self, file: &str, bytes: usize, times: u32) {
        let mut s = self.state.lock().unwrap();
        s.faults.drop_after.insert(file.to_owned(), (bytes, times));
    }

    /// Serves `file` with wrong content (same size).
    pub fn corrupt(&self, file: &str) {
        self.state
            .lock()
            .unwrap()
            .faults
            .corrupt
            .push(file.to_owned());
    }

    pub fn ignore_range(&self, on: bool) {
        self.state.lock().unwrap().faults.ignore_range = on;
    }

    /// Answers `status` to the next `times` requests whose target contains `pattern`.
    pub fn fail(&self, pattern: &str, status: u16, times: u32) {
        let mut s = self.state.lock().unwrap();
        s.faults.fail.push((pattern.to_owned(), status, times));
    }

    /// Waits `delay` before answering the next `times` requests matching `pattern`.
    pub fn stall(&self, pattern: &str, delay: Duration, times: u32) {
        let mut s = self.state.lock().unwrap();
        s.faults.stall.push((pattern.to_owned(), delay, times));
    }

    /// Answers every listing request with a body that never ends.
    pub fn endless_listing(&self, how: EndlessListing) {
        self.state.lock().unwrap().faults.endless_listing = Some(how);
    }

    /// Lists `file` without a size.
    pub fn unlisted_size(&self, file: &str) {
        let mut s = self.state.lock().unwrap();
        s.faults.unlisted_size.push(file.to_owned());
    }

    /// Announces `size` (or, with `None`, no size) in the `X-Linked-Size` of
    /// the LFS file `file`.
    pub fn linked_size(&self, file: &str, size: Option<u64>) {
        let mut s = self.state.lock().unwrap();
        s.faults.linked_size.insert(file.to_owned(), size);
    }

    /// Slows every body down: `delay` between 16 KiB chunks.
    pub fn chunk_delay(&self, delay: Duration) {
        self.state.lock().unwrap().faults.chunk_delay = Some(delay);
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    /// Requests of `method` on `side` whose target contains `pattern`.
    pub fn count(&self, side: Side, method: &str, pattern: &str) -> usize {
        self.log()
            .iter()
            .filter(|l| l.side == side && l.method == method && l.target.contains(pattern))
            .count()
    }

    /// File downloads: GETs answered with content, by the hub itself
    /// (regular files) or by the CDN (LFS files, after a redirect).
    pub fn downloads(&self) -> usize {
        self.log()
            .iter()
            .filter(|l| l.method == "GET" && matches!(l.status, 200 | 206))
            .filter(|l| l.side == Side::Cdn || l.target.contains("/resolve/"))
            .count()
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for addr in &self.addrs {
            let _ = TcpStream::connect(addr); // wakes the accept loop
        }
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let mut target = parts.next()?.to_owned();
    // A proxy is asked for `http://host/path`: the rest is the same.
    if let Some(rest) = target.strip_prefix("http://") {
        target = rest
            .find('/')
            .map_or("/".to_owned(), |i| rest[i..].to_owned());
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Some(Request {
        method,
        target,
        headers,
    })
}

/// An answer before it is written.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Bytes of `body` to send before dropping the connection.
    cut: Option<usize>,
}

impl Answer {
    fn status(status: u16) -> Self {
        Answer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            cut: None,
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

fn serve(stream: TcpStream, side: Side, state: &Mutex<State>, cdn: &str) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let Some(req) = read_request(&stream) else {
        return;
    };
    let (answer, delay, chunk_delay) = {
        let mut s = state.lock().unwrap();
        let endless = s.faults.endless_listing;
        if let (Some(how), true) = (endless, req.target.starts_with("/api/models/")) {
            s.log.push(Logged {
                side,
                method: req.method.clone(),
                target: req.target.clone(),
                headers: req.headers.clone(),
                status: 200,
            });
            drop(s);
            write_endless(stream, how);
            return;
        }
        s.log.push(Logged {
            side,
            method: req.method.clone(),
            target: req.target.clone(),
            headers: req.headers.clone(),
            status: 0,
        });
        let delay = take_rule(&mut s.faults.stall, &req.target);
        let answer = match take_rule(&mut s.faults.fail, &req.target) {
            Some(status) => Answer::status(status),
            None => route(&mut s, side, &req, cdn),
        };
        s.log.last_mut().unwrap().status = answer.status;
        (answer, delay, s.faults.chunk_delay)
    };
    if let Some(delay) = delay {
        thread::sleep(delay);
    }
    write_answer(stream, &req, answer, chunk_delay);
}

/// A 200 whose body goes on until the client gives up (or a minute passes).
fn write_endless(mut stream: TcpStream, how: EndlessListing) {
    let mut head = "HTTP/1.1 200 X\r\nContent-Type: application/json\r\n".to_owned();
    if let EndlessListing::Flood(Some(len)) = how {
        head.push_str(&format!("Content-Length: {len}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n{\"sha\":\"");
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    while std::time::Instant::now() < until {
        let ok = match how {
            EndlessListing::Flood(_) if sent < 64 << 20 => {
                sent += 64 << 10;
                stream.write_all(&[b'a'; 64 << 10]).is_ok()
            }
            EndlessListing::Flood(_) => {
                thread::sleep(Duration::from_millis(100));
                true
            }
            EndlessListing::Drip => {
                thread::sleep(Duration::from_millis(100));
                stream.write_all(b"a").is_ok()
            }
        };
        if !ok {
            return;
        }
    }
}

/// The value of the first rule matching `target` with uses left, using one.
fn take_rule<T: Copy>(rules: &mut [(String, T, u32)], target: &str) -> Option<T> {
    let rule = rules
        .iter_mut()
        .find(|(pattern, _, times)| *times > 0 && target.contains(pattern.as_str()))?;
    rule.2 -= 1;
    Some(rule.1)
}

fn route(s: &mut State, side: Side, req: &Request, cdn: &str) -> Answer {
    let path = req.target.split('?').next().unwrap_or_default();
    if side == Side::Cdn {
        let sha = path.trim_start_matches("/lfs/");
        let file = s
            .repos
            .iter()
            .flat_map(|r| r.files.iter())
            .find(|f| f.lfs && f.sha256() == sha)
            .cloned();
        return match file {
            Some(file) => file_answer(&mut s.faults, req, &file),
            None => Answer::status(404),
        };
    }
    for (old, new) in &s.renamed {
        for prefix in ["/", "/api/models/"] {
            let from = format!("{prefix}{old}/");
            if req.target.starts_with(&from) {
                let to = req.target.replacen(&from, &format!("{prefix}{new}/"), 1);
                return Answer::status(307).header("Location", to);
            }
        }
    }
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let Some((repo, rev)) = rest.split_once("/revision/") else {
            return Answer::status(404);
        };
        let repo = match find_repo(s, repo, req) {
            Ok(repo) => repo,
            Err(answer) => return answer,
        };
        if !resolves(&repo, &decode(rev)) {
            return Answer::status(404).header("X-Error-Code", "RevisionNotFound");
        }
        let siblings: Vec<serde_json::Value> = repo
            .files
            .iter()
            .map(|f| {
                let mut v = serde_json::json!({"rfilename": f.name, "blobId": f.etag()});
                if f.lfs {
                    // The blob of an LFS file is its pointer.
                    v["blobId"] = git_blob_id(f.sha256().as_bytes()).into();
                    v["lfs"] = serde_json::json!({
                        "sha256": f.sha256(), "size": f.content.len(), "pointerSize": 134
                    });
                }
                if !s.faults.unlisted_size.contains(&f.name) {
                    v["size"] = f.content.len().into();
                    if f.lfs {
                        v["lfs"]["size"] = f.content.len().into();
                    }
                } else if f.lfs {
                    v["lfs"].as_object_mut().unwrap().remove("size");
                }
                v
            })
            .collect();
        let body = serde_json::json!({"id": repo.id, "sha": repo.commit, "siblings": siblings});
        let mut answer = Answer::status(200).header("Content-Type", "application/json");
        answer.body = body.to_string().into_bytes();
        return answer;
    }
    let Some((repo, rest)) = path.trim_start_matches('/').split_once("/resolve/") else {
        return Answer::status(404);
    };
    let repo = match find_repo(s, repo, req) {
        Ok(repo) => repo,
        Err(answer) => return answer,
    };
    let (rev, file) = rest.split_once('/').unwrap_or((rest, ""));
    if !resolves(&repo, &decode(rev)) {
        return Answer::status(404).header("X-Error-Code", "RevisionNotFound");
    }
    let name = decode(file);
    let Some(file) = repo.files.iter().find(|f| f.name == name) else {
        return Answer::status(404).header("X-Error-Code", "EntryNotFound");
    };
    if file.lfs {
        let size = match s.faults.linked_size.get(&file.name) {
            Some(size) => *size,
            None => Some(file.content.len() as u64),
        };
        let mut answer = Answer::status(302)
            .header("Location", format!("{cdn}/lfs/{}", file.sha256()))
            .header("X-Repo-Commit", repo.commit.clone())
            .header("X-Linked-Etag", format!("\"{}\"", file.sha256()))
            .header("ETag", "\"pointer-etag\"");
        if let Some(size) = size {
            answer = answer.header("X-Linked-Size", size.to_string());
        }
        return answer;
    }
    file_answer(&mut s.faults, req, file)
        .header("X-Repo-Commit", repo.commit.clone())
        .header("ETag", format!("W/\"{}\"", file.etag()))
}

fn find_repo(s: &State, id: &str, req: &Request) -> Result<RepoSpec, Answer> {
    let Some(repo) = s.repos.iter().find(|r| r.id == id) else {
        return Err(Answer::status(404).header("X-Error-Code", "RepoNotFound"));
    };
    if let Some(token) = &repo.token {
        if req.header("authorization") != Some(format!("Bearer {token}").as_str()) {
            return Err(Answer::status(401)
                .header("X-Error-Code", "GatedRepo")
                .header("X-Error-Message", "Access to this model is restricted"));
        }
    }
    Ok(repo.clone())
}

fn resolves(repo: &RepoSpec, rev: &str) -> bool {
    rev == repo.commit || repo.revisions.iter().any(|r| r == rev)
}

/// A file's bytes, honouring Range and the faults that concern it.
fn file_answer(faults: &mut Faults, req: &Request, file: &FileSpec) -> Answer {
    let mut content = file.content.clone();
    if faults.corrupt.contains(&file.name) && !content.is_empty() {
        content[0] ^= 0xff;
    }
    let len = content.len();
    let range = req
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<usize>().ok());
    let mut answer = match range {
        Some(start) if !faults.ignore_range => {
            if start >= len {
                return Answer::status(416).header("Content-Range", format!("bytes */{len}"));
            }
            let mut a = Answer::status(206)
                .header("Content-Range", format!("bytes {start}-{}/{len}", len - 1));
            a.body = content[start..].to_vec();
            a
        }
        _ => {
            let mut a = Answer::status(200);
            a.body = content;
            a
        }
    };
    answer = answer.header("Accept-Ranges", "bytes");
    if req.method == "GET" {
        if let Some((bytes, times)) = faults.drop_after.get_mut(&file.name) {
            if *times > 0 {
                *times -= 1;
                answer.cut = Some(*bytes);
            }
        }
    }
    answer
}

fn write_answer(
    mut stream: TcpStream,
    req: &Request,
    answer: Answer,
    chunk_delay: Option<Duration>,
) {
    let mut head = format!("HTTP/1.1 {} X\r\n", answer.status);
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        answer.body.len()
    ));
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    if req.method != "HEAD" {
        let body = match answer.cut {
            Some(cut) => &answer.body[..cut.min(answer.body.len())],
            None => &answer.body[..],
        };
        for chunk in body.chunks(16 * 1024) {
            if let Some(delay) = chunk_delay {
                thread::sleep(delay);
            }
            if stream.write_all(chunk).is_err() {
                return;
            }
        }
    }
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// Git's id of a blob: SHA-1 over `blob {len}\0` and the content.
pub fn git_blob_id(bytes: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()));
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic filler bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

pub const REPO: &str = "test-org/tiny-model";
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
pub const SHARD1: &str = "model-00001-of-00002.safetensors";
pub const SHARD2: &str = "model-00002-of-00002.safetensors";

fn file(name: &str, content: Vec<u8>, lfs: bool) -> FileSpec {
    FileSpec {
        name: name.to_owned(),
        content,
        lfs,
    }
}

/// A sharded checkpoint, plus files a conversion does not need.
pub fn tiny_repo() -> RepoSpec {
    let index = serde_json::json!({
        "metadata": {"total_size": 500_000},
        "weight_map": {"a.weight": SHARD1, "b.weight": SHARD2}
    });
    RepoSpec {
        id: REPO.to_owned(),
        commit: COMMIT.to_owned(),
        revisions: vec!["main".to_owned()],
        files: vec![
            file("README.md", b"# tiny\n".to_vec(), false),
            file("config.json", br#"{"model_type":"qwen2"}"#.to_vec(), false),
            file(
                "generation_config.json",
                br#"{"do_sample":true}"#.to_vec(),
                false,
            ),
            file("tokenizer.json", bytes(20_000, 1), false),
            file(
                "tokenizer_config.json",
                br#"{"eos_token":"x"}"#.to_vec(),
                false,
            ),
            file(
                "model.safetensors.index.json",
                index.to_string().into_bytes(),
                false,
            ),
            file(SHARD1, bytes(300_000, 2), true),
            file(SHARD2, bytes(200_000, 3), true),
            file("onnx/model.safetensors", bytes(1000, 4), true),
        ],
        token: None,
    }
}

/// The files of [`tiny_repo`] a pull fetches.
pub const WANTED: [&str; 7] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "model.safetensors.index.json",
    SHARD1,
    SHARD2,
];

pub fn spec_file<'a>(repo: &'a RepoSpec, name: &str) -> &'a FileSpec {
    repo.files.iter().find(|f| f.name == name).unwrap()
}

/// Options for `hub` with fast retries.
pub fn options(hub: &TestHub, cache: &Path) -> PullOptions {
    let mut o = PullOptions::new(cache);
    o.endpoint = hub.endpoint.clone();
    o.retry = RetryPolicy {
        max_retries: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
    };
    o.connect_timeout = Duration::from_secs(2);
    o.stall_timeout = Duration::from_secs(5);
    o
}

pub fn with_token(mut o: PullOptions, token: &str) -> PullOptions {
    o.token = HfToken::new(token);
    o
}

/// Records progress events.
#[derive(Default, Debug)]
pub struct Recorder {
    pub totals: Option<(usize, u64, u64)>,
    pub started: Vec<(String, u64, u64)>,
    pub advanced: HashMap<String, u64>,
    pub done: Vec<String>,
    pub messages: Vec<String>,
}

impl PullProgress for Recorder {
    fn totals(&mut self, files: usize, total_bytes: u64, cached_bytes: u64) {
        self.totals = Some((files, total_bytes, cached_bytes));
    }
    fn file_started(&mut self, path: &str, total: u64, already: u64) {
        self.started.push((path.to_owned(), total, already));
    }
    fn file_advanced(&mut self, path: &str, bytes: u64) {
        *self.advanced.entry(path.to_owned()).or_default() += bytes;
    }
    fn file_done(&mut self, path: &str) {
        self.done.push(path.to_owned());
    }
    fn message(&mut self, msg: &str) {
        self.messages.push(msg.to_owned());
    }
}

/// Names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

//! Mutation tests of what the hub client reads from the server: the JSON
//! listing, a file's metadata headers, a redirect's `Location` and a
//! `Content-Range`. Every mutant must give `Ok` or an error with a message:
//! no panic, no allocation beyond the bound.

#[global_allocator]
static ALLOC: o1_fuzz::BoundedAlloc = o1_fuzz::BoundedAlloc;

use o1_hub::{parse_content_range, parse_file_head, parse_listing, redirect_location, Url};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION};

const LISTING_URL: &str = "https://huggingface.co/api/models/o/n/revision/main?blobs=true";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn listing_seeds() -> Vec<Vec<u8>> {
    let sha = |c: char| c.to_string().repeat(64);
    let blob = |c: char| c.to_string().repeat(40);
    let sharded = serde_json::json!({
        "_id": "x", "id": "o/n", "sha": COMMIT, "private": false,
        "siblings": [
            {"rfilename": "README.md", "blobId": blob('1'), "size": 7},
            {"rfilename": "config.json", "blobId": blob('2'), "size": 22},
            {"rfilename": "tokenizer.json", "blobId": blob('3'), "size": 20000},
            {"rfilename": "model.safetensors.index.json", "blobId": blob('4'), "size": 100},
            {"rfilename": "model-00001-of-00002.safetensors", "blobId": blob('5'),
             "size": 300000, "lfs": {"sha256": sha('a'), "size": 300000, "pointerSize": 134}},
            {"rfilename": "model-00002-of-00002.safetensors", "blobId": blob('6'),
             "size": 200000, "lfs": {"sha256": sha('b'), "size": 200000, "pointerSize": 134}},
            {"rfilename": "onnx/model.safetensors", "blobId": blob('7'),
             "size": 1000, "lfs": {"sha256": sha('c'), "size": 1000, "pointerSize": 134}}
        ]
    });
    // The plain listing (no `?blobs=true`): names only.
    let names_only = serde_json::json!({
        "sha": COMMIT,
        "siblings": [{"rfilename": "config.json"}, {"rfilename": "model.safetensors"}]
    });
    [sharded, names_only]
        .iter()
        .map(|v| v.to_string().into_bytes())
        .collect()
}

#[test]
fn mutants_hub_listing() {
    let seeds = listing_seeds();
    for seed in &seeds {
        parse_listing("o/n", LISTING_URL, seed).expect("seeds parse");
    }
    o1_fuzz::json("hub listing", &seeds, o1_fuzz::cases(5000), |input| {
        parse_listing("o/n", LISTING_URL, input)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
}

/// A header block as it comes on the wire: a status line, then `Name: value`
/// lines. Lines hyper would refuse are left out, as hyper would refuse them.
fn header_block(input: &[u8]) -> (u16, HeaderMap) {
    let mut lines = input.split(|&b| b == b'\n');
    let status = lines
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut headers = HeaderMap::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    (status, headers)
}

#[test]
fn mutants_hub_file_headers() {
    let lfs = format!(
        "HTTP/1.1 302 Found\r\nLocation: https://cdn-lfs.hf.co/repos/ab/cd/{sha}?X-Amz-Expires=3600&b=2\r\n\
         X-Repo-Commit: {COMMIT}\r\nX-Linked-Etag: \"{sha}\"\r\nX-Linked-Size: 300000\r\n\
         ETag: \"pointer-etag\"\r\nContent-Length: 1345\r\n",
        sha = "a".repeat(64)
    );
    let regular = format!(
        "HTTP/1.1 200 OK\r\nETag: W/\"{}\"\r\nContent-Length: 22\r\nX-Repo-Commit: {COMMIT}\r\n\
         Accept-Ranges: bytes\r\n",
        "b".repeat(40)
    );
    let renamed =
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: /new-org/n/resolve/main/config.json\r\n";
    let seeds: Vec<Vec<u8>> = [lfs, regular, renamed.to_owned()]
        .into_iter()
        .map(String::into_bytes)
        .collect();
    let base = Url::parse("https://huggingface.co/o/n/resolve/main/config.json").unwrap();
    let check = |input: &[u8]| -> Result<(), String> {
        let (status, headers) = header_block(input);
        parse_file_head(base.as_str(), status, &headers).map_err(|e| e.to_string())?;
        let location = headers.get(LOCATION).map(HeaderValue::as_bytes);
        redirect_location(&base, status, location).map_err(|e| e.to_string())?;
        Ok(())
    };
    for seed in &seeds {
        check(seed).expect("seeds parse");
    }
    o1_fuzz::bytes("hub file headers", &seeds, o1_fuzz::cases(5000), check);
}

#[test]
fn mutants_hub_redirect_location() {
    let seeds: Vec<Vec<u8>> = [
        "https://cdn-lfs.hf.co/repos/ab/cd/0123?X-Amz-Signature=ff&response-content-disposition=inline",
        "/new-org/n/resolve/0123456789abcdef0123456789abcdef01234567/model.safetensors",
        "../../other/resolve/main/config.json",
        "http://[::1]:8080/lfs/abc",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let base = Url::parse("https://huggingface.co/o/n/resolve/main/config.json").unwrap();
    let check = |input: &[u8]| -> Result<(), String> {
        redirect_location(&base, 302, Some(input))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    for seed in &seeds {
        check(seed).expect("seeds parse");
    }
    o1_fuzz::bytes("hub redirect Location", &seeds, o1_fuzz::cases(5000), check);
}

#[test]
fn mutants_hub_content_range() {
    let seeds: Vec<Vec<u8>> = [
        "bytes 0-99/100",
        "bytes 120000-299999/300000",
        "bytes 5-9/*",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let check = |input: &[u8]| parse_content_range(input).map(|_| ());
    for seed in &seeds {
        check(seed).expect("seeds parse");
    }
    o1_fuzz::bytes("hub Content-Range", &seeds, o1_fuzz::cases(5000), check);
}

//! `HF_TOKEN` and a plain `http://` endpoint on another machine: the token is
//! withheld (with a warning) unless the user opts in. The other machine is a
//! made-up host reached through the fake hub acting as the HTTP proxy, which
//! is set in the environment: hence one test alone in its own binary.

mod common;

use common::*;
use o1_hub::{pull, HubError};

const SECRET: &str = "hf_secret_for_http";

#[test]
fn a_token_is_withheld_from_a_plain_http_endpoint_on_another_machine_unless_allowed() {
    let hub = TestHub::start();
    hub.add_repo(tiny_repo());
    let mut gated = tiny_repo();
    gated.id = "test-org/gated".to_owned();
    gated.token = Some(SECRET.to_owned());
    hub.add_repo(gated);
    // The only test of this binary: nothing else reads the environment
    // while it is changed.
    std::env::set_var("http_proxy", &hub.endpoint);
    std::env::remove_var("HTTP_PROXY");
    std::env::remove_var("NO_PROXY");
    std::env::set_var("no_proxy", "127.0.0.1");
    let tmp = tempfile::tempdir().unwrap();
    let remote = |cache: &str| {
        let mut o = with_token(options(&hub, &tmp.path().join(cache)), SECRET);
        o.endpoint = "http://hub.example".to_owned();
        o
    };

    // Withheld, with one warning; a public repo still comes down.
    let mut rec = Recorder::default();
    let snap = pull(REPO, "main", &remote("a"), &mut rec).unwrap();
    assert_eq!(snap.downloaded_files, WANTED.len());
    let log = hub.log();
    assert!(log.iter().any(|l| l.header("host") == Some("hub.example")));
    assert!(
        log.iter().all(|l| l.header("authorization").is_none()),
        "{log:?}"
    );
    let warnings: Vec<_> = rec
        .messages
        .iter()
        .filter(|m| m.contains("HF_TOKEN"))
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", rec.messages);
    assert!(warnings[0].contains("http://hub.example"), "{warnings:?}");
    assert!(
        warnings[0].contains("O1_HF_TOKEN_OVER_HTTP"),
        "{warnings:?}"
    );

    // A gated repo then says why the token did not help.
    let err = pull(
        "test-org/gated",
        "main",
        &remote("b"),
        &mut Recorder::default(),
    )
    .unwrap_err();
    assert!(matches!(err, HubError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("O1_HF_TOKEN_OVER_HTTP"), "{err}");
    assert!(!err.to_string().contains(SECRET));

    // Allowed: sent to the endpoint (never to the CDN), no warning.
    hub.clear_log();
    let mut o = remote("c");
    o.token_over_http = true;
    let mut rec = Recorder::default();
    pull("test-org/gated", "main", &o, &mut rec).unwrap();
    let bearer = format!("Bearer {SECRET}");
    for l in hub.log() {
        let expected = (l.side == Side::Hub).then_some(bearer.as_str());
        assert_eq!(l.header("authorization"), expected, "{l:?}");
    }
    assert!(rec.messages.is_empty(), "{:?}", rec.messages);
}

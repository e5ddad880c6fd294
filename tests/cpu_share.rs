//! Sharing the CPU, end to end: beside busy processes that take every core
//! the engine drops to one thread, and when they stop it uses all of its
//! threads again (`o1 bench --timeline`'s figures, second by second).

use std::process::{Child, Command};
use std::time::Duration;

use o1::engine::{Engine, EngineConfig};

mod fixture;

/// A process that keeps one core busy until killed.
fn spinner() -> Child {
    Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap()
}

#[test]
fn the_engine_uses_the_cores_others_leave_free() {
    let mut config = EngineConfig::new(&fixture::tiny().model);
    config.threads = Some(2);
    config.share_cpu = true;
    config.n_ctx = Some(512);
    let engine = Engine::start(config, |_| true).unwrap();
    assert!(
        engine.loaded().shares_cpu,
        "the context's threads can be set"
    );

    let alone = engine.bench_timeline(2).unwrap();
    assert!(alone.iter().all(|s| s.threads == 2), "{alone:?}");

    // As many busy processes as cores: no core is free.
    let cores = std::thread::available_parallelism().unwrap().get();
    let mut busy: Vec<Child> = (0..cores).map(|_| spinner()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let crowded = engine.bench_timeline(4);
    for p in &mut busy {
        let _ = p.kill();
        let _ = p.wait();
    }
    let crowded = crowded.unwrap();
    assert_eq!(crowded.last().map(|s| s.threads), Some(1), "{crowded:?}");

    let after = engine.bench_timeline(4).unwrap();
    assert_eq!(after.last().map(|s| s.threads), Some(2), "{after:?}");
    // One change back, and no flapping.
    let changes = after
        .windows(2)
        .filter(|w| w[0].threads != w[1].threads)
        .count();
    assert!(changes <= 1, "{after:?}");
}

//! Acknowledged means on disk, against a power cut as well as a crash.
//!
//! sled 0.34 ends its flushes with `sync_file_range`, which neither persists the log file's size
//! nor flushes the device's volatile cache: a power cut after it can erase a state that a node
//! has already acknowledged. Every flush must therefore be followed by an `fdatasync` of sled's
//! log before the node answers. This test runs the leader and a follower as real processes under
//! `strace`, serves real checkouts and downloads, and checks in the system-call trace that every
//! `sync_file_range` of a store's log is followed by an `fdatasync` (or `fsync`) of that log that
//! started after it returned. (The power-cut harness, which cuts a node on a file system that
//! drops unsynced writes, is the long-life work; this is the check that the fix is in place.)
//!
//! Negative control, run once by hand: with the `fdatasync` in `store/durable.rs` removed, this
//! test fails at the first flush of each node.

mod common;

use common::procs::{Harness, POOL};
use larder::consortium::verify;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// One traced system call on a store's sled log (`.../meta/db`).
#[derive(Debug, PartialEq, Eq)]
enum LogCall {
    /// `sync_file_range` returned.
    RangeSynced,
    /// `fdatasync` or `fsync` started.
    SyncStarted,
    /// `fdatasync` or `fsync` returned.
    Synced,
}

/// The calls on sled's log in a `strace -f -y` trace, in order: thread, call, trace line.
/// Calls that strace splits (`<unfinished ...>`, then `<... resumed>`) are matched by thread.
fn log_calls(trace: &str) -> Vec<(String, LogCall, String)> {
    let mut open: HashMap<&str, &str> = HashMap::new(); // tid -> unfinished call on the log
    let mut calls = Vec::new();
    for line in trace.lines() {
        let Some((tid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let mut push = |call| calls.push((tid.to_string(), call, line.to_string()));
        if let Some(resumed) = rest.strip_prefix("<... ") {
            let name = resumed.split_whitespace().next().unwrap_or("");
            if open.remove(tid).is_some() && ok(rest) {
                match name {
                    "sync_file_range" => push(LogCall::RangeSynced),
                    "fdatasync" | "fsync" => push(LogCall::Synced),
                    _ => {}
                }
            }
            continue;
        }
        let name = rest.split('(').next().unwrap_or("");
        if !matches!(name, "sync_file_range" | "fdatasync" | "fsync") || !rest.contains("/meta/db>")
        {
            continue;
        }
        let sync = name != "sync_file_range";
        if sync {
            push(LogCall::SyncStarted);
        }
        if rest.ends_with("<unfinished ...>") {
            open.insert(tid, name);
        } else if ok(rest) {
            push(if sync {
                LogCall::Synced
            } else {
                LogCall::RangeSynced
            });
        }
    }
    calls
}

fn ok(line: &str) -> bool {
    line.trim_end().ends_with("= 0")
}

/// The last `sync_file_range` of the log that no sync started after it returned covers.
fn uncovered(calls: &[(String, LogCall, String)]) -> Option<String> {
    let mut pending: Option<(usize, &String)> = None;
    let mut started: HashMap<&str, usize> = HashMap::new(); // tid -> when its sync started
    for (i, (tid, call, line)) in calls.iter().enumerate() {
        match call {
            LogCall::RangeSynced => pending = Some((i, line)),
            LogCall::SyncStarted => {
                started.insert(tid, i);
            }
            LogCall::Synced => {
                let start = started.remove(tid.as_str()).unwrap_or(0);
                if pending.is_some_and(|(at, _)| start > at) {
                    pending = None;
                }
            }
        }
    }
    pending.map(|(_, line)| line.clone())
}

/// The pid of `parent`'s first child (the program a tracer runs).
fn child_of(parent: u32) -> Option<i32> {
    let path = format!("/proc/{parent}/task/{parent}/children");
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn log_parser_sees_an_uncovered_range_sync() {
    let trace = "\
10 sync_file_range(7</s/meta/db>, 0, 512, SYNC_FILE_RANGE_WAIT_BEFORE) = 0
11 fdatasync(7</s/meta/db> <unfinished ...>
10 sync_file_range(7</s/meta/db>, 512, 512, SYNC_FILE_RANGE_WAIT_BEFORE) = 0
11 <... fdatasync resumed>) = 0
";
    // The second range sync finished after the fdatasync had started: not covered.
    assert!(uncovered(&log_calls(trace)).unwrap().contains("512, 512"));
    let covered = format!("{trace}12 fdatasync(7</s/meta/db>) = 0\n");
    assert_eq!(uncovered(&log_calls(&covered)), None);
    assert_eq!(log_calls(&covered).len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_log_flush_is_fdatasynced_at_the_leader_and_a_follower() {
    if std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_err()
    {
        panic!("this test needs strace (Debian package `strace`; .ci/run installs it)");
    }
    let mut h = Harness::new("warn");
    let traced = [0u8, 1];
    for &p in &traced {
        h.sigkill(common::procs::Target::Node(p));
        let trace = h.dir.path().join(format!("node-{p}.strace"));
        h.wrap[p as usize] = ["strace", "-f", "-qq", "-y", "-o"]
            .iter()
            .map(|s| s.to_string())
            .chain([
                trace.display().to_string(),
                "-e".into(),
                "trace=sync_file_range,fdatasync,fsync".into(),
                "--".into(),
            ])
            .collect();
        h.start_node(p, None);
    }
    // (Killing the nodes just started, possibly while they created their stores, is part of
    // the test: a store whose creation was cut short is created again.)
    h.wait_healthy().await;

    // Stage and commit batches (flushes at every party), then check out and download at every
    // party, one step at a time.
    h.start_dealer(20_000, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = h.ended(common::procs::Target::Dealer) {
            break s;
        }
        assert!(Instant::now() < deadline, "the dealer did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "dealer failed: {status}");
    let engines = h.engines();
    for round in 0..4 {
        let id = format!("durable-{round}");
        let mut files = Vec::new();
        for (p, e) in engines.iter().enumerate() {
            e.checkout(&id, POOL.parse().unwrap(), 500).await.unwrap();
            let path = h.dir.path().join(format!("{id}-{p}.shares"));
            std::fs::write(&path, e.download(&id).await.unwrap()).unwrap();
            files.push(path);
        }
        assert_eq!(verify(&files).unwrap().items, 500);
    }

    // End the traced nodes (SIGKILL to `larder` itself, so no clean shutdown syncs anything).
    for &p in &traced {
        let tracer = h.nodes.children[p as usize].as_ref().unwrap().id();
        let node = child_of(tracer).expect("the traced node is running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(node),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let mut tracer = h.nodes.children[p as usize].take().unwrap();
        tracer.wait().unwrap();
    }
    for &p in &traced {
        let trace = std::fs::read_to_string(h.dir.path().join(format!("node-{p}.strace")))
            .expect("strace wrote its trace");
        check_trace(p, &trace, h.dir.path());
    }
}

fn check_trace(p: u8, trace: &str, dir: &Path) {
    let calls = log_calls(trace);
    let ranges = calls
        .iter()
        .filter(|(_, c, _)| *c == LogCall::RangeSynced)
        .count();
    // Staging, committing, reserving and consuming each flushed at this node.
    assert!(
        ranges >= 8,
        "node {p}: only {ranges} log flushes traced; is strace tracing? (trace in {})",
        dir.display()
    );
    if let Some(line) = uncovered(&calls) {
        panic!(
            "node {p}: sled's log was range-synced and never fdatasynced afterwards, so a power \
             cut could erase what the node then acknowledged:\n{line}"
        );
    }
}

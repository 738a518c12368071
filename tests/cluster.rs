//! A real consortium: three party nodes on port 0 with TLS, the dealer over HTTPS, engines
//! checking out and downloading, shares reconstructed across parties.

mod common;

use common::net::{spawn_cluster, Cluster, POOLS};
use larder::client::EngineClient;
use larder::material::PoolSpec;
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_of_every_kind_reconstruct_across_parties() {
    let c = spawn_cluster(600).await;
    for pool in POOLS {
        c.deal(pool, 7000).await;
        // Each party's engine asks for the same checkout; the first allocates.
        let id = format!("job-{pool}");
        let engines: Vec<EngineClient> = (0..3).map(|p| c.engine(p)).collect();
        let views: Vec<_> = futures_util::future::join_all(
            engines
                .iter()
                .map(|e| e.checkout(&id, pool.parse().unwrap(), 6000)),
        )
        .await;
        let ranges = &views[0].as_ref().unwrap().ranges;
        for v in &views {
            assert_eq!(
                &v.as_ref().unwrap().ranges,
                ranges,
                "{pool}: every party sees the same items"
            );
        }
        assert_eq!(c.download_and_verify(&id).await.len(), 6000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checkouts_with_overlapping_ids_never_hand_out_an_item_twice() {
    let c = spawn_cluster(600).await;
    c.deal("triple-z64", 40_000).await;
    let pool: PoolSpec = "triple-z64".parse().unwrap();
    // 50 checkouts, each requested at all three parties at once, in random order.
    let mut calls = Vec::new();
    for k in 0..50 {
        for p in 0..3u8 {
            let e = c.engine(p);
            calls.push(tokio::spawn(async move {
                (k, e.checkout(&format!("c{k}"), pool, 300 + k).await)
            }));
        }
    }
    let mut seen: std::collections::HashMap<u64, Vec<_>> = std::collections::HashMap::new();
    for call in calls {
        let (k, r) = call.await.unwrap();
        seen.entry(k).or_default().push(r.unwrap().ranges);
    }
    for (k, rs) in &seen {
        assert!(
            rs.iter().all(|r| r == &rs[0]),
            "checkout c{k} got different ranges at different parties"
        );
    }
    let mut all = HashSet::new();
    for k in 0..50u64 {
        for item in c.download_and_verify(&format!("c{k}")).await {
            assert!(all.insert(item), "an item was handed out twice");
        }
    }
    assert_eq!(all.len() as u64, (0..50).map(|k| 300 + k).sum::<u64>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_idempotent_and_reuse_of_an_id_is_a_conflict() {
    let c = spawn_cluster(600).await;
    c.deal("triple-z64", 5000).await;
    let pool: PoolSpec = "triple-z64".parse().unwrap();
    let a = c.engine(1).checkout("r", pool, 100).await.unwrap();
    let b = c.engine(1).checkout("r", pool, 100).await.unwrap();
    assert_eq!(a.ranges, b.ranges);
    let err = c.engine(2).checkout("r", pool, 101).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(409), Some("checkout-conflict"))
    );
    c.download_and_verify("r").await;
    // Before the TTL, a downloaded checkout is gone for its party only.
    let posted = c.engine(0).checkout("r", pool, 100).await.unwrap_err();
    assert_eq!(
        (posted.status(), posted.code()),
        (Some(410), Some("already-consumed"))
    );
    let again = c.engine(0).download("r").await.unwrap_err();
    assert_eq!(
        (again.status(), again.code()),
        (Some(410), Some("already-consumed"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_returns_undownloaded_items_and_burns_downloaded_ones() {
    let c = spawn_cluster(1).await;
    c.deal("triple-z64", 1000).await;
    let pool: PoolSpec = "triple-z64".parse().unwrap();
    c.engine(0).checkout("idle", pool, 300).await.unwrap();
    c.engine(0).checkout("half", pool, 600).await.unwrap();
    c.engine(2).download("half").await.unwrap();
    // Downloaded at the leader only: the followers must burn it too.
    c.engine(0)
        .checkout("leader-only", pool, 100)
        .await
        .unwrap();
    c.engine(0).download("leader-only").await.unwrap();
    let stock_at = |p: u8| {
        let e = c.engine(p);
        async move { e.stock().await.unwrap().pools[&pool].clone() }
    };
    // Only the idle reservation goes back to stock, at every party.
    let mut last = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        last = Vec::new();
        for p in 0..3 {
            let s = stock_at(p).await;
            last.push((s.available, s.reserved, s.consumed));
        }
        if last.iter().all(|&(a, r, _)| (a, r) == (300, 0)) {
            break;
        }
    }
    assert_eq!(
        last,
        vec![(300, 0, 700); 3],
        "(available, reserved, consumed) at each party"
    );
    let code = |e: larder::client::ClientError| (e.status(), e.code().map(str::to_string));
    let gone = |c: &str| (Some(410), Some(c.to_string()));
    let late = c.engine(1).download("half").await.unwrap_err();
    assert_eq!(code(late), gone("checkout-burned"), "burned is not served");
    let idle = c.engine(1).download("idle").await.unwrap_err();
    assert_eq!(code(idle), gone("checkout-released"));
    // A late engine posting the checkout again is told at once that it cannot be served,
    // at the leader and at a follower, with the same names the state uses.
    for p in 0..3 {
        let e = c.engine(p);
        let idle = e.checkout("idle", pool, 300).await.unwrap_err();
        assert_eq!(code(idle), gone("checkout-released"), "party {p}");
        let half = e.checkout("half", pool, 600).await.unwrap_err();
        let want = if p == 2 {
            "already-consumed"
        } else {
            "checkout-burned"
        };
        assert_eq!(code(half), gone(want), "party {p}");
        let leader_only = e.checkout("leader-only", pool, 100).await.unwrap_err();
        let want = if p == 0 {
            "already-consumed"
        } else {
            "checkout-burned"
        };
        assert_eq!(code(leader_only), gone(want), "party {p}");
        let seen = e.get_checkout("half").await.unwrap();
        assert_eq!(
            seen.state.name(),
            if p == 2 { "consumed" } else { "burned" }
        );
    }
    // The released items are handed out again, and reconstruct.
    c.engine(0).checkout("later", pool, 300).await.unwrap();
    assert_eq!(c.download_and_verify("later").await.len(), 300);
}

async fn raw(
    c: &Cluster,
    method: reqwest::Method,
    party: usize,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> (u16, serde_json::Value, String) {
    let http = larder::tls::client(&c.ca, std::time::Duration::from_secs(30)).unwrap();
    let mut req = http.request(method, format!("https://{}{path}", c.addrs[party]));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some((ct, b)) = body {
        req = req.header("content-type", ct).body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let json = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, json, ct)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wrong_party_and_wrong_pool_credentials_are_refused() {
    let c = spawn_cluster(600).await;
    let body = || {
        Some((
            "application/json",
            br#"{"id":"x","pool":"triple-z64","count":1}"#.to_vec(),
        ))
    };
    let (s, j, ct) = raw(&c, reqwest::Method::POST, 0, "/v1/checkouts", None, body()).await;
    assert_eq!(
        (s, j["code"].as_str(), ct.as_str()),
        (401, Some("unauthenticated"), "application/problem+json")
    );
    let (s, ..) = raw(
        &c,
        reqwest::Method::POST,
        0,
        "/v1/checkouts",
        Some("le_0000"),
        body(),
    )
    .await;
    assert_eq!(s, 401);
    let other = c.prov.engines[1].token.expose().to_string();
    let (s, j, _) = raw(
        &c,
        reqwest::Method::POST,
        0,
        "/v1/checkouts",
        Some(&other),
        body(),
    )
    .await;
    assert_eq!((s, j["code"].as_str()), (403, Some("wrong-party")));
    let own = c.prov.engines[0].token.expose().to_string();
    let (s, j, _) = raw(
        &c,
        reqwest::Method::POST,
        1,
        "/v1/internal/reservations",
        Some(c.prov.engines[1].token.expose()),
        body(),
    )
    .await;
    assert_eq!(
        (s, j["code"].as_str()),
        (403, Some("nodes-only")),
        "an engine cannot call a node-to-node endpoint"
    );
    let (s, j, _) = raw(
        &c,
        reqwest::Method::PUT,
        0,
        "/v1/internal/batches/00000000000000000000000000000000",
        Some(&own),
        Some(("application/octet-stream", vec![1, 2, 3])),
    )
    .await;
    assert_eq!((s, j["code"].as_str()), (403, Some("dealer-only")));
    let err = c.engine_at(1, 0).stock().await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(403), Some("wrong-party")));
    let err = c
        .engine(0)
        .checkout("np", "triple-z128".parse().unwrap(), 1)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(404), Some("unknown-pool"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_may_use_only_the_pools_it_is_granted() {
    let mut c = spawn_cluster(600).await;
    c.deal("triple-z64", 1000).await;
    c.deal("triple-p128", 1000).await;
    // Restart party 1's node with its engine granted triple-p128 only.
    c.stop(1).await;
    c.cluster.engines[1].pools = vec!["triple-p128".parse().unwrap()];
    c.restart(1).await;
    let err = c
        .engine(1)
        .checkout("g", "triple-z64".parse().unwrap(), 10)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(403), Some("pool-not-granted"))
    );
    // Party 0's engine checks out triple-z64; party 1's engine may not download it either.
    c.engine(0)
        .checkout("g0", "triple-z64".parse().unwrap(), 10)
        .await
        .unwrap();
    let err = c.engine(1).download("g0").await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(403), Some("pool-not-granted"))
    );
    c.engine(1)
        .checkout("g1", "triple-p128".parse().unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(c.download_and_verify("g1").await.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let c = spawn_cluster(600).await;
    c.deal("triple-z64", 1000).await;
    let tok = c.prov.engines[0].token.expose().to_string();
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "unknown pool",
            "application/json",
            br#"{"id":"a","pool":"triple-z128","count":1}"#.to_vec(),
            404,
            "unknown-pool",
        ),
        (
            "zero count",
            "application/json",
            br#"{"id":"a","pool":"triple-z64","count":0}"#.to_vec(),
            400,
            "bad-request",
        ),
        (
            "absurd count",
            "application/json",
            br#"{"id":"a","pool":"triple-z64","count":18446744073709551615}"#.to_vec(),
            400,
            "bad-request",
        ),
        (
            "malformed JSON",
            "application/json",
            b"{\"id\":".to_vec(),
            400,
            "bad-request",
        ),
        (
            "unknown field",
            "application/json",
            br#"{"id":"a","pool":"triple-z64","count":1,"x":1}"#.to_vec(),
            400,
            "bad-request",
        ),
        (
            "bad pool id",
            "application/json",
            br#"{"id":"a","pool":"cake","count":1}"#.to_vec(),
            400,
            "bad-request",
        ),
        (
            "empty id",
            "application/json",
            br#"{"id":"","pool":"triple-z64","count":1}"#.to_vec(),
            400,
            "bad-request",
        ),
        (
            "wrong media type",
            "text/plain",
            br#"{"id":"a","pool":"triple-z64","count":1}"#.to_vec(),
            415,
            "unsupported-media-type",
        ),
        (
            "a media type that only starts like JSON",
            "application/jsonx",
            br#"{"id":"a","pool":"triple-z64","count":1}"#.to_vec(),
            415,
            "unsupported-media-type",
        ),
        (
            "an id of 257 characters",
            "application/json",
            format!(
                r#"{{"id":"{}","pool":"triple-z64","count":1}}"#,
                "é".repeat(257)
            )
            .into_bytes(),
            400,
            "bad-request",
        ),
        (
            "a control character in the id",
            "application/json",
            br#"{"id":"a\u0007b","pool":"triple-z64","count":1}"#.to_vec(),
            400,
            "bad-request",
        ),
        // Just over the 64 KiB limit, so the client finishes sending before the node answers.
        (
            "oversized body",
            "application/json",
            vec![b' '; 80_000],
            413,
            "body-too-large",
        ),
    ];
    for (what, ct, body, status, code) in cases {
        let (s, j, rct) = raw(
            &c,
            reqwest::Method::POST,
            0,
            "/v1/checkouts",
            Some(&tok),
            Some((ct, body)),
        )
        .await;
        assert_eq!((s, j["code"].as_str()), (status, Some(code)), "{what}: {j}");
        assert_eq!(rct, "application/problem+json", "{what}");
        assert!(
            !j["detail"].as_str().unwrap_or("").is_empty(),
            "{what}: a detail says what was wrong"
        );
    }
    let (s, j, _) = raw(&c, reqwest::Method::GET, 0, "/v1/nothing", Some(&tok), None).await;
    assert_eq!((s, j["code"].as_str()), (404, Some("not-found")));
    let s = c.engine(0).stock().await.unwrap();
    assert_eq!(
        s.pools[&"triple-z64".parse().unwrap()].available,
        1000,
        "nothing was reserved"
    );

    // Accepted: media types and the auth scheme in any case (RFC 9110), parameters after the
    // media type, and an id of 256 two-byte characters (the limit counts characters, as the
    // OpenAPI's maxLength does).
    let http = larder::tls::client(&c.ca, std::time::Duration::from_secs(30)).unwrap();
    for (letter, ct, scheme) in [
        ("é", "APPLICATION/JSON", "bearer"),
        ("è", "application/json; charset=utf-8", "BEARER"),
    ] {
        let id = letter.repeat(256);
        let body = format!(r#"{{"id":"{id}","pool":"triple-z64","count":1}}"#);
        let r = http
            .post(format!("https://{}/v1/checkouts", c.addrs[0]))
            .header("content-type", ct)
            .header("authorization", format!("{scheme} {tok}"))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert_eq!(status, 200, "{ct} / {scheme}: {}", r.text().await.unwrap());
        // The id survives the share stream's header (512 bytes of UTF-8).
        let bytes = c.engine(0).download(&id).await.unwrap();
        let stream = larder::material::ShareReader::new(&bytes[..]).unwrap();
        assert_eq!(stream.header.checkout, id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_is_down_fails_the_checkout_cleanly_and_nothing_is_served_twice_after_it_returns(
) {
    let mut c = spawn_cluster(600).await;
    c.deal("triple-z64", 3000).await;
    let pool: PoolSpec = "triple-z64".parse().unwrap();
    c.stop(2).await;
    let err = c.engine(0).checkout("during", pool, 500).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(503), Some("party-unavailable")),
        "{err}"
    );
    // The leader's reservation is unconfirmed, so no party serves it.
    let early = c.engine(1).download("during").await.unwrap_err();
    assert!(matches!(early.status(), Some(404) | Some(409)), "{early}");
    c.restart(2).await;
    let view = c.engine(2).checkout("during", pool, 500).await.unwrap();
    assert!(view.confirmed);
    let first = c.download_and_verify("during").await;
    c.engine(1).checkout("after", pool, 2500).await.unwrap();
    let second = c.download_and_verify("after").await;
    let all: HashSet<_> = first.iter().chain(&second).collect();
    assert_eq!(all.len(), 3000, "no item twice");
    let under = c.engine(0).checkout("more", pool, 1).await.unwrap_err();
    assert_eq!(
        (under.status(), under.code()),
        (Some(503), Some("underrun"))
    );
}

#[test]
fn the_readme_run_command_starts_a_consortium_and_verifies_a_sample_checkout() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_larder"))
        .args([
            "demo",
            "--once",
            "--items",
            "20000",
            "--crypten-elements",
            "1000",
            "--dir",
        ])
        .arg(&demo)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("reconstructed across parties"), "{stdout}");
    assert!(
        stdout.contains("--token-file") && stdout.contains("curl -sf --cacert"),
        "prints what an engine needs"
    );
    // Secrets are in owner-only files, never printed.
    let token = std::fs::read_to_string(demo.join("engines/engine-0.token")).unwrap();
    assert!(!stdout.contains(token.trim()));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(demo.join("party-0/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "private keys are readable by their owner only"
    );
    for p in 0..3 {
        let sample = demo.join(format!("demo-sample-party{p}.shares"));
        let mode = std::fs::metadata(&sample).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{} holds shares", sample.display());
    }
    // Running it again replaces the previous demo.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_larder"))
        .args([
            "demo",
            "--once",
            "--items",
            "1000",
            "--crypten-elements",
            "0",
            "--dir",
        ])
        .arg(&demo)
        .output()
        .unwrap();
    assert!(again.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_matches_the_repo_and_every_documented_route_exists() {
    let c = spawn_cluster(600).await;
    let repo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap();
    assert!(
        repo == larder::node::openapi::document_text(),
        "openapi.json is stale: regenerate it with `larder openapi > openapi.json`"
    );
    let http = larder::tls::client(&c.ca, std::time::Duration::from_secs(30)).unwrap();
    let served = http
        .get(format!("https://{}/openapi.json", c.addrs[0]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served, repo);
    let doc: serde_json::Value = serde_json::from_str(&repo).unwrap();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{batch}", "00000000000000000000000000000000")
            .replace("{id}", "nothing");
        for method in ops.as_object().unwrap().keys() {
            let m: reqwest::Method = method.to_uppercase().parse().unwrap();
            let resp = http
                .request(m, format!("https://{}{concrete}", c.addrs[0]))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            assert!(
                status != 405 && body["code"] != "not-found",
                "{method} {path} is documented but not routed ({status} {body})"
            );
            let documented = ops[method]["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(&status.to_string()),
                "{method} {path} answered {status}, which is not documented"
            );
        }
    }
}

/// Who calls, in the authorization matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    Nobody,
    Bogus,
    OwnEngine,
    OtherPartysEngine,
    LeaderNode,
    FollowerNode,
    Dealer,
    Operator,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_every_endpoint_every_caller() {
    use larder::node::config::NodeConfig;
    let c = spawn_cluster(600).await;
    let doc: serde_json::Value =
        serde_json::from_str(&larder::node::openapi::document_text()).unwrap();
    let node_token = |p: usize| {
        NodeConfig::load(&c.prov.nodes[p])
            .unwrap()
            .node_token
            .expose()
            .to_string()
    };
    let callers = [
        Caller::Nobody,
        Caller::Bogus,
        Caller::OwnEngine,
        Caller::OtherPartysEngine,
        Caller::LeaderNode,
        Caller::FollowerNode,
        Caller::Dealer,
        Caller::Operator,
    ];
    let mut checked = 0;
    let mut undocumented = Vec::new();
    // At the leader (party 0) and at a follower (party 1).
    for target in [0usize, 1] {
        for (path, ops) in doc["paths"].as_object().unwrap() {
            let concrete = path
                .replace("{batch}", "0123456789abcdef0123456789abcdef")
                .replace("{id}", "authz-probe");
            for (method, op) in ops.as_object().unwrap() {
                let schemes: Vec<&str> = op["security"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|s| s.as_object().unwrap().keys().map(String::as_str))
                    .collect();
                // Leader-to-follower endpoints; aborts at the leader come from any node.
                let leader_only = op["responses"]["403"]["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("the leader"))
                    && !(op["operationId"] == "abortBatch" && target == 0);
                for caller in callers {
                    let token = match caller {
                        Caller::Nobody => None,
                        Caller::Bogus => Some("le_bogus".to_string()),
                        Caller::OwnEngine => {
                            Some(c.prov.engines[target].token.expose().to_string())
                        }
                        Caller::OtherPartysEngine => {
                            Some(c.prov.engines[(target + 1) % 3].token.expose().to_string())
                        }
                        Caller::LeaderNode => Some(node_token(0)),
                        // Another follower's node: party 2 (never the target).
                        Caller::FollowerNode => Some(node_token(2)),
                        Caller::Dealer => Some(c.prov.dealer_token.expose().to_string()),
                        Caller::Operator => Some(c.prov.operator_token.expose().to_string()),
                    };
                    let m: reqwest::Method = method.to_uppercase().parse().unwrap();
                    let (status, body, ct) =
                        raw(&c, m, target, &concrete, token.as_deref(), None).await;
                    let what =
                        format!("{caller:?} {method} {path} at party {target}: {status} {body}");
                    // A node's own token is no credential at itself (it never calls itself).
                    let own_node = caller == Caller::LeaderNode && target == 0;
                    let allowed = schemes.is_empty()
                        || !own_node
                            && match caller {
                                Caller::Nobody | Caller::Bogus | Caller::OtherPartysEngine => false,
                                Caller::OwnEngine => schemes.contains(&"engineToken"),
                                Caller::LeaderNode => schemes.contains(&"nodeToken"),
                                Caller::FollowerNode => {
                                    schemes.contains(&"nodeToken") && !leader_only
                                }
                                Caller::Dealer => schemes.contains(&"dealerToken"),
                                Caller::Operator => schemes.contains(&"operatorToken"),
                            };
                    if allowed {
                        assert!(status != 401 && status != 403, "refused: {what}");
                    } else if schemes.is_empty() {
                        unreachable!()
                    } else if own_node || matches!(caller, Caller::Nobody | Caller::Bogus) {
                        assert_eq!(status, 401, "{what}");
                        assert_eq!(body["code"], "unauthenticated", "{what}");
                    } else {
                        assert_eq!(status, 403, "{what}");
                    }
                    if status >= 400 {
                        assert_eq!(ct, "application/problem+json", "{what}");
                        assert!(
                            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
                            "{what}"
                        );
                    }
                    if op["responses"].get(status.to_string()).is_none() {
                        undocumented.push(what);
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "statuses not in the OpenAPI document:\n{}",
        undocumented.join("\n")
    );
    assert!(checked >= 2 * 16 * 7, "{checked} calls checked");
}

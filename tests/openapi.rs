//! Schema drift: the OpenAPI document's schemas against the types that really go over the
//! wire. Every field a type serializes is a property of its schema and every property of the
//! schema is a field of the type (so neither can grow alone); every required property is always
//! sent; every value of a state enum is listed, and nothing else. (tests/cluster.rs checks the
//! served document equals the repo's and that every documented route exists; schemathesis in
//! CI checks live answers against these schemas.)

use larder::material::{BatchId, ShareRange};
use larder::wire::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn doc() -> Value {
    serde_json::from_str(&larder::node::openapi::document_text()).unwrap()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// Checks `value`'s serialized fields against schema `name`.
fn same_fields(doc: &Value, name: &str, value: impl serde::Serialize) {
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name}");
    let sent = serde_json::to_value(value).unwrap();
    let props = keys(&schema["properties"]);
    assert_eq!(keys(&sent), props, "{name}: fields sent vs documented");
    for r in schema["required"].as_array().into_iter().flatten() {
        assert!(
            sent.get(r.as_str().unwrap()).is_some(),
            "{name}: required {r} not sent"
        );
    }
}

/// Checks that an enum's values are exactly those the schema at `path` lists.
fn same_values<T: serde::Serialize>(doc: &Value, path: &[&str], values: &[T]) {
    let mut schema = doc;
    for p in path {
        schema = &schema[*p];
    }
    let listed: BTreeSet<String> = schema["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{path:?} has no enum"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let sent: BTreeSet<String> = values
        .iter()
        .map(|v| {
            serde_json::to_value(v)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(sent, listed, "{path:?}");
}

fn forecast() -> PoolForecast {
    PoolForecast {
        available: 1,
        in_jobs: 2,
        per_second: 0.5,
        generated_per_second: 0.25,
        hours_left: Some(1.0),
        runs_out_at: Some(9),
        target: Some(3),
        refill_below: Some(2),
        floor: Some(1),
        decision: Some("d".into()),
    }
}

#[test]
fn every_schema_has_exactly_the_fields_of_its_type() {
    let doc = doc();
    let pool = "triple-z64".parse().unwrap();
    let batch = BatchId([1; 16]);
    let range = ShareRange {
        batch,
        first: 0,
        count: 3,
    };
    let reservation = Reservation {
        checkout: "c".into(),
        pool,
        count: 3,
        ranges: vec![range],
        state: ReservationState::Reserved,
        reserved_at: 1,
        consumer: Some("e".into()),
        consumed_at: Some(2),
        confirmed: true,
        settled: false,
    };
    let problem = Problem {
        kind: "urn:larder:problem:underrun".into(),
        title: "t".into(),
        status: 503,
        detail: "d".into(),
        code: "underrun".into(),
        available: Some(1),
        retry_after_seconds: Some(20),
    };
    let lease = Lease {
        batch,
        items: 3,
        correction: 0,
        worker: "w".into(),
        until: 9,
    };
    let piece = Piece {
        job: 1,
        pool,
        batch,
        items: 3,
        correction: 0,
        until: 9,
        generator: "prss".into(),
        epoch: Some(2),
    };
    same_fields(&doc, "ShareRange", range);
    same_fields(&doc, "Reservation", &reservation);
    same_fields(
        &doc,
        "CheckoutView",
        CheckoutView::new(&reservation, 0, 600),
    );
    same_fields(
        &doc,
        "CheckoutRequest",
        CheckoutRequest {
            id: "c".into(),
            pool,
            count: 3,
        },
    );
    let stock = PoolStock {
        by_generator: [("dealer".to_string(), 1)].into(),
        by_assumption: [("trusted-dealer".to_string(), 1)].into(),
        ..PoolStock::default()
    };
    same_fields(&doc, "PoolStock", &stock);
    same_fields(
        &doc,
        "StockView",
        StockView {
            party: 0,
            pools: [(pool, PoolStock::default())].into(),
            forecast: [(pool, forecast())].into(),
        },
    );
    same_fields(
        &doc,
        "HealthView",
        HealthView {
            consortium: "x".into(),
            party: 0,
            parties: 3,
            name: "a".into(),
            leader: true,
            version: "v".into(),
        },
    );
    same_fields(
        &doc,
        "BatchStateView",
        BatchStateView {
            batch,
            state: BatchState::Staged,
        },
    );
    same_fields(
        &doc,
        "ApplyRequest",
        ApplyRequest {
            reservations: vec![reservation.clone()],
        },
    );
    same_fields(
        &doc,
        "ApplyResult",
        ApplyResult {
            checkout: "c".into(),
            problem: Some(problem.clone()),
        },
    );
    same_fields(
        &doc,
        "ConfirmRequest",
        ConfirmRequest {
            checkouts: vec!["c".into()],
        },
    );
    same_fields(&doc, "Problem", &problem);
    same_fields(
        &doc,
        "JobRequest",
        JobRequest {
            pool,
            count: 3,
            generator: "dealer".into(),
        },
    );
    same_fields(&doc, "Lease", &lease);
    same_fields(
        &doc,
        "Job",
        Job {
            id: 1,
            pool,
            count: 3,
            generator: "dealer".into(),
            state: JobState::Running,
            made: 0,
            leases: vec![lease],
            revoked: vec![batch],
            created_at: 1,
            started_at: Some(2),
            finished_at: Some(3),
            error: Some("e".into()),
            origin: JobOrigin::Window,
        },
    );
    same_fields(&doc, "PoolForecast", forecast());
    let site = SiteWindows {
        party: 1,
        zone: "Europe/London".into(),
        windows: vec!["01:00-06:00 Europe/London".into()],
        known: true,
    };
    same_fields(&doc, "SiteWindows", &site);
    let windows = WindowsView {
        open: false,
        changes_at: Some(5),
        overlap: vec![Stretch { start: 5, end: 6 }],
        sites: vec![site],
    };
    same_fields(&doc, "Stretch", Stretch { start: 5, end: 6 });
    same_fields(&doc, "WindowsView", &windows);
    same_fields(
        &doc,
        "ForecastView",
        ForecastView {
            now: 1,
            windows,
            pools: [(pool, forecast())].into(),
            jobs: [("done".to_string(), 1)].into(),
        },
    );
    same_fields(
        &doc,
        "ReadyView",
        ReadyView {
            ready: false,
            store_open: true,
            waiting_for: vec!["site-b".into()],
        },
    );
    let report = RetireReport {
        batches: 1,
        reservations: 2,
        items: 3,
    };
    same_fields(&doc, "RetireReport", report);
    same_fields(
        &doc,
        "RetiredEpoch",
        RetiredEpoch {
            epoch: 1,
            by_party: vec![report],
        },
    );
    same_fields(
        &doc,
        "PrssStatus",
        PrssStatus {
            parties: 3,
            threshold: 1,
            keys_per_party: 2,
            current_epoch: Some(2),
            retired_epochs: vec![1],
            key_epochs: vec![2],
            assumption: larder::material::Assumption::HonestMajority,
        },
    );
    same_fields(
        &doc,
        "PrssEpoch",
        PrssEpoch {
            epoch: 2,
            parties: 3,
            threshold: 1,
            key_sets: 3,
        },
    );
    same_fields(
        &doc,
        "KeySetup",
        KeySetup {
            session: "s".into(),
        },
    );
    same_fields(&doc, "PieceRequest", PieceRequest { worker: "w".into() });
    same_fields(&doc, "Piece", &piece);
    same_fields(
        &doc,
        "NextPiece",
        NextPiece {
            piece: Some(piece),
            live_jobs: 1,
        },
    );
}

#[test]
fn every_state_is_listed_and_nothing_else() {
    let doc = doc();
    fn s(name: &'static str) -> Vec<&'static str> {
        vec!["components", "schemas", name]
    }
    same_values(
        &doc,
        &s("ReservationState"),
        &[
            ReservationState::Reserved,
            ReservationState::Consumed,
            ReservationState::Released,
            ReservationState::Burned,
        ],
    );
    same_values(
        &doc,
        &s("BatchState"),
        &[
            BatchState::Staged,
            BatchState::Available,
            BatchState::Exhausted,
        ],
    );
    same_values(
        &doc,
        &s("JobState"),
        &[
            JobState::Queued,
            JobState::Running,
            JobState::Done,
            JobState::Failed,
            JobState::Cancelled,
        ],
    );
    same_values(
        &doc,
        &s("JobOrigin"),
        &[JobOrigin::Operator, JobOrigin::Window, JobOrigin::Floor],
    );
    same_values(
        &doc,
        &s("ExpireOutcome"),
        &[
            ExpireOutcome::Released,
            ExpireOutcome::Consumed,
            ExpireOutcome::Burned,
            ExpireOutcome::Unknown,
        ],
    );
    same_values(&doc, &s("Assumption"), &larder::material::Assumption::ALL);
    same_values(&doc, &s("Generator"), &larder::material::Maker::ALL);
    let codes: Vec<Value> = Code::ALL.iter().map(|c| json!(c.as_str())).collect();
    same_values(&doc, &s("Code"), &codes);
}

/// Every `$ref` in `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            m.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves_and_every_error_answer_is_a_problem() {
    let doc = doc();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 50, "{} references", all.len());
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} does not resolve"
        );
    }
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            for (status, answer) in op["responses"].as_object().unwrap() {
                if status.as_str() >= "400" {
                    assert_eq!(
                        answer["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

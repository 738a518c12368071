//! The OpenAPI 3.1 document of the node API, served at `/openapi.json` and kept in the repo as
//! `openapi.json` (a test fails when they differ, and when a documented route is missing from
//! the router).

use serde_json::{json, Value};

fn problem_responses(codes: &[(&str, &str)]) -> Value {
    let mut m = serde_json::Map::new();
    for (status, what) in codes {
        m.insert(
            (*status).to_string(),
            json!({"description": what, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}),
        );
    }
    Value::Object(m)
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn id_param(name: &str, what: &str) -> Value {
    let schema = if name == "batch" {
        json!({"type": "string", "pattern": "^[0-9a-f]{32}$"})
    } else {
        checkout_id_schema()
    };
    json!({"name": name, "in": "path", "required": true, "description": what, "schema": schema})
}

/// A checkout id: 1 to 256 characters (as the store counts them), no control characters.
fn checkout_id_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": crate::material::shares::MAX_CHECKOUT_ID,
        "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"})
}

fn job_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "description": "job id", "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"}})
}

/// The document.
pub fn document() -> Value {
    let auth_errors = [
        ("401", "missing or unknown token"),
        ("403", "wrong party, pool not granted, or wrong role"),
    ];
    let engine_sec = json!([{"engineToken": []}]);
    let node_sec = json!([{"nodeToken": []}]);
    let dealer_sec = json!([{"dealerToken": []}]);
    let operator_sec = json!([{"operatorToken": []}]);
    let ok_json = |schema: &str, what: &str| json!({"200": {"description": what, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}});
    let no_content = |what: &str| json!({"204": {"description": what}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Larder party node",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Offline-phase material for MPC engines: each party's engine checks out items under an id shared by all parties and downloads its own shares once. Errors are application/problem+json with a stable `code`."
        },
        "paths": {
            "/v1/health": {"get": {"summary": "Who this node is", "operationId": "health", "security": [], "responses": ok_json("Health", "this node")}},
            "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "security": [], "responses": {"200": {"description": "OpenAPI document", "content": {"application/json": {}}}}}},
            "/v1/stock": {"get": {"summary": "Stock per pool at this party", "operationId": "stock", "security": [{"engineToken": []}, {"nodeToken": []}, {"dealerToken": []}, {"operatorToken": []}],
                "responses": merge(ok_json("Stock", "stock"), problem_responses(&auth_errors))}},
            "/v1/checkouts": {"post": {
                "summary": "Reserve items under a checkout id (the same at every party)", "operationId": "createCheckout", "security": engine_sec,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CheckoutRequest"}}}},
                "responses": merge(ok_json("Checkout", "the reservation, identical at every party"), problem_responses(&[
                    ("400", "bad input"), ("401", "missing or unknown token"), ("403", "wrong party or pool not granted"), ("404", "unknown pool"),
                    ("409", "the id is used with other parameters"),
                    ("410", "this checkout can no longer be served at this party: `already-consumed` (downloaded here), `checkout-released` (expired before any download; items back in stock) or `checkout-burned` (expired after another party downloaded it); use a new id"),
                    ("413", "body too large"), ("415", "not application/json"),
                    ("503", "underrun (with `available` and Retry-After) or a party unreachable")]))}},
            "/v1/checkouts/{id}": {"get": {
                "summary": "A checkout as this party sees it", "operationId": "getCheckout", "security": engine_sec, "parameters": [id_param("id", "checkout id")],
                "responses": merge(ok_json("Checkout", "the reservation"), problem_responses(&[("401", "missing or unknown token"), ("403", "wrong party or pool not granted"), ("404", "unknown checkout")]))}},
            "/v1/checkouts/{id}/shares": {"get": {
                "summary": "Download this party's shares, once", "operationId": "downloadShares", "security": engine_sec, "parameters": [id_param("id", "checkout id")],
                "responses": merge(json!({"200": {"description": "the share stream (versioned header, records, CRC-32 trailer; see src/material/shares.rs)", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}),
                    problem_responses(&[("401", "missing or unknown token"), ("403", "wrong party or pool not granted"), ("404", "unknown checkout"), ("409", "not confirmed yet"), ("410", "`already-consumed` (downloaded here), `checkout-released` or `checkout-burned` (expired)")]))}},
            "/v1/internal/batches/{batch}": {
                "put": {"summary": "Stage this party's share of a batch (dealer)", "operationId": "stageBatch", "security": dealer_sec, "parameters": [id_param("batch", "batch id, 32 hex digits")],
                    "requestBody": {"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                    "responses": merge(json!({"201": {"description": "staged durably", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchState"}}}}}), problem_responses(&[("400", "invalid batch file"), ("401", "missing or unknown token"), ("403", "not the dealer"), ("409", "another batch under this id"), ("413", "too large")]))},
                "get": {"summary": "A batch's state here (nodes and the dealer)", "operationId": "batchState", "security": [{"nodeToken": []}, {"dealerToken": []}], "parameters": [id_param("batch", "batch id")],
                    "responses": merge(ok_json("BatchState", "state"), problem_responses(&[("400", "bad batch id"), ("401", "missing or unknown token"), ("403", "not a node or the dealer"), ("404", "unknown batch")]))},
                "delete": {"summary": "Abort a staged batch (the dealer anywhere; at the leader a follower node; at a follower the leader)", "operationId": "abortBatch", "security": [{"dealerToken": []}, {"nodeToken": []}], "parameters": [id_param("batch", "batch id")],
                    "responses": merge(no_content("aborted"), problem_responses(&[("400", "bad batch id"), ("401", "missing or unknown token"), ("403", "not the dealer, nor (at a follower) the leader"), ("409", "already available")]))}},
            "/v1/internal/batches/{batch}/commit": {"post": {"summary": "Commit a batch staged everywhere (dealer, at the leader)", "operationId": "commitBatch", "security": dealer_sec, "parameters": [id_param("batch", "batch id")],
                "responses": merge(ok_json("BatchState", "available"), problem_responses(&[("400", "bad batch id"), ("401", "missing or unknown token"), ("403", "not the dealer"), ("404", "unknown batch"), ("409", "not staged everywhere"), ("421", "not the leader"), ("503", "a party unreachable")]))}},
            "/v1/internal/batches/{batch}/activate": {"post": {"summary": "Make a committed batch available (leader to follower)", "operationId": "activateBatch", "security": node_sec, "parameters": [id_param("batch", "batch id")],
                "responses": merge(no_content("available"), problem_responses(&[("400", "bad batch id"), ("401", "missing or unknown token"), ("403", "not the leader"), ("404", "unknown batch")]))}},
            "/v1/internal/checkouts": {"post": {"summary": "A follower forwards a checkout to the leader", "operationId": "leaderCheckout", "security": node_sec,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CheckoutRequest"}}}},
                "responses": merge(ok_json("Reservation", "the confirmed reservation"), problem_responses(&[("400", "bad input"), ("401", "missing or unknown token"), ("403", "not a node"), ("409", "conflict"), ("413", "body too large"), ("415", "not application/json"), ("421", "not the leader"), ("503", "underrun or a party unreachable")]))}},
            "/v1/internal/reservations": {"post": {"summary": "Hold a group of the leader's reservations durably (leader to follower)", "operationId": "applyReservations", "security": node_sec,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApplyRequest"}}}},
                "responses": merge(json!({"200": {"description": "one result per reservation, in order; those without a problem are held durably", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/ApplyResult"}}}}}}),
                    problem_responses(&[("400", "bad input"), ("401", "missing or unknown token"), ("403", "not the leader"), ("413", "body too large"), ("415", "not application/json")]))}},
            "/v1/internal/reservations/{id}": {
                "get": {"summary": "A reservation's state here", "operationId": "reservationState", "security": node_sec, "parameters": [id_param("id", "checkout id")],
                    "responses": merge(ok_json("Reservation", "the reservation"), problem_responses(&[("401", "missing or unknown token"), ("403", "not a node"), ("404", "unknown checkout")]))}},
            "/v1/internal/confirmations": {"post": {"summary": "Every party holds these checkouts (leader to follower)", "operationId": "confirmReservations", "security": node_sec,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ConfirmRequest"}}}},
                "responses": merge(no_content("recorded (checkouts unknown or released here are skipped)"), problem_responses(&[("400", "bad input"), ("401", "missing or unknown token"), ("403", "not the leader"), ("413", "body too large"), ("415", "not application/json")]))}},
            "/v1/internal/reservations/{id}/expire": {"post": {"summary": "Release unless downloaded here (leader to follower)", "operationId": "expireReservation", "security": node_sec, "parameters": [id_param("id", "checkout id")],
                "responses": merge(json!({"200": {"description": "what this party did", "content": {"application/json": {"schema": {"type": "string", "enum": ["released", "consumed", "burned", "unknown"]}}}}}), problem_responses(&[("401", "missing or unknown token"), ("403", "not the leader")]))}},
            "/v1/jobs": {
                "post": {"summary": "Queue a generation job (operators, at the leader)", "operationId": "createJob", "security": operator_sec,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}}}},
                    "responses": merge(json!({"201": {"description": "queued durably", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}}),
                        problem_responses(&[("400", "bad input: count, unknown generator"), ("401", "missing or unknown token"), ("403", "not an operator"), ("404", "unknown pool"), ("413", "body too large"), ("415", "not application/json"), ("421", "not the leader")]))},
                "get": {"summary": "Every generation job, oldest first (operators, at the leader)", "operationId": "listJobs", "security": operator_sec,
                    "responses": merge(json!({"200": {"description": "the jobs", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}}}}}),
                        problem_responses(&[("401", "missing or unknown token"), ("403", "not an operator"), ("421", "not the leader")]))}},
            "/v1/jobs/{id}": {
                "get": {"summary": "One generation job", "operationId": "getJob", "security": operator_sec, "parameters": [job_param()],
                    "responses": merge(ok_json("Job", "the job"), problem_responses(&[("400", "not a job id"), ("401", "missing or unknown token"), ("403", "not an operator"), ("404", "unknown job"), ("421", "not the leader")]))},
                "delete": {"summary": "Cancel a job: no more pieces; what it committed stays", "operationId": "cancelJob", "security": operator_sec, "parameters": [job_param()],
                    "responses": merge(ok_json("Job", "the cancelled job"), problem_responses(&[("400", "not a job id"), ("401", "missing or unknown token"), ("403", "not an operator"), ("404", "unknown job"), ("409", "the job is over (`job-over`)"), ("421", "not the leader")]))}},
            "/v1/internal/jobs/next": {"post": {"summary": "A dealer worker takes the next piece of a job (at the leader)", "operationId": "nextPiece", "security": dealer_sec,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PieceRequest"}}}},
                "responses": merge(ok_json("NextPiece", "a piece leased to this worker, or none for now"), problem_responses(&[("400", "bad input"), ("401", "missing or unknown token"), ("403", "not the dealer"), ("413", "body too large"), ("415", "not application/json"), ("421", "not the leader")]))}},
            "/v1/internal/pieces": {"post": {"summary": "Make and stage this party's share of a piece of a job the parties make themselves (leader to every node)", "operationId": "makePiece", "security": node_sec,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Piece"}}}},
                "responses": merge(json!({"201": {"description": "this party's share staged durably", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchState"}}}}}),
                    problem_responses(&[("400", "bad input: pool, items or generator"), ("401", "missing or unknown token"), ("403", "not the leader"), ("404", "unknown pool"), ("409", "another batch under this id"), ("413", "body too large"), ("415", "not application/json"), ("503", "the generator failed: a party stopped or a message did not come")]))}},
            "/v1/internal/messages/{session}/{seq}": {"put": {"summary": "A message from another node for this node's generator (generators without a dealer)", "operationId": "sendMessage", "security": node_sec,
                "parameters": [{"name": "session", "in": "path", "required": true, "description": "the batch the message is about", "schema": {"type": "string", "minLength": 1, "maxLength": 64}},
                    {"name": "seq", "in": "path", "required": true, "description": "the message's number from this sender in this session, from 0", "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"}}],
                "requestBody": {"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": merge(no_content("kept until the generator takes it"), problem_responses(&[("400", "bad message number or session"), ("401", "missing or unknown token"), ("403", "not a node"), ("413", "too large"), ("503", "the mailbox is full")]))}},
            "/v1/internal/reservations/{id}/burn": {"post": {"summary": "Consume without serving (leader to follower)", "operationId": "burnReservation", "security": node_sec, "parameters": [id_param("id", "checkout id")],
                "responses": merge(no_content("burned"), problem_responses(&[("401", "missing or unknown token"), ("403", "not the leader")]))}}
        },
        "components": {
            "securitySchemes": {
                "engineToken": {"type": "http", "scheme": "bearer", "description": "an engine's token: one party, a set of pools"},
                "nodeToken": {"type": "http", "scheme": "bearer", "description": "another party node's token"},
                "dealerToken": {"type": "http", "scheme": "bearer", "description": "the dealer's token (also its workers')"},
                "operatorToken": {"type": "http", "scheme": "bearer", "description": "the consortium operators' token: generation jobs"}
            },
            "schemas": {
                "Pool": {"type": "string", "description": "kind-domain[-tT][-oO], e.g. triple-z64, double-p128-t1, input-mask-p61-o0", "examples": ["triple-z64"]},
                "CheckoutRequest": {"type": "object", "additionalProperties": false, "required": ["id", "pool", "count"], "properties": {
                    "id": merge(checkout_id_schema(), json!({"description": "chosen by the engines; the same at every party"})),
                    "pool": {"$ref": "#/components/schemas/Pool"},
                    "count": {"type": "integer", "minimum": 1, "format": "uint64"}}},
                "Range": {"type": "object", "required": ["batch", "first", "count"], "properties": {
                    "batch": {"type": "string", "pattern": "^[0-9a-f]{32}$"}, "first": {"type": "integer", "minimum": 0}, "count": {"type": "integer", "minimum": 1}}},
                "ReservationState": {"type": "string", "enum": ["reserved", "consumed", "released", "burned"]},
                "Checkout": {"type": "object", "required": ["id", "pool", "count", "ranges", "state", "confirmed", "reserved_at", "expires_at", "party"], "properties": {
                    "id": {"type": "string"}, "pool": {"$ref": "#/components/schemas/Pool"}, "count": {"type": "integer"},
                    "ranges": {"type": "array", "items": {"$ref": "#/components/schemas/Range"}},
                    "state": {"$ref": "#/components/schemas/ReservationState"}, "confirmed": {"type": "boolean"},
                    "reserved_at": {"type": "integer", "description": "Unix seconds"}, "expires_at": {"type": "integer", "description": "Unix seconds"}, "party": {"type": "integer"}}},
                "Reservation": {"type": "object", "required": ["checkout", "pool", "count", "ranges", "state", "reserved_at"], "properties": {
                    "checkout": {"type": "string"}, "pool": {"$ref": "#/components/schemas/Pool"}, "count": {"type": "integer"},
                    "ranges": {"type": "array", "items": {"$ref": "#/components/schemas/Range"}}, "state": {"$ref": "#/components/schemas/ReservationState"},
                    "reserved_at": {"type": "integer"}, "consumer": {"type": ["string", "null"]}, "consumed_at": {"type": ["integer", "null"]},
                    "confirmed": {"type": "boolean"}, "settled": {"type": "boolean"}}},
                "ApplyRequest": {"type": "object", "additionalProperties": false, "required": ["reservations"], "properties": {
                    "reservations": {"type": "array", "items": {"$ref": "#/components/schemas/Reservation"}}}},
                "ApplyResult": {"type": "object", "required": ["checkout"], "properties": {
                    "checkout": {"type": "string"}, "problem": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Problem"}], "description": "why it is not held; null when held durably"}}},
                "ConfirmRequest": {"type": "object", "additionalProperties": false, "required": ["checkouts"], "properties": {
                    "checkouts": {"type": "array", "items": checkout_id_schema()}}},
                "PoolStock": {"type": "object", "properties": {"available": {"type": "integer"}, "staged": {"type": "integer"}, "reserved": {"type": "integer"}, "consumed": {"type": "integer"}, "batches": {"type": "integer"}}},
                "Stock": {"type": "object", "required": ["party", "pools"], "properties": {"party": {"type": "integer"}, "pools": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/PoolStock"}}}},
                "Health": {"type": "object", "required": ["consortium", "party", "parties", "name", "leader", "version"], "properties": {
                    "consortium": {"type": "string"}, "party": {"type": "integer"}, "parties": {"type": "integer", "description": "parties in the consortium"}, "name": {"type": "string"}, "leader": {"type": "boolean"}, "version": {"type": "string"}}},
                "BatchState": {"type": "object", "required": ["batch", "state"], "properties": {"batch": {"type": "string"}, "state": {"type": "string", "enum": ["staged", "available", "exhausted"]}}},
                "JobRequest": {"type": "object", "additionalProperties": false, "required": ["pool", "count"], "properties": {
                    "pool": {"$ref": "#/components/schemas/Pool"},
                    "count": {"type": "integer", "minimum": 1, "maximum": super::jobs::MAX_JOB_ITEMS, "format": "uint64"},
                    "generator": {"type": "string", "enum": ["dealer", "parties"], "default": "dealer", "description": "dealer: made by dealer workers; parties: made by the nodes themselves, no dealer (input masks)"}}},
                "Lease": {"type": "object", "required": ["batch", "items", "correction", "worker", "until"], "properties": {
                    "batch": {"type": "string", "pattern": "^[0-9a-f]{32}$"}, "items": {"type": "integer"}, "correction": {"type": "integer"},
                    "worker": {"type": "string"}, "until": {"type": "integer", "description": "Unix seconds; then the leader takes the piece back"}}},
                "Job": {"type": "object", "required": ["id", "pool", "count", "generator", "state", "made", "leases", "revoked", "created_at"], "properties": {
                    "id": {"type": "integer"}, "pool": {"$ref": "#/components/schemas/Pool"}, "count": {"type": "integer"}, "generator": {"type": "string"},
                    "state": {"type": "string", "enum": ["queued", "running", "done", "failed", "cancelled"]},
                    "made": {"type": "integer", "description": "items committed at every party"},
                    "leases": {"type": "array", "items": {"$ref": "#/components/schemas/Lease"}, "description": "pieces being made"},
                    "revoked": {"type": "array", "items": {"type": "string"}, "description": "batches of pieces taken back; never committed"},
                    "created_at": {"type": "integer"}, "started_at": {"type": ["integer", "null"]}, "finished_at": {"type": ["integer", "null"]},
                    "error": {"type": ["string", "null"]}}},
                "PieceRequest": {"type": "object", "additionalProperties": false, "required": ["worker"], "properties": {"worker": {"type": "string"}}},
                "Piece": {"type": "object", "required": ["job", "pool", "batch", "items", "correction", "until"], "properties": {
                    "job": {"type": "integer"}, "pool": {"$ref": "#/components/schemas/Pool"}, "batch": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                    "items": {"type": "integer"}, "correction": {"type": "integer"}, "until": {"type": "integer"},
                    "generator": {"type": "string", "enum": ["dealer", "parties"], "default": "dealer"}}},
                "NextPiece": {"type": "object", "required": ["piece", "live_jobs"], "properties": {
                    "piece": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Piece"}]}, "live_jobs": {"type": "integer"}}},
                "Problem": {"type": "object", "required": ["type", "title", "status", "detail", "code"], "properties": {
                    "type": {"type": "string", "description": "urn:larder:problem:<code>"}, "title": {"type": "string"}, "status": {"type": "integer"},
                    "detail": {"type": "string", "description": "what was wrong, in words"},
                    "code": {"type": "string", "description": "stable machine-readable code", "enum": crate::wire::Code::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>()},
                    "available": {"type": "integer", "description": "for underrun: items available"}}}
            }
        }
    })
}

/// The document as served and as kept in the repo: pretty JSON with a final newline.
pub fn document_text() -> String {
    let mut s = serde_json::to_string_pretty(&document()).expect("a JSON value serializes");
    s.push('\n');
    s
}

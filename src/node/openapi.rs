//! The OpenAPI 3.1 document of the node API, derived with utoipa: every operation from the
//! `#[utoipa::path]` on its handler, every schema from the type that goes over the wire
//! (`wire`). Served at `/openapi.json` and kept in the repo as `openapi.json` (a test fails
//! when they differ, or when a documented route is missing from the router; `tests/openapi.rs`
//! checks each schema against what its type really sends).
//!
//! Rules applied here once rather than at every handler: every error answer (4xx, 5xx) is an
//! `application/problem+json` [`Problem`]; every write may answer 507 (a full disk) and every
//! request with a body 408 (it did not arrive in time); the bearer-token schemes.

use super::{api, audit, channel, internal, jobs, prss, schedule};
use crate::material::BatchId;
use crate::wire::schema::{Binary, CheckoutId, JobId};
use crate::wire::Problem;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{path::Operation, Content, OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Larder party node",
        description = "Offline-phase material for MPC engines: each party's engine checks out items under an id shared by all parties and downloads its own shares once. Errors are application/problem+json with a stable `code`."
    ),
    paths(
        api::health,
        api::ready,
        api::openapi,
        api::stock,
        api::create_checkout,
        api::get_checkout,
        api::download,
        internal::stage,
        internal::batch_state,
        internal::abort_batch,
        internal::commit,
        internal::activate,
        internal::leader_checkout,
        internal::apply,
        internal::reservation_state,
        internal::confirm,
        internal::expire,
        internal::burn,
        jobs::create,
        jobs::list,
        jobs::get,
        jobs::cancel,
        jobs::next_piece,
        jobs::make_piece,
        prss::status,
        prss::rotate,
        prss::retire,
        prss::internal_setup,
        prss::internal_retire,
        prss::internal_current,
        channel::receive,
        channel::abort,
        audit::read,
        schedule::get_forecast,
        schedule::windows,
    ),
    // Path parameters' and raw bodies' schemas, which utoipa does not collect by itself.
    components(schemas(Problem, CheckoutId, BatchId, JobId, Binary)),
    modifiers(&Rules)
)]
struct ApiDoc;

/// The rules every operation follows.
struct Rules;

impl Modify for Rules {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, what) in [
            (
                "engineToken",
                "an engine's token: one party, a set of pools",
            ),
            ("nodeToken", "another party node's token"),
            ("dealerToken", "the dealer's token (also its workers')"),
            (
                "operatorToken",
                "the consortium operators' token: generation jobs",
            ),
            (
                "auditorToken",
                "the consortium auditors' token: the audit trail, nothing else",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(what))
                        .build(),
                ),
            );
        }
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.put, &mut item.post, &mut item.delete]
                .into_iter()
                .flatten()
            {
                // Every write may meet a full disk here or at another party.
                add_answer(
                    op,
                    "507",
                    "a party's disk is full (`insufficient-storage`): free space there",
                );
                if op.request_body.is_some() {
                    add_answer(op, "408", "the body did not arrive in time");
                }
            }
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                problem_bodies(op);
            }
        }
    }
}

/// Documents answer `status` of `op` unless it is already.
fn add_answer(op: &mut Operation, status: &str, what: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| RefOr::T(utoipa::openapi::Response::new(what)));
}

/// Every error answer of `op` carries a [`Problem`].
fn problem_bodies(op: &mut Operation) {
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if status.as_str() >= "400" && response.content.is_empty() {
            response.content.insert(
                "application/problem+json".into(),
                RefOr::T(Content::new(Some(Ref::from_schema_name("Problem")))),
            );
        }
    }
}

/// The document as served and as kept in the repo: pretty JSON with a final newline.
pub fn document_text() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serializes");
    s.push('\n');
    s
}

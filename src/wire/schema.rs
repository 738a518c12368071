//! Schemas of the values whose JSON form is written by hand (their serde impls are custom), and
//! of the path parameters and raw bodies the API takes. Every other schema in the OpenAPI
//! document is derived from its type (`#[derive(ToSchema)]` beside the type).

use crate::material::shares::MAX_CHECKOUT_ID;
use crate::material::{BatchId, PoolSpec};
use serde_json::{json, Value};
use std::borrow::Cow;
use utoipa::openapi::{schema::Schema, RefOr};
use utoipa::{PartialSchema, ToSchema};

fn schema(v: Value) -> RefOr<Schema> {
    RefOr::T(serde_json::from_value(v).expect("a valid schema"))
}

/// Control characters a checkout id may not hold (C0, DEL and C1), as a JSON Schema pattern.
pub const NO_CONTROL: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

macro_rules! named_schema {
    ($ty:ty, $name:literal, $json:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                schema($json)
            }
        }
        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

named_schema!(
    PoolSpec,
    "Pool",
    json!({"type": "string", "description": "kind-domain[-tT][-oO][-shape], e.g. triple-z64, double-p128-t1, input-mask-p61-o0, matrix-triple-z64-128x256x64, conv-triple-z64-1x3x32x32-16x3x3-s1x1-p1x1", "examples": ["triple-z64"]})
);
named_schema!(
    BatchId,
    "BatchId",
    json!({"type": "string", "description": "a batch id: 32 lower-case hex digits", "pattern": "^[0-9a-f]{32}$"})
);

/// A checkout id as engines choose it: 1 to 256 characters (as the store counts them), no
/// control characters.
pub struct CheckoutId;
named_schema!(
    CheckoutId,
    "CheckoutId",
    json!({"type": "string", "minLength": 1, "maxLength": MAX_CHECKOUT_ID, "pattern": NO_CONTROL,
        "description": "chosen by the engines; the same at every party"})
);

/// A generation job's id in a path.
pub struct JobId;
named_schema!(
    JobId,
    "JobId",
    json!({"type": "string", "pattern": "^[0-9]{1,19}$"})
);

/// Which generator makes a job's items.
pub struct GeneratorName;
named_schema!(
    GeneratorName,
    "Generator",
    json!({"type": "string", "enum": ["dealer", "parties", "he", "prss"], "default": "dealer",
        "description": "dealer: made by dealer workers (trusted dealer); the nodes themselves, no dealer: parties (input masks), he (homomorphic encryption; both secure against n - 1 colluding parties), prss (pseudo-random secret sharing; secure only while no t + 1 parties collude)"})
);

/// A raw body: a batch file, a share stream, a generator's message.
pub struct Binary;
named_schema!(
    Binary,
    "Binary",
    json!({"type": "string", "format": "binary"})
);

/// The stable problem codes, for the `code` field of [`super::Problem`].
pub struct CodeName;
impl PartialSchema for CodeName {
    fn schema() -> RefOr<Schema> {
        let all: Vec<&str> = super::Code::ALL.iter().map(|c| c.as_str()).collect();
        schema(
            json!({"type": "string", "description": "stable machine-readable code", "enum": all}),
        )
    }
}
impl ToSchema for CodeName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Code")
    }
}

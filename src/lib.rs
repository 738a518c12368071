//! Larder: the offline phase of secure multi-party computation as a service.
//!
//! Larder mass-produces correlated randomness (Beaver triples, squares, bits, inverses, input
//! masks, Shamir double sharings), keeps each party's shares in that party's own on-disk store,
//! and hands them to online engines exactly once.
//!
//! # Layout
//! (`docs/architecture.md` has the data flow and which way the arrows point.)
//! - [`math`]: rings and prime fields (Z_2^64, Z_2^128, GF(p)); pure arithmetic, no IO.
//! - [`sharing`]: additive and Shamir sharing and opening.
//! - [`material`]: kinds, pools, the per-party batch file and share stream encodings.
//! - [`generate`]: the seams [`generate::Generator`] (a dealer) and [`generate::PartyGenerator`]
//!   (each party makes its own share over a [`generate::Channel`]), the trusted dealer and the
//!   parties' own input masks.
//! - [`store`]: one party's store: sled metadata, bulk batch files, the lifecycle
//!   staged -> available -> reserved -> consumed, audit log, migrations; a file per concept.
//! - [`cluster`]: the consortium protocol (commit, checkout, expiry, settling staged batches),
//!   written once against a party that is either a store on this machine or a remote node.
//! - [`consortium`]: a consortium whose party stores sit on this machine; deal, take, verify.
//! - [`node`]: the party node (HTTPS API, authentication, connection limits, the sweep), and
//!   `node::launch`, which starts a whole consortium on this machine for the tools and tests.
//! - [`config`]: the consortium and node files, layered with `LARDER__` environment overrides.
//! - [`wire`]: the API's request and response bodies; [`client`]: the engines' client.
//! - [`interop`]: material in the files existing engines read (MP-SPDZ), a pure format.
//! - [`secret_file`]: share files written whole or not at all; [`tls`]: TLS and the consortium
//!   CA; [`auth`]: tokens; [`failpoint`]: crash points for the crash harness.
//!
//! The command's tools (`larder bench`, the soak, `larder demo`) live with the binary, in
//! `src/cli/`, not in the library.
//!
//! Dependencies point one way: math <- sharing <- material <- generate; material <- wire <-
//! store <- cluster <- consortium, node; wire <- client. The pure layers never touch disk.
//!
//! # Security model
//! Semi-honest parties; in dealer mode the dealer is trusted not to collude with any party.
//! A party's store holds only that party's shares: per-chunk seeds and, at the batch's
//! correction party, the explicit values that cannot be random. Seeds and shares are zeroized
//! when dropped and never appear in `Debug` output or logs.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod client;
pub mod cluster;
pub mod config;
pub mod consortium;
pub mod failpoint;
pub mod generate;
pub mod interop;
pub mod material;
pub mod math;
pub mod node;
pub mod schedule;
pub mod secret_file;
pub mod sharing;
pub mod store;
pub mod tls;
pub mod wire;

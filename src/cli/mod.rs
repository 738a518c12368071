//! The `larder` command's tools that are not library: the benchmarks, the soak and the demo.
//! They drive the library as a user would (real stores, real nodes, real HTTPS).

pub mod bench;
pub mod demo;
pub mod soak;

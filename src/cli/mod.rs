//! The `larder` command's parts that are not library: the commands, the benchmarks, the soak
//! and the demo.
//! They drive the library as a user would (real stores, real nodes, real HTTPS).

pub mod audit;
pub mod bench;
pub mod bench_he;
pub mod bench_prss;
pub mod commands;
pub mod demo;
pub mod mp_spdz;
pub mod plan;
pub mod soak;
pub mod worker;

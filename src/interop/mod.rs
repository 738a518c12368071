//! Material in the formats existing online engines read, so they run on Larder's stock without
//! changes to them.
//!
//! - [`mp_spdz`]: MP-SPDZ's preprocessing files for its semi-honest additive protocols
//!   (`semi-party.x`, `hemi-party.x` over prime fields, `semi2k-party.x` over Z_2^64), as
//!   regular files (its `-F` mode) or per-thread named pipes (its `-f` mode).
//! - [`requirements`]: what MP-SPDZ's compiler says a program needs (`larder plan`).
//!
//! Python engines (CrypTen, MPyC, research code) use the client in `clients/python`, which reads
//! Larder's own share stream.

pub mod mp_spdz;
pub mod requirements;

//! Input masks made by the parties themselves, with no dealer: the first [`PartyGenerator`].
//!
//! Every party draws its own share of each mask from its own chunk seeds, and sends its shares
//! to the mask's owner, who adds them up: the owner's record holds its own share (seeded) and
//! the mask in the clear (explicit); every other party's record is its seeded share alone.
//! The owner learns the mask, as it must to mask its input; every other party learns nothing
//! but its own share. Semi-honest, any number of parties; one message per non-owner and batch
//! (items x element bytes).

use super::{BatchPlan, Channel, GenerateError, PartyBatch, PartyGenerator};
use crate::material::batch::HEADER_BYTES;
use crate::material::{BatchHeader, Kind, Maker, PoolSpec, CHUNK_ITEMS};
use crate::math::Ring;
use crate::with_ring;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use zeroize::Zeroizing;

/// Input masks without a dealer, a [`PartyGenerator`].
pub struct OwnMasks {
    master: ChaCha20Rng,
}

impl std::fmt::Debug for OwnMasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnMasks(..)")
    }
}

impl OwnMasks {
    /// Seeded from the operating system.
    pub fn from_os_rng() -> Self {
        OwnMasks {
            master: ChaCha20Rng::from_os_rng(),
        }
    }

    /// Reproducible, for tests only.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        OwnMasks {
            master: ChaCha20Rng::from_seed(seed),
        }
    }
}

impl PartyGenerator for OwnMasks {
    fn name(&self) -> &'static str {
        "parties"
    }

    fn supports(&self, pool: &PoolSpec) -> bool {
        pool.kind == Kind::InputMask
    }

    fn generate_share(
        &mut self,
        plan: &BatchPlan,
        channel: &mut dyn Channel,
    ) -> Result<PartyBatch, GenerateError> {
        plan.pool.validate(plan.parties)?;
        let owner = match (plan.pool.kind, plan.pool.owner) {
            (Kind::InputMask, Some(o)) => o,
            _ => {
                return Err(GenerateError::Plan(format!(
                    "the parties' own generator makes input masks only, not {}",
                    plan.pool
                )))
            }
        };
        let me = channel.me();
        let (header, seeds) = super::party_share_start(plan, me, Maker::Parties, &mut self.master)?;
        let mut file = Zeroizing::new(Vec::with_capacity(header.file_len() as usize));
        file.extend_from_slice(&header.encode());
        let ring = plan.pool.domain.ring();
        with_ring!(ring, r => {
            let eb = r.elem_bytes();
            // This party's share of every mask, drawn from its chunk seeds in item order: the
            // same elements its store redraws when it expands a chunk.
            let mut shares = Zeroizing::new(vec![0u8; plan.items as usize * eb]);
            let mut drawn = vec![r.zero(); CHUNK_ITEMS as usize];
            for (c, seed) in seeds.iter().enumerate() {
                let len = header.chunk_len(c as u64) as usize;
                r.sample_into(&mut seed.rng(), &mut drawn[..len]);
                let at = c * CHUNK_ITEMS as usize * eb;
                for (i, e) in drawn[..len].iter().enumerate() {
                    r.encode(*e, &mut shares[at + i * eb..at + (i + 1) * eb]);
                }
            }
            drawn.iter_mut().for_each(|e| *e = r.zero());
            if me != owner {
                channel.send(owner, shares)?;
                channel.flush()?;
                for seed in &seeds {
                    BatchHeader::encode_chunk(&seed.0, &[], &mut file);
                }
            } else {
                // The masks: this party's shares plus every other party's.
                let mut masks = shares;
                for p in (0..plan.parties).filter(|&p| p != me) {
                    let theirs = channel.recv(p)?;
                    if theirs.len() != masks.len() {
                        return Err(GenerateError::Channel {
                            party: p,
                            what: format!("{} bytes of shares, expected {}", theirs.len(), masks.len()),
                        });
                    }
                    for (mine, other) in masks.chunks_exact_mut(eb).zip(theirs.chunks_exact(eb)) {
                        let (Some(a), Some(b)) = (r.decode(mine), r.decode(other)) else {
                            return Err(GenerateError::Channel {
                                party: p,
                                what: "a share that is not an element of the field".into(),
                            });
                        };
                        r.encode(r.add(a, b), mine);
                    }
                }
                for (c, seed) in seeds.iter().enumerate() {
                    let at = c * CHUNK_ITEMS as usize * eb;
                    let len = header.chunk_len(c as u64) as usize;
                    BatchHeader::encode_chunk(&seed.0, &masks[at..at + len * eb], &mut file);
                }
            }
        });
        debug_assert_eq!(file.len() as u64, header.file_len());
        debug_assert!(file.len() >= HEADER_BYTES);
        Ok(PartyBatch {
            header,
            bytes: file,
        })
    }
}

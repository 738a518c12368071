//! Checkouts: allocate at the leader, hold at every follower, confirm; and their expiry.

use super::{Leader, Party, ProtocolError, Refusal, Result};
use crate::store::{Reservation, ReservationState, StoreError};
use crate::wire::{CheckoutRequest, ExpireOutcome};
use futures_util::future::join_all;

/// The leader's side of a checkout: allocate (or find) the reservation, make sure every
/// follower holds it, confirm it, then tell the followers. Idempotent: a retry after a failure
/// replicates again. Also says whether this call confirmed it (false for a repeat of a
/// checkout confirmed before, such as another party's engine asking under the same id).
///
/// # Errors
/// The leader's refusals (underrun, conflict, ...); a follower that cannot be reached, in which
/// case the reservation stays unconfirmed (and unservable) until a retry succeeds or it
/// expires.
pub async fn checkout<L: Leader, F: Party>(
    leader: &L,
    followers: &[F],
    req: CheckoutRequest,
) -> Result<(Reservation, bool)> {
    let res = leader.allocate(req).await?;
    if res.state != ReservationState::Reserved || res.confirmed {
        return Ok((res, false));
    }
    crate::failpoint::hit("checkout.allocated");
    for r in join_all(followers.iter().map(|f| f.hold(res.clone()))).await {
        r?;
    }
    crate::failpoint::hit("checkout.replicated");
    let res = leader.confirm(res.checkout.clone()).await?;
    let told = join_all(
        followers
            .iter()
            .map(|f| f.confirmed(vec![res.checkout.clone()])),
    )
    .await;
    for (f, r) in followers.iter().zip(told) {
        if let Err(e) = r {
            tracing::debug!(party = %f.at(), error = %e, "confirmation not recorded; the party asks the leader before serving");
        }
    }
    crate::failpoint::hit("checkout.confirmed");
    Ok((res, true))
}

/// A follower makes sure a reservation is confirmed before serving it: it asks the leader and
/// records the confirmation `here` if so.
///
/// # Errors
/// `not-confirmed` if the leader has not confirmed it (or released it).
pub async fn confirmed_at_leader<L: Party, P: Party>(leader: &L, here: &P, id: &str) -> Result<()> {
    match leader.reservation(id.to_string()).await? {
        Some(r) if r.confirmed && r.state != ReservationState::Released => {
            here.confirmed(vec![id.to_string()]).await
        }
        _ => Err(ProtocolError::Refused {
            at: leader.at().clone(),
            step: "confirming",
            refusal: Refusal::Store(Box::new(StoreError::Unconfirmed(id.to_string()))),
        }),
    }
}

/// How [`expire`] ended a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    /// Downloaded nowhere: its items went back to stock at every party.
    Released,
    /// Downloaded somewhere: destroyed unused at every party that had not downloaded it.
    Burned,
}

/// The leader expires one reservation. First it asks every follower whether it was downloaded
/// there; if any was, the reservation is burned everywhere. Otherwise every follower releases
/// it (unless downloaded in the meantime, in which case the rest burn it), then the leader.
///
/// A reservation made before `archived_before` may have left a follower's hot metadata
/// (`archive_after_seconds`: only once final there, which a leader long gone cannot tell): a
/// follower that no longer knows it counts as one that downloaded it, so it is burned, never
/// released into stock that party has consumed.
///
/// # Errors
/// A party that cannot be reached: nothing is decided that a later try cannot finish.
pub async fn expire<L: Leader, F: Party>(
    leader: &L,
    followers: &[F],
    res: &Reservation,
    archived_before: u64,
) -> Result<Expired> {
    let id = &res.checkout;
    let states = join_all(followers.iter().map(|f| f.reservation(id.clone()))).await;
    let may_be_archived = res.reserved_at < archived_before;
    // Downloaded at the leader itself: burn at the followers that did not download.
    let mut downloaded = res.state == ReservationState::Consumed;
    for s in states {
        downloaded |= match s?.map(|r| r.state) {
            Some(ReservationState::Consumed | ReservationState::Burned) => true,
            None => may_be_archived,
            _ => false,
        };
    }
    crate::failpoint::hit("expire.decided");
    if !downloaded {
        for o in join_all(followers.iter().map(|f| f.expire(id.clone()))).await {
            downloaded |= match o? {
                ExpireOutcome::Consumed | ExpireOutcome::Burned => true,
                ExpireOutcome::Unknown => may_be_archived,
                _ => false,
            };
        }
    }
    if downloaded {
        for f in followers {
            f.burn(id.clone()).await?;
        }
    }
    crate::failpoint::hit("expire.settling");
    if downloaded {
        leader.burn(id.clone()).await?;
    } else {
        leader.expire(id.clone()).await?;
    }
    leader.settle(id.clone()).await?;
    Ok(if downloaded {
        Expired::Burned
    } else {
        Expired::Released
    })
}

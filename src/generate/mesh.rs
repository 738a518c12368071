//! A [`Channel`] between parties on one machine: threads joined by in-memory queues (the CLI's
//! local mode). Every pair of parties has one queue each way, so messages keep their order.

use super::{Channel, GenerateError};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;
use zeroize::Zeroizing;

type Message = Zeroizing<Vec<u8>>;

/// Longest wait for another party's message.
const RECV_TIMEOUT: Duration = Duration::from_secs(600);

/// One party's end of a [`mesh`].
pub struct MeshEnd {
    me: u8,
    to: Vec<Option<Sender<Message>>>,
    from: Vec<Option<Receiver<Message>>>,
}

impl std::fmt::Debug for MeshEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshEnd").field("me", &self.me).finish()
    }
}

/// Channels between `parties` parties: the i-th end is party i's.
pub fn mesh(parties: u8) -> Vec<MeshEnd> {
    let n = parties as usize;
    let mut ends: Vec<MeshEnd> = (0..parties)
        .map(|me| MeshEnd {
            me,
            to: (0..n).map(|_| None).collect(),
            from: (0..n).map(|_| None).collect(),
        })
        .collect();
    for a in 0..n {
        for b in 0..n {
            if a != b {
                let (tx, rx) = channel();
                ends[a].to[b] = Some(tx);
                ends[b].from[a] = Some(rx);
            }
        }
    }
    ends
}

impl Channel for MeshEnd {
    fn me(&self) -> u8 {
        self.me
    }

    fn send(&mut self, to: u8, message: Message) -> Result<(), GenerateError> {
        let gone = |what: &str| GenerateError::Channel {
            party: to,
            what: what.into(),
        };
        self.to
            .get(to as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| gone("no such party"))?
            .send(message)
            .map_err(|_| gone("it has stopped"))
    }

    fn recv(&mut self, from: u8) -> Result<Message, GenerateError> {
        let gone = |what: &str| GenerateError::Channel {
            party: from,
            what: what.into(),
        };
        self.from
            .get(from as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| gone("no such party"))?
            .recv_timeout(RECV_TIMEOUT)
            .map_err(|_| gone("it stopped before sending"))
    }
}

//! Peer authentication: who may send Raft messages to this core (DESIGN.md, "Durability and
//! recovery": peers authenticate each other with a shared cluster secret).
//!
//! On every connection the listening side sends a challenge (a fresh random nonce); the
//! connecting side answers with a hello naming the cluster, itself, its target server and
//! core, a nonce of its own and an HMAC-SHA256 over all of it and the challenge under the
//! cluster secret. Only then are Raft messages read, and each must come from the server the
//! hello authenticated and be addressed to this one.
//!
//! # Invariants
//! - Without the secret nobody can produce a valid hello; a recorded hello is useless on a
//!   new connection (its challenge differs).
//! - A message whose `from` or `to` does not match its connection is dropped: an
//!   authenticated peer cannot speak for another (issue 10: three forged 25-byte frames
//!   bricked a cluster).

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::sync::Arc;

use hmac::{KeyInit, Mac};
use raft::prelude::Message;

/// The frame tag of challenge and hello frames (shard ids stay below it).
pub const HANDSHAKE_TAG: u32 = super::MORE - 1;
const MAGIC: [u8; 4] = *b"TSPH";
const VERSION: u32 = 1;
/// magic, version, cluster id, from, to, core, nonce, then the 32-byte MAC.
pub const HELLO_BYTES: usize = 4 + 4 + 8 + 8 + 8 + 4 + 8 + MAC_BYTES;
const MAC_BYTES: usize = 32;
/// A challenge is one nonce.
pub const CHALLENGE_BYTES: usize = 8;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Why a hello was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    #[error("a hello of {bytes} bytes, not {HELLO_BYTES}, or with a bad magic or version")]
    Malformed { bytes: usize },
    #[error("a hello of cluster {got:#x}, not this cluster ({expected:#x})")]
    WrongCluster { expected: u64, got: u64 },
    #[error("a hello for server {to} core {core}, not this one")]
    WrongTarget { to: u64, core: u32 },
    #[error("a hello from {from}, not a peer of this server")]
    UnknownPeer { from: u64 },
    #[error("a hello whose MAC does not verify (wrong cluster secret?)")]
    BadMac,
}

/// What one core knows to authenticate its peers and itself.
#[derive(Clone)]
pub struct PeerAuth {
    pub cluster_id: u64,
    secret: Arc<[u8]>,
    pub me: u64,
    pub core: u32,
    peers: BTreeSet<u64>,
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("PeerAuth")
            .field("cluster_id", &self.cluster_id)
            .field("me", &self.me)
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

/// A nonce nobody can predict: the process's OS-seeded hasher keys over a counter.
pub fn nonce() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::collections::hash_map::RandomState::new().hash_one(n)
}

impl PeerAuth {
    /// `peers`: every server of the cluster (this one included). `secret` must be non-empty.
    pub fn new(
        cluster_id: u64,
        secret: &[u8],
        me: u64,
        core: u32,
        peers: BTreeSet<u64>,
    ) -> PeerAuth {
        assert!(!secret.is_empty(), "a cluster secret is required");
        PeerAuth {
            cluster_id,
            secret: secret.into(),
            me,
            core,
            peers,
        }
    }

    /// The HMAC of a hello's fields and the challenge it answers, before finalizing.
    fn mac(&self, fields: &[u8], challenge: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key");
        mac.update(fields);
        mac.update(&challenge.to_le_bytes());
        mac
    }

    /// The hello this server sends to core `self.core` of server `to`, answering `challenge`.
    pub fn hello(&self, to: u64, challenge: u64) -> Vec<u8> {
        let mut body = Vec::with_capacity(HELLO_BYTES);
        body.extend_from_slice(&MAGIC);
        body.extend_from_slice(&VERSION.to_le_bytes());
        for word in [self.cluster_id, self.me, to] {
            body.extend_from_slice(&word.to_le_bytes());
        }
        body.extend_from_slice(&self.core.to_le_bytes());
        body.extend_from_slice(&nonce().to_le_bytes());
        let mac = self.mac(&body, challenge).finalize().into_bytes();
        body.extend_from_slice(&mac);
        debug_assert_eq!(body.len(), HELLO_BYTES);
        body
    }

    /// Checks a hello against the challenge this server sent; returns the peer it proves.
    pub fn verify(&self, hello: &[u8], challenge: u64) -> Result<u64, HandshakeError> {
        let malformed = HandshakeError::Malformed { bytes: hello.len() };
        if hello.len() != HELLO_BYTES || hello[..4] != MAGIC {
            return Err(malformed);
        }
        let word = |at: usize| u64::from_le_bytes(hello[at..at + 8].try_into().expect("8 bytes"));
        let version = u32::from_le_bytes(hello[4..8].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(malformed);
        }
        let (cluster, from, to) = (word(8), word(16), word(24));
        let core = u32::from_le_bytes(hello[32..36].try_into().expect("4 bytes"));
        let (fields, mac) = hello.split_at(HELLO_BYTES - MAC_BYTES);
        // Constant time, so the MAC cannot be guessed byte by byte.
        self.mac(fields, challenge)
            .verify_slice(mac)
            .map_err(|_| HandshakeError::BadMac)?;
        if cluster != self.cluster_id {
            return Err(HandshakeError::WrongCluster {
                expected: self.cluster_id,
                got: cluster,
            });
        }
        if to != self.me || core != self.core {
            return Err(HandshakeError::WrongTarget { to, core });
        }
        if from == self.me || !self.peers.contains(&from) {
            return Err(HandshakeError::UnknownPeer { from });
        }
        Ok(from)
    }
}

/// Whether a message read on a connection authenticated as `peer` may be stepped by `me`.
pub fn message_fits(peer: u64, me: u64, message: &Message) -> bool {
    message.from == peer && message.to == me
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(me: u64, secret: &[u8]) -> PeerAuth {
        PeerAuth::new(0xc1, secret, me, 0, [1, 2, 3].into())
    }

    #[test]
    fn a_hello_under_the_cluster_secret_authenticates_its_sender() {
        let (one, two) = (auth(1, b"secret"), auth(2, b"secret"));
        let challenge = nonce();
        assert_eq!(two.verify(&one.hello(2, challenge), challenge), Ok(1));
    }

    #[test]
    fn a_wrong_secret_a_replayed_or_tampered_hello_or_a_wrong_target_is_refused() {
        let two = auth(2, b"secret");
        let challenge = nonce();
        let forged = auth(1, b"guess").hello(2, challenge);
        assert_eq!(two.verify(&forged, challenge), Err(HandshakeError::BadMac));
        let hello = auth(1, b"secret").hello(2, challenge);
        assert_eq!(
            two.verify(&hello, nonce()),
            Err(HandshakeError::BadMac),
            "a replay"
        );
        let mut tampered = hello.clone();
        tampered[16] ^= 1; // claims to be another server
        assert_eq!(
            two.verify(&tampered, challenge),
            Err(HandshakeError::BadMac)
        );
        let to_three = auth(1, b"secret").hello(3, challenge);
        assert!(matches!(
            two.verify(&to_three, challenge),
            Err(HandshakeError::WrongTarget { to: 3, .. })
        ));
        let other_cluster = PeerAuth::new(0xc2, b"secret", 1, 0, [1, 2, 3].into());
        assert!(matches!(
            two.verify(&other_cluster.hello(2, challenge), challenge),
            Err(HandshakeError::WrongCluster { .. })
        ));
        let stranger = PeerAuth::new(0xc1, b"secret", 9, 0, [1, 2, 3, 9].into());
        assert_eq!(
            two.verify(&stranger.hello(2, challenge), challenge),
            Err(HandshakeError::UnknownPeer { from: 9 })
        );
        assert_eq!(
            two.verify(&hello[..10], challenge),
            Err(HandshakeError::Malformed { bytes: 10 })
        );
    }

    #[test]
    fn a_message_must_come_from_its_connection_and_be_for_this_server() {
        let mut m = Message::default();
        (m.from, m.to) = (1, 2);
        assert!(message_fits(1, 2, &m));
        assert!(!message_fits(3, 2, &m), "speaking for another server");
        assert!(!message_fits(1, 3, &m), "addressed elsewhere");
    }
}

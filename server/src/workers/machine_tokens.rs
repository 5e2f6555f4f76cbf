//! Machine tokens: the short-lived credential a pool machine (an EC2 instance) connects with,
//! instead of the install's worker token, which never leaves the server.
//!
//! A token is `tlm1.<machine id>.<expiry ms>.<hex HMAC-SHA256>` under a key kept in
//! `data_dir/machine_token.key` (so tokens survive a server restart). It is accepted only for
//! the machine id it names: a session opened with it may register as that machine and no
//! other. It is accepted until its expiry (the pool's boot timeout after the launch), and after
//! that only while the pool still counts the machine as one of its live instances, so a
//! machine can reconnect for as long as it lives, and a token copied off a terminated machine
//! is worthless.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashSet;
use std::path::Path;
use std::sync::RwLock;
use test_looper_core::protocol::Millis;

const PREFIX: &str = "tlm1";

/// Issues and checks machine tokens.
pub struct MachineTokens {
    key: [u8; 32],
    /// Machine ids the pool currently counts as its live instances.
    live: RwLock<HashSet<String>>,
}

impl MachineTokens {
    /// Loads the key from `path`, drawing it on first use.
    pub fn open(path: &Path) -> std::io::Result<MachineTokens> {
        let bytes = crate::data_dir_secrets::load_or_create(path, 32)?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        Ok(Self::with_key(key))
    }

    /// Tokens under `key` (tests).
    pub fn with_key(key: [u8; 32]) -> MachineTokens {
        MachineTokens {
            key,
            live: RwLock::new(HashSet::new()),
        }
    }

    /// A token for `machine_id`, accepted on its own until `expires_at`.
    pub fn issue(&self, machine_id: &str, expires_at: Millis) -> String {
        let body = format!("{PREFIX}.{machine_id}.{expires_at}");
        let signature = hex::encode(self.mac(&body).finalize().into_bytes());
        format!("{body}.{signature}")
    }

    /// The machine id `token` was issued for, if it is genuine and still accepted at `now`.
    pub fn verify(&self, token: &str, now: Millis) -> Option<String> {
        let (body, signature) = token.rsplit_once('.')?;
        let rest = body.strip_prefix(PREFIX)?.strip_prefix('.')?;
        let (machine_id, expires_at) = rest.rsplit_once('.')?;
        let expires_at: Millis = expires_at.parse().ok()?;
        let signature = hex::decode(signature).ok()?;
        self.mac(body).verify_slice(&signature).ok()?;
        let live = || {
            self.live
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .contains(machine_id)
        };
        (now < expires_at || live()).then(|| machine_id.to_string())
    }

    /// Replaces the set of live machines (the pool calls this after each observation).
    pub fn set_live(&self, machine_ids: HashSet<String>) {
        *self
            .live
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = machine_ids;
    }

    fn mac(&self, body: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(body.as_bytes());
        mac
    }
}

/// Whether `token` looks like a machine token (rather than the install's worker token).
pub fn is_machine_token(token: &str) -> bool {
    token.starts_with("tlm1.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_machine_until_it_expires_then_only_while_live() {
        let tokens = MachineTokens::with_key([7; 32]);
        let token = tokens.issue("i-0abc", 1_000);
        assert_eq!(tokens.verify(&token, 999).as_deref(), Some("i-0abc"));
        assert_eq!(tokens.verify(&token, 1_000), None);
        tokens.set_live(["i-0abc".to_string()].into());
        assert_eq!(tokens.verify(&token, 5_000).as_deref(), Some("i-0abc"));
        tokens.set_live(HashSet::new());
        assert_eq!(tokens.verify(&token, 5_000), None);
    }

    #[test]
    fn forged_or_altered_tokens_are_refused() {
        let tokens = MachineTokens::with_key([7; 32]);
        let token = tokens.issue("i-0abc", 1_000);
        let other_machine = token.replace("i-0abc", "i-0abd");
        let later = token.replace(".1000.", ".9000.");
        let other_key = MachineTokens::with_key([8; 32]).issue("i-0abc", 1_000);
        for bad in [
            other_machine,
            later,
            other_key,
            "tlm1.x.1.zz".into(),
            "".into(),
        ] {
            assert_eq!(tokens.verify(&bad, 0), None, "{bad}");
        }
    }

    #[test]
    fn machine_ids_with_dots_round_trip() {
        let tokens = MachineTokens::with_key([1; 32]);
        let token = tokens.issue("host.example.0", 10);
        assert_eq!(tokens.verify(&token, 0).as_deref(), Some("host.example.0"));
    }
}

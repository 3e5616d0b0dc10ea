//! Entry tags (layout 5 in `layout.rs`): what a keyed store writes beside
//! each artifact, and how it checks one.
//!
//! A tag binds the key's engine hash and wasm digest, the form of the
//! object (raw or zstd-compressed), and the object's bytes as stored, so
//! that no artifact, form or key can be swapped for another's. Two versions
//! exist, told apart by the tag's length:
//!
//! - **v3** (written since the store verifies every hit): 33 bytes, the
//!   version byte `3` and the BLAKE3 keyed hash of [`V3_DOMAIN`] and the
//!   fields above, under a key derived from the store's key
//!   (`blake3::derive_key` with [`V3_CONTEXT`]). BLAKE3 hashes a 10 MB
//!   artifact about five times faster than HMAC-SHA-256 with SHA-NI on one
//!   core, and a keyed lookup hashes every artifact it loads.
//! - **v2**: 32 bytes, the HMAC-SHA-256 of [`V2_DOMAIN`] and the same
//!   fields. Always read, so that a store written before v3 keeps its hits;
//!   written only with `StoreConfig::write_v2_tags`, while versions that
//!   know only v2 (and would reject, and delete, a v3-tagged entry) still
//!   share the store.
//!
//! Both are compared in constant time.

use crate::digest::Key;
use hmac::{Hmac, Mac};

/// The start of a v2 tag's MAC input.
pub(crate) const V2_DOMAIN: &[u8] = b"cwasm-entry-v2\0";
/// The start of a v3 tag's hash input.
pub(crate) const V3_DOMAIN: &[u8] = b"cwasm-entry-v3\0";
/// The context string from which a v3 tag's key is derived from the
/// store's key.
pub(crate) const V3_CONTEXT: &str = "cwasm-store 2026-12-02 entry tag v3";
/// A v3 tag's first byte.
const V3: u8 = 3;
/// The longest tag there is (a longer file is not a tag).
pub(crate) const MAX_LEN: u64 = 33;

/// What checking a tag found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The tag verifies: the bytes are what a holder of the key stored.
    Valid,
    /// A tag of a known version that does not verify.
    Invalid,
    /// Not a tag of any version.
    Malformed,
}

/// The tag of `stored` (the object's bytes, `compressed` or not) under
/// `key`: v3, or v2 with `v2` (for stores still read by versions that know
/// only v2).
pub(crate) fn tag(secret: &[u8], key: &Key, compressed: bool, stored: &[u8], v2: bool) -> Vec<u8> {
    if v2 {
        return v2_mac(secret, key, compressed, stored)
            .finalize()
            .into_bytes()
            .to_vec();
    }
    let mut tag = Vec::with_capacity(MAX_LEN as usize);
    tag.push(V3);
    tag.extend_from_slice(v3(secret, key, compressed, stored).as_bytes());
    tag
}

/// Checks `found` (the content of a tag file) against `stored`.
pub(crate) fn verify(
    secret: &[u8],
    key: &Key,
    compressed: bool,
    stored: &[u8],
    found: &[u8],
) -> Verdict {
    let valid = match found {
        [V3, rest @ ..] if rest.len() == 32 => {
            let mut bytes = [0; 32];
            bytes.copy_from_slice(rest);
            // `blake3::Hash`'s equality is constant-time.
            v3(secret, key, compressed, stored) == blake3::Hash::from_bytes(bytes)
        }
        // `verify_slice` compares in constant time.
        v2 if v2.len() == 32 => v2_mac(secret, key, compressed, stored)
            .verify_slice(v2)
            .is_ok(),
        _ => return Verdict::Malformed,
    };
    if valid {
        Verdict::Valid
    } else {
        Verdict::Invalid
    }
}

fn v2_mac(secret: &[u8], key: &Key, compressed: bool, stored: &[u8]) -> Hmac<sha2::Sha256> {
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(V2_DOMAIN);
    mac.update(&key.engine.0);
    mac.update(&key.wasm.0);
    mac.update(&[u8::from(compressed)]);
    mac.update(stored);
    mac
}

fn v3(secret: &[u8], key: &Key, compressed: bool, stored: &[u8]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(&blake3::derive_key(V3_CONTEXT, secret));
    hasher.update(V3_DOMAIN);
    hasher.update(&key.engine.0);
    hasher.update(&key.wasm.0);
    hasher.update(&[u8::from(compressed)]);
    hasher.update(stored);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    const SECRET: &[u8] = b"a key of sixteen bytes or more";

    fn key(engine: u8, wasm: u8) -> Key {
        Key {
            engine: Digest([engine; 32]),
            wasm: Digest([wasm; 32]),
        }
    }

    /// A v2 tag, computed here independently of `verify`, as the store
    /// wrote it before v3.
    fn v2(secret: &[u8], key: &Key, compressed: bool, stored: &[u8]) -> Vec<u8> {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).unwrap();
        mac.update(b"cwasm-entry-v2\0");
        mac.update(&key.engine.0);
        mac.update(&key.wasm.0);
        mac.update(&[u8::from(compressed)]);
        mac.update(stored);
        mac.finalize().into_bytes().to_vec()
    }

    #[test]
    fn a_tag_verifies_only_what_it_was_made_for() {
        let k = key(1, 2);
        for made in [
            tag(SECRET, &k, false, b"bytes", false),
            v2(SECRET, &k, false, b"bytes"),
            tag(SECRET, &k, false, b"bytes", true),
        ] {
            assert_eq!(verify(SECRET, &k, false, b"bytes", &made), Verdict::Valid);
            assert_eq!(verify(SECRET, &k, false, b"bytez", &made), Verdict::Invalid);
            assert_eq!(verify(SECRET, &k, true, b"bytes", &made), Verdict::Invalid);
            assert_eq!(
                verify(SECRET, &key(9, 2), false, b"bytes", &made),
                Verdict::Invalid
            );
            assert_eq!(
                verify(SECRET, &key(1, 9), false, b"bytes", &made),
                Verdict::Invalid
            );
            let other = b"another key of sixteen bytes";
            assert_eq!(verify(other, &k, false, b"bytes", &made), Verdict::Invalid);
        }
    }

    #[test]
    fn what_is_not_a_tag_is_malformed() {
        let k = key(1, 2);
        let mut v3 = tag(SECRET, &k, false, b"x", false);
        assert_eq!(v3.len() as u64, MAX_LEN);
        for bad in [&[][..], &v3[..31], &[4; 33][..]] {
            assert_eq!(verify(SECRET, &k, false, b"x", bad), Verdict::Malformed);
        }
        v3.push(0);
        assert_eq!(verify(SECRET, &k, false, b"x", &v3), Verdict::Malformed);
    }

    /// The v3 tag is the documented construction, computed by hand.
    #[test]
    fn v3_is_keyed_blake3_of_the_documented_fields() {
        let k = key(1, 2);
        let derived = blake3::derive_key("cwasm-store 2026-12-02 entry tag v3", SECRET);
        let mut input = b"cwasm-entry-v3\0".to_vec();
        input.extend_from_slice(&[1; 32]);
        input.extend_from_slice(&[2; 32]);
        input.push(1);
        input.extend_from_slice(b"zstd bytes");
        let mut want = vec![3];
        want.extend_from_slice(blake3::keyed_hash(&derived, &input).as_bytes());
        assert_eq!(tag(SECRET, &k, true, b"zstd bytes", false), want);
        // And v2, when asked for, is the v2 of earlier stores.
        assert_eq!(
            tag(SECRET, &k, true, b"zstd bytes", true),
            v2(SECRET, &k, true, b"zstd bytes")
        );
    }
}

//! The store's key: two SHA-256 digests.

use std::fmt;
use std::str::FromStr;
#[cfg(feature = "compile")]
use wasmtime::Engine;
use wasmtime::{Result, bail};

/// A SHA-256 digest, shown and parsed as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The SHA-256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest(sha2::Sha256::digest(bytes).into())
    }

    /// Parses an OCI-style `sha256:<hex>` digest, or bare hex.
    pub fn from_oci(s: &str) -> Result<Digest> {
        s.strip_prefix("sha256:").unwrap_or(s).parse()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One write of the 64 digits: every store path is formatted from
        // digests, on every lookup.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (pair, b) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 15)];
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = wasmtime::Error;

    fn from_str(s: &str) -> Result<Digest> {
        if s.len() != 64 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            bail!("`{s}` is not a SHA-256 digest (64 hex digits)");
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            *byte = hex(pair[0]) << 4 | hex(pair[1]);
        }
        Ok(Digest(out))
    }
}

/// Where an artifact lives: the engine it was compiled by, and the wasm it
/// was compiled from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// `Engine::serialization_compatibility_hash()` of the compiling engine.
    pub engine: Digest,
    /// SHA-256 of the wasm bytes (or a digest the caller already has for
    /// them, such as an OCI layer digest).
    pub wasm: Digest,
}

impl Key {
    /// The key of `wasm` compiled by `engine`.
    #[cfg(feature = "compile")]
    pub fn new(engine: &Engine, wasm: &[u8]) -> Result<Key> {
        Key::with_wasm_digest(engine, Digest::of(wasm))
    }

    /// The key for a wasm whose digest the caller already knows.
    #[cfg(feature = "compile")]
    pub fn with_wasm_digest(engine: &Engine, wasm: Digest) -> Result<Key> {
        Ok(Key {
            engine: Digest(engine.serialization_compatibility_hash()?),
            wasm,
        })
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let hex = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Key", 2)?;
        st.serialize_field("engine", &self.engine)?;
        st.serialize_field("wasm", &self.wasm)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert_eq!(Digest::from_oci(&format!("sha256:{d}")).unwrap(), d);
        assert!("xyz".parse::<Digest>().is_err());
        assert!("+a".repeat(32).parse::<Digest>().is_err());
        assert!("é".repeat(32).parse::<Digest>().is_err());
        assert!(format!("ab{}", "é".repeat(31)).parse::<Digest>().is_err());
    }

    #[test]
    fn paths_round_trip() {
        let key = Key {
            engine: Digest::of(b"e"),
            wasm: Digest::of(b"w"),
        };
        assert_eq!(Key::from_artifact_path(&key.artifact_path()), Some(key));
        assert_eq!(Key::from_artifact_path("engine.json"), None);
        assert_eq!(Key::from_artifact_path(&key.tag_path()), None);
    }
}

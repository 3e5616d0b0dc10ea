//! Statements (layout 10 in `layout.rs`): who produced an entry, signed by a
//! build farm and verified by hosts that hold only its public key.
//!
//! A keyed store's tags are made and checked with one secret, so every host
//! that verifies could also forge. A signed store splits the two: a few
//! build machines hold a [`SigningKey`]; every host holds [`TrustedKey`]s,
//! which verify and cannot sign.
//!
//! Each entry carries a statement in formats that existing tools read, so
//! that nothing here is a format of our own:
//!
//! - a [DSSE] envelope (`payloadType` `application/vnd.in-toto+json`, the
//!   base64 payload, and Ed25519 signatures over DSSE's pre-authentication
//!   encoding of the two, each with the signer's key id: the hex SHA-256 of
//!   its SubjectPublicKeyInfo);
//! - holding an [in-toto Statement v1]: one subject, the artifact
//!   (`<engine-hex>/<wasm-hex>.cwasm`, its SHA-256 and BLAKE3 digests), and
//!   the predicate [`PREDICATE_TYPE`]: the wasm's SHA-256, the engine hash,
//!   the producer (full wasmtime version, the patch series it carries, the
//!   CPU profile), the target and the time.
//!
//! Keys are PEM files as OpenSSL writes them (PKCS#8 for the signing key,
//! SubjectPublicKeyInfo for the public one), so `openssl pkey` reads them
//! and `openssl pkeyutl -verify -rawin` checks a signature.
//!
//! Unsigned envelopes (no signatures) record the producer of entries
//! written by stores without a signing key: provenance for `cwasm ls` and
//! `gc --produced-by`, not proof of anything.
//!
//! [DSSE]: https://github.com/secure-systems-lab/dsse/blob/master/protocol.md
//! [in-toto Statement v1]: https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md

use crate::digest::{Digest, Key};
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;
use wasmtime::error::Context;
use wasmtime::{Result, bail, format_err};

/// DSSE's payload type for in-toto statements.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The in-toto Statement version written and read.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate of an entry's statement: a precompiled wasmtime artifact
/// (fields: `wasm.sha256`, `engine.serializationCompatibilityHash`,
/// `producer`, `target`, `timestamp`).
pub const PREDICATE_TYPE: &str = "urn:cwasm:precompiled-artifact:v1";
/// The largest statement read (by lookups, `cwasm inspect`): one is about
/// a kilobyte.
pub const MAX_STATEMENT_LEN: u64 = 64 << 10;

/// What produced an entry: recorded in its statement, shown by `cwasm ls`,
/// matched by `gc --produced-by` and [`StoreConfig::refused_producers`].
///
/// [`StoreConfig::refused_producers`]: crate::StoreConfig::refused_producers
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Producer {
    /// The full version of the wasmtime that compiled the artifact
    /// (`48.0.8`): the engine section records only the major version.
    pub wasmtime: String,
    /// The serialization-compatibility-hash patch series that wasmtime
    /// carries: the number of patches and a checksum of their text.
    pub series: String,
    /// The CPU profile the engine compiled for, if one was named (`cwasm
    /// compile --baseline x86-64-v3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

impl Producer {
    /// This build: the wasmtime this crate is built against (its pin in
    /// `Cargo.toml`) and the series in `patches/`, read by `build.rs`.
    pub fn current() -> Producer {
        Producer {
            wasmtime: env!("CWASM_WASMTIME_VERSION").to_string(),
            series: env!("CWASM_SERIES").to_string(),
            profile: None,
        }
    }

    /// The wasmtime version, if it is a semantic version.
    pub fn version(&self) -> Option<semver::Version> {
        semver::Version::parse(&self.wasmtime).ok()
    }

    /// Whether `requirement` matches this producer's wasmtime version. A
    /// version that does not parse matches nothing.
    pub fn matches(&self, requirement: &semver::VersionReq) -> bool {
        self.version().is_some_and(|v| requirement.matches(&v))
    }
}

impl std::fmt::Display for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wasmtime {} ({})", self.wasmtime, self.series)?;
        if let Some(profile) = &self.profile {
            write!(f, ", profile {profile}")?;
        }
        Ok(())
    }
}

/// A public key that signed statements are verified with: what a host
/// holds. Read from a SubjectPublicKeyInfo PEM file (`cwasm keygen`'s
/// `.pub`, or `openssl pkey -pubout` of an Ed25519 key).
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedKey {
    key: ed25519_dalek::VerifyingKey,
    id: String,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustedKey({})", self.id)
    }
}

impl TrustedKey {
    fn new(key: ed25519_dalek::VerifyingKey) -> TrustedKey {
        let der = key
            .to_public_key_der()
            .expect("an Ed25519 public key always encodes");
        TrustedKey {
            key,
            id: Digest::of(der.as_bytes()).to_string(),
        }
    }

    /// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) holding an Ed25519
    /// key.
    pub fn from_pem(pem: &str) -> Result<TrustedKey> {
        let key = ed25519_dalek::VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|e| format_err!("not an Ed25519 public key in PEM form: {e}"))?;
        Ok(TrustedKey::new(key))
    }

    /// Reads a PEM file (see [`TrustedKey::from_pem`]).
    pub fn read(path: &Path) -> Result<TrustedKey> {
        let text = read_key_file(path)?;
        TrustedKey::from_pem(&text).with_context(|| format!("in {}", path.display()))
    }

    /// The key as a PEM `PUBLIC KEY`.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(Default::default())
            .expect("an Ed25519 public key always encodes")
    }

    /// The key id written beside each signature: the lowercase hex SHA-256
    /// of the key's SubjectPublicKeyInfo (DER).
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A build farm's signing key: statements of the entries a store with it
/// writes are signed. Read from a PKCS#8 PEM file (`cwasm keygen`, or
/// `openssl genpkey -algorithm ed25519`). Its `Debug` output never shows
/// the secret.
#[derive(Clone)]
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    public: TrustedKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, secret not shown)", self.public.id)
    }
}

impl SigningKey {
    fn new(key: ed25519_dalek::SigningKey) -> SigningKey {
        let public = TrustedKey::new(key.verifying_key());
        SigningKey { key, public }
    }

    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<SigningKey> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::getrandom(&mut seed[..])
            .map_err(|e| format_err!("no random numbers for a new key: {e}"))?;
        Ok(SigningKey::new(ed25519_dalek::SigningKey::from_bytes(
            &seed,
        )))
    }

    /// Parses a PEM `PRIVATE KEY` (PKCS#8) holding an Ed25519 key.
    pub fn from_pem(pem: &str) -> Result<SigningKey> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim())
            .map_err(|e| format_err!("not an Ed25519 private key in PKCS#8 PEM form: {e}"))?;
        Ok(SigningKey::new(key))
    }

    /// Reads a PEM file (see [`SigningKey::from_pem`]).
    pub fn read(path: &Path) -> Result<SigningKey> {
        let text = zeroize::Zeroizing::new(read_key_file(path)?);
        SigningKey::from_pem(&text).with_context(|| format!("in {}", path.display()))
    }

    /// The key as a PEM `PRIVATE KEY`, wiped from memory when dropped:
    /// PKCS#8 v1 (RFC 8410, the private key alone), as `openssl genpkey`
    /// writes it. (The v2 form with the public key inside, ed25519-dalek's
    /// default, is one OpenSSL 3.0 cannot read.)
    pub fn to_pem(&self) -> zeroize::Zeroizing<String> {
        let bytes = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        };
        bytes
            .to_pkcs8_pem(Default::default())
            .expect("an Ed25519 private key always encodes")
    }

    /// The public half, for hosts to trust.
    pub fn public_key(&self) -> &TrustedKey {
        &self.public
    }
}

/// Key files are small: a larger file is not one.
fn read_key_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(16 << 10).read_to_string(&mut text))
        .with_context(|| format!("failed to read the key file {}", path.display()))?;
    Ok(text)
}

/// What an entry's statement says, as `cwasm inspect` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Provenance {
    /// The wasm digest and engine hash the statement is for.
    pub key: Key,
    /// The SHA-256 of the artifact it vouches for.
    pub artifact_sha256: Digest,
    /// Who produced the artifact.
    pub producer: Producer,
    /// The target it was compiled for.
    pub target: String,
    /// When it was produced (RFC 3339, UTC), as the producer's clock said.
    pub timestamp: String,
    /// The key ids of the envelope's signatures (none: an unsigned
    /// statement), whether or not they verify.
    pub signed_by: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Serialize, Deserialize)]
struct EnvelopeSignature {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    keyid: String,
    sig: String,
}

#[derive(Serialize, Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    statement_type: String,
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    predicate: Predicate,
}

#[derive(Serialize, Deserialize)]
struct Subject {
    name: String,
    digest: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct Predicate {
    wasm: WasmDigest,
    engine: EngineHash,
    producer: Producer,
    target: String,
    timestamp: String,
}

#[derive(Serialize, Deserialize)]
struct WasmDigest {
    sha256: Digest,
}

#[derive(Serialize, Deserialize)]
struct EngineHash {
    #[serde(rename = "serializationCompatibilityHash")]
    serialization_compatibility_hash: Digest,
}

/// The envelope (JSON) of `artifact`'s statement under `key`, signed with
/// `signer` if there is one.
pub(crate) fn envelope(
    key: &Key,
    artifact: &[u8],
    producer: &Producer,
    target: &str,
    signer: Option<&SigningKey>,
) -> Result<Vec<u8>> {
    let statement = Statement {
        statement_type: STATEMENT_TYPE.into(),
        subject: vec![Subject {
            name: key.artifact_path(),
            digest: BTreeMap::from([
                ("sha256".into(), Digest::of(artifact).to_string()),
                ("blake3".into(), blake3::hash(artifact).to_hex().to_string()),
            ]),
        }],
        predicate_type: PREDICATE_TYPE.into(),
        predicate: Predicate {
            wasm: WasmDigest { sha256: key.wasm },
            engine: EngineHash {
                serialization_compatibility_hash: key.engine,
            },
            producer: producer.clone(),
            target: target.into(),
            timestamp: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        },
    };
    let payload = serde_json::to_vec(&statement)?;
    let signatures = signer
        .map(|signer| {
            use ed25519_dalek::Signer;
            let signature = signer.key.sign(&pae(PAYLOAD_TYPE, &payload));
            EnvelopeSignature {
                keyid: signer.public.id.clone(),
                sig: BASE64_STANDARD.encode(signature.to_bytes()),
            }
        })
        .into_iter()
        .collect();
    Ok(serde_json::to_vec_pretty(&Envelope {
        payload_type: PAYLOAD_TYPE.into(),
        payload: BASE64_STANDARD.encode(&payload),
        signatures,
    })?)
}

/// DSSE's pre-authentication encoding: what is signed.
pub(crate) fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// An envelope opened (its payload decoded), its signatures not yet
/// checked.
struct Opened {
    payload: Vec<u8>,
    signatures: Vec<EnvelopeSignature>,
}

fn open(envelope: &[u8]) -> Result<Opened, String> {
    let envelope: Envelope = serde_json::from_slice(envelope)
        .map_err(|e| format!("its statement is not DSSE JSON: {e}"))?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(format!(
            "its statement's payload type is {:?}, not {PAYLOAD_TYPE:?}",
            envelope.payload_type
        ));
    }
    let payload = BASE64_STANDARD
        .decode(&envelope.payload)
        .map_err(|e| format!("its statement's payload is not base64: {e}"))?;
    Ok(Opened {
        payload,
        signatures: envelope.signatures,
    })
}

/// Which trusted key, if any, signed `opened`: the first signature that
/// verifies (strictly: no malleable or small-order forms) under a trusted
/// key whose id it names, or under any trusted key if it names none.
fn signer<'a>(opened: &Opened, trusted: &'a [TrustedKey]) -> Result<&'a TrustedKey, String> {
    if opened.signatures.is_empty() {
        return Err("its statement is not signed".into());
    }
    let message = pae(PAYLOAD_TYPE, &opened.payload);
    for signature in &opened.signatures {
        let Ok(bytes) = BASE64_STANDARD.decode(&signature.sig) else {
            continue;
        };
        let Ok(signature_bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else {
            continue;
        };
        let parsed = ed25519_dalek::Signature::from_bytes(&signature_bytes);
        for key in trusted {
            if (signature.keyid.is_empty() || signature.keyid == key.id)
                && key.key.verify_strict(&message, &parsed).is_ok()
            {
                return Ok(key);
            }
        }
    }
    Err("its statement has no signature by a trusted key".into())
}

fn parse(payload: &[u8]) -> Result<Statement, String> {
    let statement: Statement = serde_json::from_slice(payload)
        .map_err(|e| format!("its statement is not an in-toto statement of this store: {e}"))?;
    if statement.statement_type != STATEMENT_TYPE || statement.predicate_type != PREDICATE_TYPE {
        return Err(format!(
            "its statement is of type {:?}/{:?}, not {STATEMENT_TYPE:?}/{PREDICATE_TYPE:?}",
            statement.statement_type, statement.predicate_type
        ));
    }
    if statement.subject.len() != 1 {
        return Err(format!(
            "its statement has {} subjects, not one",
            statement.subject.len()
        ));
    }
    Ok(statement)
}

/// What a checked statement established.
#[derive(Debug)]
pub(crate) struct Vouched {
    pub(crate) producer: Producer,
}

/// Checks `envelope` as the statement of `artifact` under `key`: with
/// `trusted` keys, signed by one of them (before anything in the payload is
/// believed); then for this key (wasm digest, engine hash) and for these
/// very bytes (the subject's BLAKE3 digest when it has one, which is about
/// five times faster to check than SHA-256; its SHA-256 otherwise). The
/// error is the reason for refusing the entry.
pub(crate) fn check(
    envelope: &[u8],
    trusted: &[TrustedKey],
    key: &Key,
    artifact: &[u8],
) -> Result<Vouched, String> {
    let opened = open(envelope)?;
    if !trusted.is_empty() {
        signer(&opened, trusted)?;
    }
    let statement = parse(&opened.payload)?;
    let predicate = &statement.predicate;
    if predicate.wasm.sha256 != key.wasm {
        return Err(format!(
            "its statement is for wasm {}, not {}",
            predicate.wasm.sha256, key.wasm
        ));
    }
    if predicate.engine.serialization_compatibility_hash != key.engine {
        return Err(format!(
            "its statement is for engine {}, not {}",
            predicate.engine.serialization_compatibility_hash, key.engine
        ));
    }
    let digests = &statement.subject[0].digest;
    let matches = if let Some(expected) = digests.get("blake3") {
        *expected == blake3::hash(artifact).to_hex().as_str()
    } else if let Some(expected) = digests.get("sha256") {
        *expected == Digest::of(artifact).to_string()
    } else {
        return Err("its statement gives no SHA-256 or BLAKE3 digest of the artifact".into());
    };
    if !matches {
        return Err("its statement is for other bytes (the artifact's digest differs)".into());
    }
    Ok(Vouched {
        producer: statement.predicate.producer,
    })
}

/// The producer an envelope claims, unverified (for listings).
pub(crate) fn claimed_producer(envelope: &[u8]) -> Option<Producer> {
    let opened = open(envelope).ok()?;
    Some(parse(&opened.payload).ok()?.predicate.producer)
}

/// What `envelope` says, for `cwasm inspect`: unverified unless `trusted`
/// keys are given, in which case it must be signed by one of them (the key
/// that did is returned too).
pub fn read_statement(
    envelope: &[u8],
    trusted: &[TrustedKey],
) -> Result<(Provenance, Option<String>)> {
    // The reasons are a lookup's ("its statement is ..."): said of the file.
    let reason = |e: String| format_err!("{}", e.trim_start_matches("its "));
    let opened = open(envelope).map_err(reason)?;
    let verified_by = if trusted.is_empty() {
        None
    } else {
        let key = signer(&opened, trusted).map_err(reason)?;
        Some(key.id.clone())
    };
    let statement = parse(&opened.payload).map_err(reason)?;
    let sha256 = match statement.subject[0].digest.get("sha256") {
        Some(hex) => hex.parse()?,
        None => bail!("the statement gives no SHA-256 of the artifact"),
    };
    let predicate = statement.predicate;
    Ok((
        Provenance {
            key: Key {
                engine: predicate.engine.serialization_compatibility_hash,
                wasm: predicate.wasm.sha256,
            },
            artifact_sha256: sha256,
            producer: predicate.producer,
            target: predicate.target,
            timestamp: predicate.timestamp,
            signed_by: opened.signatures.into_iter().map(|s| s.keyid).collect(),
        },
        verified_by,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key {
            engine: Digest([1; 32]),
            wasm: Digest([2; 32]),
        }
    }

    #[test]
    fn pae_is_dsse_s_encoding() {
        // The example of DSSE's protocol.md.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn keys_round_trip_through_pem() {
        let signer = SigningKey::generate().unwrap();
        let again = SigningKey::from_pem(&signer.to_pem()).unwrap();
        assert_eq!(again.public_key(), signer.public_key());
        let public = TrustedKey::from_pem(&signer.public_key().to_pem()).unwrap();
        assert_eq!(&public, signer.public_key());
        assert!(!format!("{signer:?}").contains(&*signer.to_pem()));
        assert!(TrustedKey::from_pem(&signer.to_pem()).is_err());
        assert!(SigningKey::from_pem(&public.to_pem()).is_err());
    }

    #[test]
    fn a_signed_statement_verifies_only_for_its_key_and_bytes() {
        let farm = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let trusted = [farm.public_key().clone()];
        let producer = Producer::current();
        let signed = envelope(&key(), b"artifact", &producer, "x86_64", Some(&farm)).unwrap();
        let vouched = check(&signed, &trusted, &key(), b"artifact").unwrap();
        assert_eq!(vouched.producer, producer);
        assert!(check(&signed, &trusted, &key(), b"artifacT").is_err());
        let mut other_key = key();
        other_key.wasm = Digest([3; 32]);
        assert!(check(&signed, &trusted, &other_key, b"artifact").is_err());
        other_key = key();
        other_key.engine = Digest([3; 32]);
        assert!(check(&signed, &trusted, &other_key, b"artifact").is_err());
        assert!(check(&signed, &[other.public_key().clone()], &key(), b"artifact").is_err());
        let unsigned = envelope(&key(), b"artifact", &producer, "x86_64", None).unwrap();
        assert!(check(&unsigned, &trusted, &key(), b"artifact").is_err());
        assert!(check(&unsigned, &[], &key(), b"artifact").is_ok());
    }
}

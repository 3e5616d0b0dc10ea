//! Property tests: random combinations of the matrix's knobs keep the
//! round-trip and soundness invariants, and the artifact reader never panics
//! on arbitrary bytes.

mod common;

use common::*;
use proptest::prelude::*;
use wasmtime::{Config, Engine};

fn knob_subset() -> impl Strategy<Value = Vec<usize>> {
    let n = knobs().len();
    proptest::collection::vec(0..n, 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For a random combination of knobs (applied in order; combinations
    /// that wasmtime rejects are skipped): the hash is the SHA-256 of the
    /// artifacts' section and what the reader returns, two engines of the
    /// configuration agree, and a host engine runs the other's artifacts.
    #[test]
    fn random_configs_keep_the_invariants(picks in knob_subset()) {
        let all = knobs();
        let mut config = Config::new();
        let mut cross = false;
        let mut names = Vec::new();
        for &i in &picks {
            let knob = &all[i];
            prop_assume!((knob.apply)(&mut config).is_ok());
            cross |= knob.target == Target::Cross;
            names.push(knob.name);
        }
        let what = names.join(" + ");
        let Ok(a) = Engine::new(&config) else {
            // An inconsistent combination (say, GC without reference types):
            // wasmtime refuses it, which is fine.
            return Err(TestCaseError::reject("wasmtime rejects this combination"));
        };
        let b = Engine::new(&config).unwrap();
        let checked = check_round_trip(&a, &what);
        prop_assert_eq!(b.serialization_compatibility_hash().unwrap(), checked.hash);
        if !cross {
            prop_assert_eq!(run_module(&b, &checked.module).unwrap(), 42, "{}", what);
            if let Some(component) = &checked.component {
                prop_assert_eq!(run_component(&b, component).unwrap(), 42, "{}", what);
            }
        }
    }

    /// Arbitrary bytes, and arbitrary bytes behind a real ELF header, give
    /// `None` or a digest, never a panic.
    #[test]
    fn the_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = Engine::detect_serialization_compatibility_hash(&bytes);
        let artifact = artifact();
        let mut spliced = artifact[..64.min(artifact.len())].to_vec();
        spliced.extend_from_slice(&bytes);
        let _ = Engine::detect_serialization_compatibility_hash(&spliced);
    }
}

fn artifact() -> &'static [u8] {
    static ARTIFACT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ARTIFACT.get_or_init(|| {
        Engine::default()
            .precompile_module(MODULE_WAT.as_bytes())
            .unwrap()
    })
}

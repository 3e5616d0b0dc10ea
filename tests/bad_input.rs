//! The artifact reader on input that is not a healthy wasmtime artifact:
//! every answer is `None`, an error, or a digest that matches no engine;
//! nothing panics.

mod common;

use common::*;
use object::read::elf::{ElfFile64, FileHeader};
use object::{Endianness, Object, ObjectSection};
use wasmtime::{Engine, Module};

fn artifact() -> (Engine, Vec<u8>) {
    let engine = Engine::default();
    let artifact = engine.precompile_module(MODULE_WAT.as_bytes()).unwrap();
    (engine, artifact)
}

/// Byte offsets of interest in a real artifact: the end of its section
/// header table, and the file range of its engine section.
fn layout(artifact: &[u8]) -> (usize, std::ops::Range<usize>) {
    let elf = ElfFile64::<Endianness>::parse(artifact).unwrap();
    let header = elf.elf_header();
    let e = elf.endian();
    let table_end =
        header.e_shoff(e) as usize + header.e_shnum(e) as usize * header.e_shentsize(e) as usize;
    let (start, len) = elf
        .section_by_name(ENGINE_SECTION)
        .unwrap()
        .file_range()
        .unwrap();
    (table_end, start as usize..(start + len) as usize)
}

#[test]
fn empty_and_tiny_inputs() {
    assert_eq!(Engine::detect_serialization_compatibility_hash(&[]), None);
    assert_eq!(
        Engine::detect_serialization_compatibility_hash(b"\x7fELF"),
        None
    );
    assert_eq!(
        Engine::detect_serialization_compatibility_hash(b"\0asm\x01\0\0\0"),
        None
    );
    assert_eq!(
        Engine::detect_serialization_compatibility_hash(b"(module)"),
        None
    );
}

/// Truncated at every length up to the end of the section header table and
/// through the engine section; the same through the file reader. Only the
/// complete prefix that still holds the whole section table and section may
/// yield the engine's hash.
#[test]
fn truncated_at_every_length() {
    let (engine, artifact) = artifact();
    let hash = engine.serialization_compatibility_hash().unwrap();
    let (table_end, section) = layout(&artifact);
    let last = table_end.max(section.end).min(artifact.len());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.cwasm");
    for len in 0..=last {
        let cut = &artifact[..len];
        let found = Engine::detect_serialization_compatibility_hash(cut);
        let complete = len >= table_end && len >= section.end;
        assert!(
            found.is_none() || (complete && found == Some(hash)),
            "length {len}: {found:?}"
        );
        std::fs::write(&path, cut).unwrap();
        // The file reader fails where `detect_precompiled_file` does (the
        // file is not an ELF file), and otherwise agrees with the bytes one.
        let from_file = Engine::detect_serialization_compatibility_hash_file(&path);
        match Engine::detect_precompiled_file(&path) {
            Err(_) => assert!(from_file.is_err(), "length {len}: {from_file:?}"),
            Ok(_) => assert_eq!(
                from_file.unwrap(),
                found,
                "length {len}: file and bytes readers disagree"
            ),
        }
    }
    println!("truncated {} ways", last + 1);
}

/// A real ELF that is not a wasmtime artifact: this test binary itself.
#[test]
fn a_non_wasmtime_elf_is_not_an_artifact() {
    let exe = std::env::current_exe().unwrap();
    let bytes = std::fs::read(&exe).unwrap();
    assert!(bytes.starts_with(b"\x7fELF"));
    assert_eq!(
        Engine::detect_serialization_compatibility_hash(&bytes),
        None
    );
    assert_eq!(
        Engine::detect_serialization_compatibility_hash_file(&exe).unwrap(),
        None
    );
}

/// A damaged engine section gives a digest that matches no engine, and
/// wasmtime refuses to load the artifact.
#[test]
fn a_corrupted_engine_section_matches_no_engine() {
    let (engine, artifact) = artifact();
    let hash = engine.serialization_compatibility_hash().unwrap();
    let (_, section) = layout(&artifact);
    for at in [
        section.start,
        section.start + 1,
        section.start + 3,
        section.end - 1,
    ] {
        let mut bad = artifact.clone();
        bad[at] ^= 0x55;
        let found = Engine::detect_serialization_compatibility_hash(&bad);
        assert!(
            found.is_some() && found != Some(hash),
            "offset {at}: {found:?}"
        );
        // SAFETY: wasmtime must reject this artifact; that is what we test.
        let loaded = unsafe { Module::deserialize(&engine, &bad) };
        assert!(loaded.is_err(), "offset {at}: a corrupted artifact loaded");
    }
}

/// Renaming the section in the section-name table removes it: no digest.
#[test]
fn a_removed_engine_section_gives_none() {
    let (engine, artifact) = artifact();
    let name = ENGINE_SECTION.as_bytes();
    let at = artifact
        .windows(name.len() + 1)
        .position(|w| &w[..name.len()] == name && w[name.len()] == 0)
        .expect("section name in the string table");
    let mut bad = artifact.clone();
    bad[at + name.len() - 1] = b'X';
    assert_eq!(Engine::detect_serialization_compatibility_hash(&bad), None);
    // SAFETY: wasmtime must reject this artifact; that is what we test.
    assert!(unsafe { Module::deserialize(&engine, &bad) }.is_err());
}

/// The header's OS ABI says whether an ELF is a wasmtime artifact.
#[test]
fn a_foreign_os_abi_is_not_an_artifact() {
    let (_, artifact) = artifact();
    let mut bad = artifact.clone();
    bad[7] = 0; // EI_OSABI: System V
    assert_eq!(Engine::detect_serialization_compatibility_hash(&bad), None);
}

#[test]
fn a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err =
        Engine::detect_serialization_compatibility_hash_file(dir.path().join("nope")).unwrap_err();
    assert!(format!("{err:#}").contains("nope"), "{err:#}");
}

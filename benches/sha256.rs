//! SHA-256 of wasm bytes, the other half of a store key: candidate
//! implementations over 1 to 64 MB. Compare with `openssl speed -evp sha256`
//! on the same machine (`cargo xtask bench` runs both).
//!
//! * `sha2`: the `sha2` crate as this workspace configures it (no default
//!   features; runtime-detected SHA-NI, else portable Rust);
//! * `sha2-asm`: the assembly backend that `sha2`'s `asm` feature switches
//!   to, driven directly (see `sha256_asm`) so that wasmtime's own `sha2`
//!   stays as configured;
//! * `ring`: BoringSSL-derived assembly.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sha2::{Digest, Sha256};
use std::hint::black_box;

const SIZES: &[(&str, usize)] = &[("1MB", 1 << 20), ("16MB", 16 << 20), ("64MB", 64 << 20)];

const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// SHA-256 with `sha2-asm`'s compression function and the standard padding.
fn sha256_asm(data: &[u8]) -> [u8; 32] {
    let mut state = H0;
    let (blocks, rest) = data.as_chunks::<64>();
    sha2_asm::compress256(&mut state, blocks);
    let mut tail = [0u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let tail_len = if rest.len() < 56 { 64 } else { 128 };
    let bits = (data.len() as u64) * 8;
    tail[tail_len - 8..tail_len].copy_from_slice(&bits.to_be_bytes());
    let (tail_blocks, _) = tail[..tail_len].as_chunks::<64>();
    sha2_asm::compress256(&mut state, tail_blocks);
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn bench(c: &mut Criterion) {
    // The hand-driven backend must agree with `sha2` before it is timed.
    for len in [0, 1, 55, 56, 63, 64, 65, 1000, 4096] {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        assert_eq!(sha256_asm(&data), <[u8; 32]>::from(Sha256::digest(&data)));
    }
    let mut g = c.benchmark_group("sha256");
    g.sample_size(10);
    for &(name, len) in SIZES {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("sha2", name), &data, |b, d| {
            b.iter(|| Sha256::digest(black_box(d)))
        });
        g.bench_with_input(BenchmarkId::new("sha2-asm", name), &data, |b, d| {
            b.iter(|| sha256_asm(black_box(d)))
        });
        g.bench_with_input(BenchmarkId::new("ring", name), &data, |b, d| {
            b.iter(|| ring::digest::digest(&ring::digest::SHA256, black_box(d)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Inputs shared by the benchmarks. Uses only upstream wasmtime API, so that
//! `precompile.rs` builds against pristine wasmtime too.

#![allow(dead_code, reason = "each bench uses a different subset")]

/// Appends `value` as unsigned LEB128.
fn leb(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(out: &mut Vec<u8>, id: u8, content: &[u8]) {
    out.push(id);
    leb(out, content.len() as u64);
    out.extend_from_slice(content);
}

/// A binary module whose memory is initialised by one `len`-byte data
/// segment: its artifact is about `len` bytes larger than an empty one's.
pub fn data_module(len: usize) -> Vec<u8> {
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    let pages = (len as u64).div_ceil(65536) + 1;
    let mut memory = vec![1, 0x00];
    leb(&mut memory, pages);
    section(&mut wasm, 5, &memory);
    let mut data = vec![1, 0x00, 0x41, 0x00, 0x0b];
    leb(&mut data, len as u64);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    data.extend((0..len).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    section(&mut wasm, 11, &data);
    wasm
}

/// A deterministic module with `funcs` functions of loops, arithmetic,
/// memory traffic and calls: code shaped like real compiled programs, about
/// 500 bytes of wasm per function.
pub fn code_module(funcs: usize) -> String {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut wat = String::from("(module\n  (memory (export \"memory\") 4)\n");
    for f in 0..funcs {
        wat.push_str(&format!(
            "  (func $f{f} (export \"f{f}\") (param i32 i32) (result i32) (local i32 i32 i64)\n"
        ));
        wat.push_str("    (local.set 2 (i32.add (local.get 0) (local.get 1)))\n");
        wat.push_str("    (block $out (loop $top\n");
        for _ in 0..6 {
            let op = [
                "i32.add", "i32.sub", "i32.mul", "i32.xor", "i32.rotl", "i32.and",
            ][next(6) as usize];
            let k = next(1 << 20);
            let off = next(4096) * 4;
            wat.push_str(&format!(
                "      (local.set 3 ({op} (local.get 2) (i32.const {k})))\n\
                 \x20     (i32.store offset={off} (i32.and (local.get 3) (i32.const 0xfffc)) (local.get 2))\n\
                 \x20     (local.set 2 (i32.add (local.get 3) (i32.load offset={off} (i32.and (local.get 2) (i32.const 0xfffc)))))\n\
                 \x20     (local.set 4 (i64.add (local.get 4) (i64.extend_i32_u (local.get 3))))\n"
            ));
        }
        wat.push_str(
            "      (local.set 1 (i32.sub (local.get 1) (i32.const 1)))\n\
             \x20     (br_if $top (i32.gt_s (local.get 1) (i32.const 0)))))\n",
        );
        if f > 0 {
            let callee = next(f as u64);
            wat.push_str(&format!(
                "    (local.set 2 (i32.add (local.get 2) (call $f{callee} (local.get 2) (i32.const 1))))\n"
            ));
        }
        wat.push_str("    (i32.add (local.get 2) (i32.wrap_i64 (local.get 4))))\n");
    }
    wat.push_str(")\n");
    wat
}

//! The probe programs every configuration of the oracle is compiled with.
//!
//! Each one exercises a part of the code generator that some `Config`
//! setting changes: linear memory (bounds checks, growth, bulk operations,
//! a sparse data image), calls (direct, indirect, tail, through a growing
//! table), GC references, SIMD and float arithmetic (NaN canonicalization,
//! relaxed SIMD), shared-memory atomics, and a component with a string
//! adapter. Each exports `run`, returning a fixed answer, so an artifact can
//! also be checked by running it.

/// One probe: a name, its text, and what its `run` export returns.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    /// A short name, used in file names and messages.
    pub name: &'static str,
    /// Whether this is a component (otherwise a core module).
    pub component: bool,
    /// The program, in the WebAssembly text format.
    pub wat: &'static str,
    /// What `run` returns.
    pub answer: i32,
}

/// Every probe.
pub const PROBES: &[Probe] = &[
    Probe {
        name: "memory",
        component: false,
        // Two data segments 1 MiB apart: a sparse image, which
        // `memory_guaranteed_dense_image_size` decides how to lay out.
        wat: r#"(module
  (memory (export "mem") 17 100)
  (data (i32.const 0) "hello")
  (data (i32.const 1048576) "world")
  (func (export "run") (result i32)
    (i32.store (i32.const 16) (i32.const 7))
    (drop (memory.grow (i32.const 1)))
    (memory.fill (i32.const 100) (i32.const 1) (i32.const 10))
    (memory.copy (i32.const 200) (i32.const 0) (i32.const 5))
    (i32.add
      (i32.load (i32.const 16))
      (i32.add (memory.size) (i32.load8_u (i32.const 201))))))"#,
        // 7 + 18 pages + 'e'
        answer: 7 + 18 + 101,
    },
    Probe {
        name: "calls",
        component: false,
        wat: r#"(module
  (type $t (func (param i32) (result i32)))
  (table $tab 2 10 funcref)
  (elem (table $tab) (i32.const 0) func $inc $dbl)
  (func $inc (type $t) (i32.add (local.get 0) (i32.const 1)))
  (func $dbl (type $t) (i32.mul (local.get 0) (i32.const 2)))
  (func $tail (type $t) (return_call $inc (local.get 0)))
  (func (export "run") (result i32) (local $i i32) (local $acc i32)
    (loop $l
      (local.set $acc
        (call_indirect (type $t) (local.get $acc) (i32.and (local.get $i) (i32.const 1))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10))))
    (drop (table.grow $tab (ref.func $inc) (i32.const 1)))
    (i32.add (local.get $acc) (call $tail (table.size $tab)))))"#,
        // 62 after the loop, plus 3 + 1
        answer: 66,
    },
    Probe {
        name: "gc",
        component: false,
        wat: r#"(module
  (type $pt (struct (field (mut i32)) (field i32)))
  (type $arr (array (mut i32)))
  (table 1 anyref)
  (func (export "run") (result i32) (local $p (ref null $pt)) (local $a (ref null $arr))
    (local.set $p (struct.new $pt (i32.const 40) (i32.const 2)))
    (local.set $a (array.new $arr (i32.const 1) (i32.const 5)))
    (array.set $arr (local.get $a) (i32.const 0) (i32.const 3))
    (table.set (i32.const 0) (local.get $p))
    (struct.set $pt 0 (local.get $p) (i32.const 41))
    (i32.add
      (i32.add (struct.get $pt 0 (local.get $p)) (struct.get $pt 1 (local.get $p)))
      (i32.add (array.len (local.get $a)) (i31.get_s (ref.i31 (i32.const -3)))))))"#,
        // 41 + 2 + 5 - 3
        answer: 45,
    },
    Probe {
        name: "simd",
        component: false,
        wat: r#"(module
  (memory 1 1)
  (func $div (param f32 f32) (result f32) (f32.div (local.get 0) (local.get 1)))
  (func (export "run") (result i32)
    (drop (i32.atomic.rmw.add (i32.const 0) (i32.const 5)))
    (i32.add
      (i32x4.extract_lane 2
        (i32x4.add (v128.const i32x4 1 2 3 4) (i32x4.splat (i32.atomic.load (i32.const 0)))))
      (i32.add
        (i32.trunc_f32_s (call $div (f32.const 9) (f32.const 2)))
        (i32x4.extract_lane 0
          (i32x4.relaxed_trunc_f32x4_s (f32x4.relaxed_madd
            (v128.const f32x4 2 2 2 2) (v128.const f32x4 3 3 3 3) (v128.const f32x4 1 1 1 1))))))))"#,
        // 3 + 5, 4, 2 * 3 + 1
        answer: 8 + 4 + 7,
    },
    Probe {
        name: "component",
        component: true,
        wat: r#"(component
  (core module $m
    (memory (export "memory") 1)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
    (func (export "len") (param i32 i32) (result i32) (local.get 1))
    (func (export "run") (result i32) (i32.const 42)))
  (core instance $i (instantiate $m))
  (alias core export $i "memory" (core memory $mem))
  (alias core export $i "realloc" (core func $realloc))
  (alias core export $i "len" (core func $len))
  (alias core export $i "run" (core func $run))
  (func (export "len") (param "s" string) (result u32)
    (canon lift (core func $len) (memory $mem) (realloc $realloc)))
  (func (export "run") (result s32) (canon lift (core func $run))))"#,
        answer: 42,
    },
];

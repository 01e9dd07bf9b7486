;; A counter: `increment` adds its optional argument (default 1) to the count, `get` returns it.
;; Storage: key "n" holds the count as 8 little-endian bytes.
(module
  (import "qenex" "arg_count" (func $arg_count (result i32)))
  (import "qenex" "arg_u64" (func $arg_u64 (param i32) (result i64)))
  (import "qenex" "storage_get" (func $storage_get (param i32 i32 i32 i32) (result i32)))
  (import "qenex" "storage_set" (func $storage_set (param i32 i32 i32 i32)))
  (import "qenex" "result_u64" (func $result_u64 (param i64)))
  (import "qenex" "emit" (func $emit (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "n")          ;; the storage key
  (data (i32.const 16) "incremented") ;; the event topic (11 bytes)

  ;; the stored count (0 when never set), read into offset 8
  (func $load (result i64)
    (if (i32.lt_s (call $storage_get (i32.const 0) (i32.const 1) (i32.const 8) (i32.const 8)) (i32.const 0))
      (then (return (i64.const 0))))
    (i64.load (i32.const 8)))

  (func (export "init")
    (i64.store (i32.const 8) (i64.const 0))
    (call $storage_set (i32.const 0) (i32.const 1) (i32.const 8) (i32.const 8)))

  (func (export "increment")
    (local $by i64)
    (local.set $by (i64.const 1))
    (if (i32.gt_s (call $arg_count) (i32.const 0))
      (then (local.set $by (call $arg_u64 (i32.const 0)))))
    (i64.store (i32.const 8) (i64.add (call $load) (local.get $by)))
    (call $storage_set (i32.const 0) (i32.const 1) (i32.const 8) (i32.const 8))
    (call $emit (i32.const 16) (i32.const 11) (i32.const 8) (i32.const 8))
    (call $result_u64 (i64.load (i32.const 8))))

  (func (export "get")
    (call $result_u64 (call $load))))

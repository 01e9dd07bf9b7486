;; An escrow of QNX between a depositor and a beneficiary, settled by an arbiter or by the deadline.
;;
;; Methods (arguments are the msgpack array of the call; an address is 20 bytes or qnx1 text):
;;   init    [arbiter, beneficiary, deadline_height]
;;           records the three; aborts if QNX is attached or the deadline is not after the
;;           current block height.
;;   deposit []  (attach QNX)
;;           the first deposit makes its caller the depositor and holds the attached QNX; later
;;           deposits from the same depositor add to the held amount (accumulate); anyone else's
;;           deposit aborts.  Aborts when nothing is attached, once settled, or after the
;;           deadline (block_height > deadline_height).  Emits "deposited".
;;   release []  only the arbiter: pays the whole held amount to the beneficiary.  Emits "released".
;;   refund  []  anyone, once block_height > deadline_height: pays the whole held amount back to
;;           the depositor.  Emits "refunded".
;;   status  []  query -> msgpack [state, amount, depositor, deadline_height]:
;;           state 0 = nothing deposited yet, 1 = holding, 2 = released, 3 = refunded;
;;           amount = the QNX deposited in base units (held in state 1, paid out in 2 and 3; an
;;           int up to 2^128, canonical msgpack); depositor = 20-byte bin, or nil in state 0.
;; The escrow settles once: after release or refund every deposit, release and refund aborts.
;; Between the deadline and settlement both release (arbiter) and refund (anyone) are possible;
;; the first one included wins.  release and refund abort when QNX is attached (it would be
;; stuck).  Only QNX is accounted: other tokens attached to any call stay in the contract.
;; Aborts (receipt reason "aborted: contract ... aborted: <message>"):
;;   "init: attach no QNX", "init: the deadline must be after the current height",
;;   "deposit: attach the QNX to hold", "deposit: the deadline has passed",
;;   "deposit: already settled", "deposit: only the depositor may add to the escrow",
;;   "release: attach no QNX", "release: only the arbiter may release", "release: nothing held",
;;   "release: already settled", "refund: attach no QNX", "refund: nothing held",
;;   "refund: already settled", "refund: the deadline has not passed".
;;
;; Storage:
;;   "c"  arbiter(20) ++ beneficiary(20) ++ deadline_height u64 LE(8)     (48 bytes, by init)
;;   "s"  state(1) ++ depositor(20) ++ amount u128 LE(16)                 (37 bytes, absent before
;;        the first deposit)
;;
;; Events (topic, data):
;;   "deposited"  depositor(20) ++ attached amount u128 LE(16) ++ amount now held u128 LE(16)
;;   "released"   beneficiary(20) ++ amount u128 LE(16)
;;   "refunded"   depositor(20) ++ amount u128 LE(16)
;;
;; Memory layout (every call runs in a fresh instance, so unwritten bytes are zero):
;;   0..     strings          1024 "c" value      1088 "s" value (state, depositor at 1089,
;;   amount at 1109)          1152 caller         1184 attached amount (16)
;;   1216    event data (52)  1280 status output
(module
  (import "qenex" "arg_u64" (func $arg_u64 (param i32) (result i64)))
  (import "qenex" "arg_address" (func $arg_address (param i32 i32)))
  (import "qenex" "caller" (func $caller (param i32)))
  (import "qenex" "attached" (func $attached (param i32 i32 i32)))
  (import "qenex" "block_height" (func $block_height (result i64)))
  (import "qenex" "storage_get" (func $storage_get (param i32 i32 i32 i32) (result i32)))
  (import "qenex" "storage_set" (func $storage_set (param i32 i32 i32 i32)))
  (import "qenex" "transfer" (func $transfer (param i32 i32 i32 i32)))
  (import "qenex" "result_set" (func $result_set (param i32 i32)))
  (import "qenex" "emit" (func $emit (param i32 i32 i32 i32)))
  (import "qenex" "abort" (func $abort (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "c")
  (data (i32.const 1) "s")
  (data (i32.const 2) "QNX")
  (data (i32.const 8) "deposited")   ;; 9
  (data (i32.const 24) "released")   ;; 8
  (data (i32.const 40) "refunded")   ;; 8
  (data (i32.const 64) "init: attach no QNX")                                   ;; 19
  (data (i32.const 96) "init: the deadline must be after the current height")   ;; 51
  (data (i32.const 160) "deposit: attach the QNX to hold")                      ;; 31
  (data (i32.const 192) "deposit: the deadline has passed")                     ;; 32
  (data (i32.const 224) "deposit: already settled")                             ;; 24
  (data (i32.const 256) "deposit: only the depositor may add to the escrow")    ;; 49
  (data (i32.const 320) "release: attach no QNX")                               ;; 22
  (data (i32.const 352) "release: only the arbiter may release")                ;; 37
  (data (i32.const 416) "release: nothing held")                                ;; 21
  (data (i32.const 448) "release: already settled")                             ;; 24
  (data (i32.const 480) "refund: attach no QNX")                                ;; 21
  (data (i32.const 512) "refund: nothing held")                                 ;; 20
  (data (i32.const 544) "refund: already settled")                              ;; 23
  (data (i32.const 576) "refund: the deadline has not passed")                  ;; 35

  (func $fail (param $msg i32) (param $len i32)
    (call $abort (local.get $msg) (local.get $len))
    (unreachable))

  (func $copy (param $dst i32) (param $src i32) (param $n i32)
    (block $done (loop $next
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (i32.store8 (i32.add (local.get $dst) (local.get $n)) (i32.load8_u (i32.add (local.get $src) (local.get $n))))
      (br $next))))

  (func $eq20 (param $a i32) (param $b i32) (result i32)
    (i32.and
      (i32.and (i64.eq (i64.load (local.get $a)) (i64.load (local.get $b)))
               (i64.eq (i64.load offset=8 (local.get $a)) (i64.load offset=8 (local.get $b))))
      (i32.eq (i32.load offset=16 (local.get $a)) (i32.load offset=16 (local.get $b)))))

  ;; the QNX attached to this call, at 1184; returns whether it is non-zero
  (func $attached_qnx (result i32)
    (call $attached (i32.const 2) (i32.const 3) (i32.const 1184))
    (i64.ne (i64.or (i64.load (i32.const 1184)) (i64.load (i32.const 1192))) (i64.const 0)))

  (func $load_config
    (drop (call $storage_get (i32.const 0) (i32.const 1) (i32.const 1024) (i32.const 48))))

  ;; the escrow's state (0 when nothing was ever deposited); its record is at 1088
  (func $load_state (result i32)
    (drop (call $storage_get (i32.const 1) (i32.const 1) (i32.const 1088) (i32.const 37)))
    (i32.load8_u (i32.const 1088)))

  (func $save_state (param $state i32)
    (i32.store8 (i32.const 1088) (local.get $state))
    (call $storage_set (i32.const 1) (i32.const 1) (i32.const 1088) (i32.const 37)))

  (func $past_deadline (result i32)
    (i64.gt_u (call $block_height) (i64.load (i32.const 1064))))

  ;; -- msgpack: canonical (smallest) unsigned integers, written at $p; each returns the end --

  (func $put_be (param $p i32) (param $v i64) (param $n i32) (result i32)
    (local $i i32)
    (local.set $i (local.get $n))
    (block $done (loop $next
      (br_if $done (i32.eqz (local.get $i)))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i64.store8 (i32.add (local.get $p) (local.get $i)) (local.get $v))
      (local.set $v (i64.shr_u (local.get $v) (i64.const 8)))
      (br $next)))
    (i32.add (local.get $p) (local.get $n)))

  (func $put_u64 (param $p i32) (param $v i64) (result i32)
    (if (i64.lt_u (local.get $v) (i64.const 0x80))
      (then (i64.store8 (local.get $p) (local.get $v))
            (return (i32.add (local.get $p) (i32.const 1)))))
    (if (i64.lt_u (local.get $v) (i64.const 0x100))
      (then (i32.store8 (local.get $p) (i32.const 0xcc))
            (return (call $put_be (i32.add (local.get $p) (i32.const 1)) (local.get $v) (i32.const 1)))))
    (if (i64.lt_u (local.get $v) (i64.const 0x10000))
      (then (i32.store8 (local.get $p) (i32.const 0xcd))
            (return (call $put_be (i32.add (local.get $p) (i32.const 1)) (local.get $v) (i32.const 2)))))
    (if (i64.lt_u (local.get $v) (i64.const 0x100000000))
      (then (i32.store8 (local.get $p) (i32.const 0xce))
            (return (call $put_be (i32.add (local.get $p) (i32.const 1)) (local.get $v) (i32.const 4)))))
    (i32.store8 (local.get $p) (i32.const 0xcf))
    (call $put_be (i32.add (local.get $p) (i32.const 1)) (local.get $v) (i32.const 8)))

  ;; a u128 (the 16 little-endian bytes at $src): a msgpack int below 2^64, above it the chain's
  ;; ext type 1 of minimal big-endian bytes (fixext 16 for 16 bytes, else ext 8)
  (func $put_u128 (param $p i32) (param $src i32) (result i32)
    (local $hi i64)
    (local $n i32)
    (local.set $hi (i64.load offset=8 (local.get $src)))
    (if (i64.eqz (local.get $hi))
      (then (return (call $put_u64 (local.get $p) (i64.load (local.get $src))))))
    (local.set $n (i32.sub (i32.const 8) (i32.wrap_i64 (i64.shr_u (i64.clz (local.get $hi)) (i64.const 3)))))
    (if (i32.eq (local.get $n) (i32.const 8))
      (then (i32.store8 (local.get $p) (i32.const 0xd8))
            (i32.store8 offset=1 (local.get $p) (i32.const 1))
            (local.set $p (i32.add (local.get $p) (i32.const 2))))
      (else (i32.store8 (local.get $p) (i32.const 0xc7))
            (i32.store8 offset=1 (local.get $p) (i32.add (local.get $n) (i32.const 8)))
            (i32.store8 offset=2 (local.get $p) (i32.const 1))
            (local.set $p (i32.add (local.get $p) (i32.const 3)))))
    (call $put_be (call $put_be (local.get $p) (local.get $hi) (local.get $n))
                  (i64.load (local.get $src)) (i32.const 8)))

  ;; -- methods --

  (func (export "init")
    (if (call $attached_qnx) (then (call $fail (i32.const 64) (i32.const 19))))
    (call $arg_address (i32.const 0) (i32.const 1024))
    (call $arg_address (i32.const 1) (i32.const 1044))
    (i64.store (i32.const 1064) (call $arg_u64 (i32.const 2)))
    (if (i64.ge_u (call $block_height) (i64.load (i32.const 1064)))
      (then (call $fail (i32.const 96) (i32.const 51))))
    (call $storage_set (i32.const 0) (i32.const 1) (i32.const 1024) (i32.const 48)))

  (func (export "deposit")
    (local $state i32)
    (local $lo i64)
    (if (i32.eqz (call $attached_qnx)) (then (call $fail (i32.const 160) (i32.const 31))))
    (call $load_config)
    (if (call $past_deadline) (then (call $fail (i32.const 192) (i32.const 32))))
    (local.set $state (call $load_state))
    (if (i32.ge_u (local.get $state) (i32.const 2)) (then (call $fail (i32.const 224) (i32.const 24))))
    (call $caller (i32.const 1152))
    (if (local.get $state)
      (then (if (i32.eqz (call $eq20 (i32.const 1152) (i32.const 1089)))
              (then (call $fail (i32.const 256) (i32.const 49)))))
      (else (call $copy (i32.const 1089) (i32.const 1152) (i32.const 20))))
    ;; amount += attached (u128, with the carry)
    (local.set $lo (i64.add (i64.load (i32.const 1109)) (i64.load (i32.const 1184))))
    (i64.store (i32.const 1117)
      (i64.add (i64.add (i64.load (i32.const 1117)) (i64.load (i32.const 1192)))
               (i64.extend_i32_u (i64.lt_u (local.get $lo) (i64.load (i32.const 1184))))))
    (i64.store (i32.const 1109) (local.get $lo))
    (call $save_state (i32.const 1))
    (call $copy (i32.const 1216) (i32.const 1089) (i32.const 20))
    (call $copy (i32.const 1236) (i32.const 1184) (i32.const 16))
    (call $copy (i32.const 1252) (i32.const 1109) (i32.const 16))
    (call $emit (i32.const 8) (i32.const 9) (i32.const 1216) (i32.const 52)))

  (func (export "release")
    (local $state i32)
    (if (call $attached_qnx) (then (call $fail (i32.const 320) (i32.const 22))))
    (call $load_config)
    (call $caller (i32.const 1152))
    (if (i32.eqz (call $eq20 (i32.const 1152) (i32.const 1024))) (then (call $fail (i32.const 352) (i32.const 37))))
    (local.set $state (call $load_state))
    (if (i32.eqz (local.get $state)) (then (call $fail (i32.const 416) (i32.const 21))))
    (if (i32.ge_u (local.get $state) (i32.const 2)) (then (call $fail (i32.const 448) (i32.const 24))))
    (call $transfer (i32.const 1044) (i32.const 2) (i32.const 3) (i32.const 1109))
    (call $save_state (i32.const 2))
    (call $copy (i32.const 1216) (i32.const 1044) (i32.const 20))
    (call $copy (i32.const 1236) (i32.const 1109) (i32.const 16))
    (call $emit (i32.const 24) (i32.const 8) (i32.const 1216) (i32.const 36)))

  (func (export "refund")
    (local $state i32)
    (if (call $attached_qnx) (then (call $fail (i32.const 480) (i32.const 21))))
    (local.set $state (call $load_state))
    (if (i32.eqz (local.get $state)) (then (call $fail (i32.const 512) (i32.const 20))))
    (if (i32.ge_u (local.get $state) (i32.const 2)) (then (call $fail (i32.const 544) (i32.const 23))))
    (call $load_config)
    (if (i32.eqz (call $past_deadline)) (then (call $fail (i32.const 576) (i32.const 35))))
    (call $transfer (i32.const 1089) (i32.const 2) (i32.const 3) (i32.const 1109))
    (call $save_state (i32.const 3))
    (call $emit (i32.const 40) (i32.const 8) (i32.const 1089) (i32.const 36)))  ;; depositor ++ amount

  (func (export "status")
    (local $p i32)
    (local $state i32)
    (call $load_config)
    (local.set $state (call $load_state))
    (i32.store8 (i32.const 1280) (i32.const 0x94))  ;; fixarray of 4
    (i32.store8 (i32.const 1281) (local.get $state))  ;; positive fixint
    (local.set $p (call $put_u128 (i32.const 1282) (i32.const 1109)))
    (if (local.get $state)
      (then (i32.store8 (local.get $p) (i32.const 0xc4))  ;; bin 8 of 20 bytes
            (i32.store8 offset=1 (local.get $p) (i32.const 20))
            (call $copy (i32.add (local.get $p) (i32.const 2)) (i32.const 1089) (i32.const 20))
            (local.set $p (i32.add (local.get $p) (i32.const 22))))
      (else (i32.store8 (local.get $p) (i32.const 0xc0))  ;; nil
            (local.set $p (i32.add (local.get $p) (i32.const 1)))))
    (local.set $p (call $put_u64 (local.get $p) (i64.load (i32.const 1064))))
    (call $result_set (i32.const 1280) (i32.sub (local.get $p) (i32.const 1280)))))

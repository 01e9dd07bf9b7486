;; A fungible token with allowances (ERC-20 shaped), amounts are u64.
;;
;; Methods (arguments are the msgpack array of the call; an address is 20 bytes or qnx1 text):
;;   init          [supply]               the deployer (caller of init) holds the whole supply;
;;                                         emits transfer(zero address -> deployer, supply)
;;   transfer      [to, amount]           moves amount from the caller to `to`; emits transfer
;;   approve       [spender, amount]      sets (overwrites) the caller's allowance for spender;
;;                                         emits approval
;;   transfer_from [owner, to, amount]    the caller spends amount of its allowance from owner
;;                                         and moves it from owner to `to`; emits transfer
;;   balance_of    [address]      query   -> u64 balance (0 for an unknown address)
;;   allowance     [owner, spender] query -> u64 allowance (0 when none was set)
;;   total_supply  []             query   -> u64 supply
;; Results are msgpack ints (result_u64); transfer, approve and transfer_from return nothing.
;; Aborts (receipt reason "aborted: contract ... aborted: <message>"):
;;   "transfer: insufficient balance", "transfer_from: insufficient allowance",
;;   "transfer_from: insufficient balance".
;; An allowance is always decreased by what transfer_from spends (no "infinite" allowance).
;; A zero amount is allowed (it writes the balances and emits the event like any other).
;; Balances cannot overflow: they sum to the supply, which is a u64.  Tokens attached to a call
;; (QNX or any other) stay in the contract's own balance: it never pays them out.
;;
;; Storage (values are u64 little-endian, 8 bytes):
;;   "s"                            the total supply
;;   "b" ++ address(20)             a balance (written once the address has held tokens)
;;   "a" ++ owner(20) ++ spender(20) an allowance (written by approve)
;;
;; Events (topic, data):
;;   "transfer"  from(20) ++ to(20) ++ amount u64 LE(8)        (from is 20 zero bytes at init)
;;   "approval"  owner(20) ++ spender(20) ++ amount u64 LE(8)
;;
;; Cost: a transfer is 8 host calls (caller, arg_address, arg_u64, two storage reads, two writes,
;; emit) and no loops; the module is kept small since gas is charged per byte of code instantiated.
;;
;; Memory layout (one page; every call runs in a fresh instance, so unwritten bytes are zero):
;;   0..    strings (topics, abort messages, the key "s")
;;   288    "b" ++ to(20)          the key of the receiving balance        (TO_KEY)
;;   320    "a" ++ owner ++ spender the allowance key, then the amount at 361: the approval event
;;   383    "b" ++ from(20)        the key of the paying balance; from(20) ++ to(20) ++ amount(8) at
;;          384..432 is the transfer event's data
;;   448    an 8-byte value read from or written to storage
(module
  (import "qenex" "arg_u64" (func $arg_u64 (param i32) (result i64)))
  (import "qenex" "arg_address" (func $arg_address (param i32 i32)))
  (import "qenex" "caller" (func $caller (param i32)))
  (import "qenex" "storage_get" (func $storage_get (param i32 i32 i32 i32) (result i32)))
  (import "qenex" "storage_set" (func $storage_set (param i32 i32 i32 i32)))
  (import "qenex" "result_u64" (func $result_u64 (param i64)))
  (import "qenex" "emit" (func $emit (param i32 i32 i32 i32)))
  (import "qenex" "abort" (func $abort (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "transfer")                               ;; 8
  (data (i32.const 8) "approval")                               ;; 8
  (data (i32.const 16) "s")                                     ;; 1
  (data (i32.const 32) "transfer: insufficient balance")        ;; 30
  (data (i32.const 64) "transfer_from: insufficient allowance") ;; 37
  (data (i32.const 112) "transfer_from: insufficient balance")  ;; 35
  (data (i32.const 288) "b")
  (data (i32.const 320) "a")
  (data (i32.const 383) "b")

  ;; the u64 stored under the key at $k (0 when absent)
  (func $get (param $k i32) (param $n i32) (result i64)
    (if (i32.lt_s (call $storage_get (local.get $k) (local.get $n) (i32.const 448) (i32.const 8)) (i32.const 0))
      (then (return (i64.const 0))))
    (i64.load (i32.const 448)))

  (func $set (param $k i32) (param $n i32) (param $v i64)
    (i64.store (i32.const 448) (local.get $v))
    (call $storage_set (local.get $k) (local.get $n) (i32.const 448) (i32.const 8)))

  ;; the transfer event: from is at 384 already; copy to (289) to 404 and put the amount at 424
  (func $emit_transfer (param $amount i64)
    (i64.store (i32.const 404) (i64.load (i32.const 289)))
    (i64.store (i32.const 412) (i64.load (i32.const 297)))
    (i32.store (i32.const 420) (i32.load (i32.const 305)))
    (i64.store (i32.const 424) (local.get $amount))
    (call $emit (i32.const 0) (i32.const 8) (i32.const 384) (i32.const 48)))

  ;; move $amount from the balance keyed at 383 to the one keyed at 288, or abort with the message
  (func $move (param $amount i64) (param $msg i32) (param $len i32)
    (local $bal i64)
    (local.set $bal (call $get (i32.const 383) (i32.const 21)))
    (if (i64.lt_u (local.get $bal) (local.get $amount))
      (then (call $abort (local.get $msg) (local.get $len)) (unreachable)))
    (call $set (i32.const 383) (i32.const 21) (i64.sub (local.get $bal) (local.get $amount)))
    ;; read after the write: a transfer to oneself sees its own debit
    (call $set (i32.const 288) (i32.const 21) (i64.add (call $get (i32.const 288) (i32.const 21)) (local.get $amount)))
    (call $emit_transfer (local.get $amount)))

  (func (export "init")
    (local $supply i64)
    (local.set $supply (call $arg_u64 (i32.const 0)))
    (call $caller (i32.const 289))
    (call $set (i32.const 288) (i32.const 21) (local.get $supply))
    (call $set (i32.const 16) (i32.const 1) (local.get $supply))
    (call $emit_transfer (local.get $supply)))  ;; from: 384..404 is still zero

  (func (export "transfer")
    (call $caller (i32.const 384))
    (call $arg_address (i32.const 0) (i32.const 289))
    (call $move (call $arg_u64 (i32.const 1)) (i32.const 32) (i32.const 30)))

  (func (export "approve")
    (call $caller (i32.const 321))
    (call $arg_address (i32.const 0) (i32.const 341))
    (i64.store (i32.const 361) (call $arg_u64 (i32.const 1)))
    (call $storage_set (i32.const 320) (i32.const 41) (i32.const 361) (i32.const 8))
    (call $emit (i32.const 8) (i32.const 8) (i32.const 321) (i32.const 48)))

  (func (export "transfer_from")
    (local $amount i64)
    (local $allowed i64)
    (call $caller (i32.const 341))
    (call $arg_address (i32.const 0) (i32.const 384))
    (call $arg_address (i32.const 1) (i32.const 289))
    (local.set $amount (call $arg_u64 (i32.const 2)))
    ;; the allowance key: owner (384) copied to 321, the caller (spender) is at 341
    (i64.store (i32.const 321) (i64.load (i32.const 384)))
    (i64.store (i32.const 329) (i64.load (i32.const 392)))
    (i32.store (i32.const 337) (i32.load (i32.const 400)))
    (local.set $allowed (call $get (i32.const 320) (i32.const 41)))
    (if (i64.lt_u (local.get $allowed) (local.get $amount))
      (then (call $abort (i32.const 64) (i32.const 37)) (unreachable)))
    (call $set (i32.const 320) (i32.const 41) (i64.sub (local.get $allowed) (local.get $amount)))
    (call $move (local.get $amount) (i32.const 112) (i32.const 35)))

  (func (export "balance_of")
    (call $arg_address (i32.const 0) (i32.const 289))
    (call $result_u64 (call $get (i32.const 288) (i32.const 21))))

  (func (export "allowance")
    (call $arg_address (i32.const 0) (i32.const 321))
    (call $arg_address (i32.const 1) (i32.const 341))
    (call $result_u64 (call $get (i32.const 320) (i32.const 41))))

  (func (export "total_supply")
    (call $result_u64 (call $get (i32.const 16) (i32.const 1)))))

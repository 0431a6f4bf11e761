//! The production object, `warden`: Warden's enforcing programs ([`entry`]), the object
//! the daemon loads and pins. The benchmark's programs are in an object of their own
//! (`warden-bench`, `bench.rs`), built from the same modules:
//!
//! | module      | what                                                            |
//! |-------------|-----------------------------------------------------------------|
//! | `entry`     | one thin program per hook and direction                          |
//! | `enforce`   | the per-packet path, as stages (parse, attribute, suspension, facts, blocks, SMTP, plan) |
//! | `parse`     | header parsing: one bounds-checked accessor, one pass, one result |
//! | `lookup`    | the tenant of an address or MAC (cuckoo tables in arrays)        |
//! | `neighbour` | ARP and neighbour discovery judged in full; what a suspended tenant keeps |
//! | `facts`     | what the detectors are told: contacts, answers, floods           |
//! | `capture`   | frames captured for evidence                                     |
//! | `police`    | token buckets (plans, SMTP rates, event budgets)                 |
//! | `clock`     | the packet's time, read once per jiffy per CPU                   |
//! | `hook`      | the hook's context, for the global functions                     |
//! | `maps`      | every map, declared from `warden_common::map`'s table            |
//! | `object`    | the license and the panic handler                                |
//!
//! Past the tenant's policy checks, the detection facts, blocks and frame capture run
//! in global BPF functions (`warden_facts_*`, `warden_blocked_*`, `warden_capture_*`),
//! which the verifier checks once each rather than on every path through the inlined
//! entry (see `facts`).
//!
//! To a tenant, parsing fails open: a frame Warden cannot parse is passed and counted
//! as malformed, because dropping traffic we do not understand would make Warden the
//! outage; a frame it does not understand passes too. From a tenant it fails closed: a
//! malformed frame, or one the programs do not understand (another ethertype, a third
//! VLAN tag, ARP for another hardware type) and the interface does not pass, is
//! dropped, since what it hides could get around policy. Enforcement fails closed where
//! the policy says so: a suspended tenant, a spoofed sender or traffic over plan is
//! dropped.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![feature(asm_experimental_arch)]
#![allow(internal_features)]
#![deny(clippy::undocumented_unsafe_blocks)]

// The modules of both objects (`bench.rs` declares the same list).
mod capture;
mod clock;
mod enforce;
mod entry;
mod facts;
mod hook;
mod lookup;
mod maps;
mod neighbour;
mod object;
mod parse;
mod police;

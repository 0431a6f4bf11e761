//! Empty library target: it lets `userspace/build.rs` depend on this crate so cargo
//! rebuilds the eBPF objects whenever this crate or warden-common changes.
#![no_std]

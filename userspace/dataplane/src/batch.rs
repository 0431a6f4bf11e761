//! The kernel's batch map commands, which aya 0.14 does not wrap: one syscall for many
//! entries of an array, where aya's per-entry calls cost one each.

use std::io;

/// `BPF_MAP_LOOKUP_BATCH` of `enum bpf_cmd`.
pub const LOOKUP: libc::c_long = 24;
/// `BPF_MAP_UPDATE_BATCH` of `enum bpf_cmd`.
pub const UPDATE: libc::c_long = 26;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
pub struct BatchAttr {
    pub in_batch: u64,
    pub out_batch: u64,
    pub keys: u64,
    pub values: u64,
    pub count: u32,
    pub map_fd: u32,
    pub elem_flags: u64,
    pub flags: u64,
}

/// Runs the batch command `cmd` with `attr`; the kernel writes back `attr.count`.
///
/// # Safety
/// `attr`'s pointers must address buffers that are valid, for the whole call, for
/// `attr.count` keys and values of the map's sizes (per-CPU values: every CPU's), and
/// `in_batch`/`out_batch` 0 or valid for one key.
pub unsafe fn run(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: the caller's contract; the size is the struct's.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

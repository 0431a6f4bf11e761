//! The kernel commands that put a link's earlier program back, which aya 0.14 does not
//! offer for a program it did not load: open a pinned link, open a program by id, and
//! swap the program under a link (`BPF_LINK_UPDATE`, atomic like the swap that replaced it).

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    path::Path,
};

/// `BPF_OBJ_GET` of `enum bpf_cmd`.
const OBJ_GET: libc::c_long = 7;
/// `BPF_PROG_GET_FD_BY_ID` of `enum bpf_cmd`.
const PROG_GET_FD_BY_ID: libc::c_long = 13;
/// `BPF_LINK_UPDATE` of `enum bpf_cmd`.
const LINK_UPDATE: libc::c_long = 29;

/// The `BPF_OBJ_*` member of `union bpf_attr`.
#[repr(C)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

/// The `*_GET_FD_BY_ID` member of `union bpf_attr`.
#[repr(C)]
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// The `link_update` member of `union bpf_attr`.
#[repr(C)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// Runs `cmd` with `attr`; returns the syscall's non-negative result.
///
/// # Safety
/// `attr` must be the `union bpf_attr` member `cmd` reads, its pointers valid for the call.
unsafe fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: the caller's contract; the size is the member's.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, std::mem::size_of::<A>()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A file descriptor the kernel just returned, owned from now on.
fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("file descriptor out of range"))?;
    // SAFETY: the kernel returned this new descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the object (here: a link) pinned at `path`.
pub fn open_pinned(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut attr = ObjAttr {
        pathname: c.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
        _pad: 0,
    };
    // SAFETY: `pathname` points at the NUL-terminated `c`, alive for the call.
    owned(unsafe { bpf(OBJ_GET, &mut attr) }?)
}

/// Opens the loaded program with id `id`.
pub fn open_program(id: u32) -> io::Result<OwnedFd> {
    let mut attr = IdAttr {
        id,
        next_id: 0,
        open_flags: 0,
    };
    // SAFETY: the member holds no pointers.
    owned(unsafe { bpf(PROG_GET_FD_BY_ID, &mut attr) }?)
}

/// Makes the link `link` run `program` (in one step: no packet sees neither).
pub fn update(link: BorrowedFd<'_>, program: BorrowedFd<'_>) -> io::Result<()> {
    let fd = |f: BorrowedFd<'_>| u32::try_from(f.as_raw_fd()).map_err(io::Error::other);
    let mut attr = LinkUpdateAttr {
        link_fd: fd(link)?,
        new_prog_fd: fd(program)?,
        flags: 0,
        old_prog_fd: 0,
    };
    // SAFETY: the member holds no pointers; both descriptors are open for the call.
    unsafe { bpf(LINK_UPDATE, &mut attr) }.map(drop)
}

//! What every object of this crate carries besides its programs.

/// The license the kernel checks the programs against: GPL-compatible, as the kernel
/// asks of programs that call its GPL-only helpers, and the license of this crate and
/// warden-common, whose code is linked into the object (`MIT OR GPL-2.0`; the daemon,
/// which runs in user space, is Apache-2.0).
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

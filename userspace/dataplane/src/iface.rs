//! What the programs need of an interface before anything is attached to it: that it
//! exists, and that its frames fit the XDP programs.
//!
//! The XDP programs are not frags-aware (they read one linear buffer and are loaded
//! without `BPF_F_XDP_HAS_FRAGS`), so in native mode the kernel only attaches them where
//! every frame fits in one page: the page less the XDP headroom (256 bytes) and the
//! `skb_shared_info` kept at its end (320 bytes on 64-bit kernels), less the Ethernet
//! header the MTU does not count. With 4 KiB pages that is an MTU of 3506, measured on
//! veth (the same rule as virtio_net; some NIC drivers stop lower, and their refusal is
//! reported when attaching). A veth refuses past it with `ERANGE` ("Numerical result out
//! of range"), judged on its peer's MTU. While a program is attached the kernel holds the
//! limit itself: a veth's peer cannot raise its MTU past it ("mtu greater than device
//! maximum"; the veth's own MTU can be raised, its XDP seeing only what the peer sends);
//! on a NIC that is up to the driver, which generally refuses an MTU its attached
//! program cannot take.
//!
//! The check here reads the interface's own MTU (what a NIC receives): a veth whose own
//! MTU is large is refused even if its peer's is small, and one whose peer's is large
//! passes and is refused by the kernel when attaching.

use std::io;
use std::net::IpAddr;

/// `XDP_PACKET_HEADROOM`: bytes the kernel keeps in front of a frame for XDP.
const XDP_HEADROOM: u32 = 256;
/// `SKB_DATA_ALIGN(sizeof(struct skb_shared_info))` on 64-bit kernels: bytes at the end
/// of the page.
const SHARED_INFO: u32 = 320;
/// `ETH_HLEN`: the Ethernet header, which the MTU does not count.
const ETH_HLEN: u32 = 14;

/// The largest MTU the XDP programs attach at: a frame must fit in one page (see the
/// module documentation). 3506 with 4 KiB pages.
pub fn xdp_max_mtu() -> u32 {
    page_size().saturating_sub(XDP_HEADROOM + SHARED_INFO + ETH_HLEN)
}

fn page_size() -> u32 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// The MTU of interface `name` in this process's network namespace, or `None` when it
/// has no such interface.
pub fn mtu(name: &str) -> io::Result<Option<u32>> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Ok(None);
    }
    // SAFETY: socket has no memory preconditions; the result is checked below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a socket we just opened and own alone.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value of it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads the NUL-terminated name (shorter than IFNAMSIZ, the rest
    // zeroed) and writes only `ifr_ifru.ifru_mtu` of the request we own.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFMTU, &mut req) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODEV) => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: the kernel filled `ifru_mtu` for SIOCGIFMTU.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    Ok(Some(u32::try_from(mtu).unwrap_or(0)))
}

/// Whether the programs can be attached to `name` as far as can be known before trying:
/// an interface of this machine whose MTU is above [`xdp_max_mtu`] is refused, with the
/// reason. One that does not exist here passes when `must_exist` is false (`warden
/// policy check` may run on another machine than the daemon).
///
/// `Ok` holds the IPv4 and IPv6 addresses configured on it (none when it is not here),
/// which the policy checks a host-mode port binding against.
pub fn check(name: &str, must_exist: bool) -> Result<Vec<IpAddr>, String> {
    match mtu(name) {
        Ok(Some(mtu)) if mtu > xdp_max_mtu() => Err(too_large(name, mtu)),
        Ok(Some(_)) => {
            addresses(name).map_err(|e| format!("reading the addresses of interface {name}: {e}"))
        }
        Ok(None) if must_exist => Err(format!(
            "interface {name} does not exist on this machine (in this network namespace)"
        )),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(format!("reading the MTU of interface {name}: {e}")),
    }
}

/// The IPv4 and IPv6 addresses configured on interface `name` (getifaddrs).
pub fn addresses(name: &str) -> io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list it allocates into `head`; freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut at = head;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*at };
        at = entry.ifa_next;
        // SAFETY: a non-null ifa_name is a NUL-terminated string owned by the list.
        let ifname = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) };
        if entry.ifa_addr.is_null() || ifname.to_bytes() != name.as_bytes() {
            continue;
        }
        // SAFETY: a non-null ifa_addr points at a sockaddr of the family it names, at
        // least as large as that family's sockaddr type.
        unsafe {
            match i32::from((*entry.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(entry.ifa_addr as *const libc::sockaddr_in);
                    found.push(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()));
                }
                libc::AF_INET6 => {
                    let sin6 = &*(entry.ifa_addr as *const libc::sockaddr_in6);
                    found.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                }
                _ => {}
            }
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once, after the last use.
    unsafe { libc::freeifaddrs(head) };
    Ok(found)
}

/// Why an interface with this MTU is refused.
pub fn too_large(name: &str, mtu: u32) -> String {
    let max = xdp_max_mtu();
    format!(
        "interface {name} has MTU {mtu}, above {max}, the largest Warden's XDP programs \
         attach at (they do not handle XDP fragments, so a frame must fit in one {}-byte \
         page): lower its MTU to {max} or less, or leave it out",
        page_size()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_a_page_less_headroom_shared_info_and_ethernet_header() {
        if page_size() == 4096 {
            // Measured on 6.18: a veth whose peer has MTU 3506 takes the programs, 3507
            // is refused with ERANGE.
            assert_eq!(xdp_max_mtu(), 3506);
        }
        assert!(xdp_max_mtu() >= 1500);
    }

    #[test]
    fn loopback_has_an_mtu_and_a_missing_interface_has_none() {
        assert!(matches!(mtu("lo"), Ok(Some(m)) if m > 0));
        assert_eq!(mtu("wd-no-such0").expect("an answer"), None);
        assert_eq!(mtu("").expect("an answer"), None);
        assert_eq!(mtu("a-name-that-is-too-long").expect("an answer"), None);
        let lo = addresses("lo").expect("lo's addresses");
        assert!(
            lo.is_empty() || lo.iter().all(|a| a.is_loopback()),
            "{lo:?}"
        );
        assert!(check("wd-no-such0", false).is_ok());
        let missing = check("wd-no-such0", true).expect_err("must exist");
        assert!(missing.contains("does not exist"), "{missing}");
    }

    #[test]
    fn the_refusal_names_the_interface_its_mtu_and_the_limit() {
        let why = too_large("eth7", 9000);
        assert!(
            why.starts_with("interface eth7 has MTU 9000, above "),
            "{why}"
        );
        assert!(why.contains(&xdp_max_mtu().to_string()), "{why}");
    }
}

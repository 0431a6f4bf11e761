//! The lab's names and addresses: MAC address text, the test address ranges every
//! address is checked against, and interface names.

use std::net::IpAddr;

use anyhow::{ensure, Context as _, Result};

use super::IFNAME_MAX;

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts
            .next()
            .with_context(|| format!("MAC {text:?} is too short"))?;
        *byte = u8::from_str_radix(part, 16).with_context(|| format!("bad MAC {text:?}"))?;
    }
    ensure!(parts.next().is_none(), "MAC {text:?} is too long");
    Ok(mac)
}

/// Accepts `ADDR` or `ADDR/LEN` only inside 198.18.0.0/15 or 2001:db8::/32.
pub fn check_test_address(cidr: &str) -> Result<()> {
    let addr = cidr.split('/').next().unwrap_or(cidr);
    let ip: IpAddr = addr
        .parse()
        .with_context(|| format!("{cidr:?} is not an IP address"))?;
    let allowed = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 198 && (o[1] == 18 || o[1] == 19)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] == 0x2001 && s[1] == 0x0db8
        }
    };
    ensure!(
        allowed,
        "{cidr} is outside the test ranges 198.18.0.0/15 and 2001:db8::/32"
    );
    Ok(())
}

pub(super) fn check_ifname(ifname: &str) -> Result<()> {
    ensure!(
        !ifname.is_empty()
            && ifname.len() <= IFNAME_MAX
            && ifname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "interface name {ifname:?} must be 1-{IFNAME_MAX} letters, digits, '-' or '_'"
    );
    Ok(())
}

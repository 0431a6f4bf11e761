//! Text forms of the policy's values: rates, sizes, durations, connection rates, MACs and
//! CIDRs. Pure functions from text to value or to the message a user should read.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

/// A family of units for one kind of quantity.
struct Units {
    /// What the quantity is called in messages.
    noun: &'static str,
    /// A valid example, shown when the unit is missing.
    example: &'static str,
    /// Unit suffix and how many base units (bits, bytes, nanoseconds) it is.
    table: &'static [(&'static str, u128)],
}

const RATE: Units = Units {
    noun: "rate",
    example: "100Mbit",
    table: &[
        ("bit", 1),
        ("kbit", 1_000),
        ("Mbit", 1_000_000),
        ("Gbit", 1_000_000_000),
        ("Tbit", 1_000_000_000_000),
        ("bps", 1),
        ("kbps", 1_000),
        ("Kbps", 1_000),
        ("Mbps", 1_000_000),
        ("Gbps", 1_000_000_000),
        ("Tbps", 1_000_000_000_000),
    ],
};

const SIZE: Units = Units {
    noun: "size",
    example: "256KiB",
    table: &[
        ("B", 1),
        ("KB", 1_000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
    ],
};

const NANOS_PER_SEC: u128 = 1_000_000_000;

const DURATION: Units = Units {
    noun: "duration",
    example: "30s",
    table: &[
        ("ms", NANOS_PER_SEC / 1_000),
        ("s", NANOS_PER_SEC),
        ("m", 60 * NANOS_PER_SEC),
        ("h", 3_600 * NANOS_PER_SEC),
        ("d", 86_400 * NANOS_PER_SEC),
    ],
};

/// A bandwidth such as `100Mbit` or `1.5Gbit`, in bits per second.
pub(super) fn rate(text: &str) -> Result<u64, String> {
    quantity(text, &RATE)
}

/// A byte count such as `256KiB`.
pub(super) fn size(text: &str) -> Result<u64, String> {
    quantity(text, &SIZE)
}

/// A duration such as `500ms`, `30s`, `5m`, `2h` or `1d`.
pub(super) fn duration(text: &str) -> Result<Duration, String> {
    quantity(text, &DURATION).map(Duration::from_nanos)
}

/// A rate of events such as `10/min`, in events per second.
pub(super) fn per_second(text: &str) -> Result<f64, String> {
    let (number, unit) = text
        .split_once('/')
        .ok_or_else(|| format!("expected a rate such as 10/min, found `{text}`"))?;
    let seconds = match unit.trim() {
        "s" => 1.0,
        "min" => 60.0,
        "h" => 3_600.0,
        other => {
            return Err(format!(
                "unknown unit `/{other}` in `{text}`; expected /s, /min or /h"
            ))
        }
    };
    let (negative, digits) = split_sign(number.trim());
    let (mantissa, scale) =
        decimal(digits).ok_or_else(|| format!("expected a rate such as 10/min, found `{text}`"))?;
    if negative || mantissa == 0 {
        return Err(format!("rate must be greater than zero, found `{text}`"));
    }
    // Precision is ample: a connection rate is a policing threshold, not an amount.
    let count = mantissa as f64 / 10f64.powi(scale as i32);
    Ok(count / seconds)
}

/// A probability or ratio, strictly between 0 and 1.
pub(super) fn ratio(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("expected a number between 0 and 1, found `{text}`"))?;
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(format!(
            "must be between 0 and 1 (both excluded), found `{text}`"
        ))
    }
}

/// A share from 0 to 1, both included (0: any share).
pub(super) fn share(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("expected a number from 0 to 1, found `{text}`"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("must be from 0 to 1, found `{text}`"))
    }
}

/// `true` or `false` (YAML's other spellings, `yes`, `on` ..., are refused as ambiguous).
pub(super) fn boolean(text: &str) -> Result<bool, String> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected true or false, found `{text}`")),
    }
}

/// A webhook URL: `http://HOST[:PORT]/PATH` (this build sends without TLS, so `https` is
/// refused rather than failing at every delivery).
pub(super) fn webhook_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("invalid webhook URL `{text}`: {e}"))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(format!(
                "webhook `{text}`: https is not supported by this build; use an http:// \
                 endpoint (e.g. a local TLS relay)"
            ))
        }
        other => {
            return Err(format!(
                "webhook `{text}`: scheme `{other}` is not supported; use http://"
            ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("webhook `{text}` has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "webhook `{text}`: credentials in the URL are not allowed (they would show in \
             status and logs)"
        ));
    }
    Ok(text.to_owned())
}

/// A rate of events such as `6/min` ([`per_second`]), or `0`: off.
pub(super) fn per_second_or_off(text: &str) -> Result<f64, String> {
    if text.trim() == "0" {
        return Ok(0.0);
    }
    per_second(text)
}

/// A whole number greater than zero.
pub(super) fn count<T: TryFrom<u64>>(text: &str) -> Result<T, String> {
    let (negative, digits) = split_sign(text);
    let value: u64 = match digits.parse() {
        Ok(value) => value,
        Err(_) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(format!("`{text}` is too large"))
        }
        Err(_) => return Err(format!("expected a whole number, found `{text}`")),
    };
    if negative || value == 0 {
        return Err(format!("must be greater than zero, found `{text}`"));
    }
    T::try_from(value).map_err(|_| format!("`{text}` is too large"))
}

/// An Ethernet address `aa:bb:cc:dd:ee:ff` (or with `-`), which must be a unicast address
/// a NIC can own.
pub(super) fn mac(text: &str) -> Result<[u8; 6], String> {
    let invalid =
        || format!("invalid MAC `{text}`; expected six hex pairs such as 02:00:5e:10:00:01");
    let separator = if text.contains('-') { '-' } else { ':' };
    let mut mac = [0u8; 6];
    let mut parts = text.split(separator);
    for byte in &mut mac {
        let part = parts.next().filter(|p| p.len() == 2).ok_or_else(invalid)?;
        *byte = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
    }
    if parts.next().is_some() {
        return Err(invalid());
    }
    let shown = format_mac(&mac);
    if mac == [0xff; 6] {
        Err(format!(
            "MAC {shown} is the broadcast address; a tenant MAC must be unicast"
        ))
    } else if mac[0] & 1 == 1 {
        Err(format!(
            "MAC {shown} is a multicast address; a tenant MAC must be unicast"
        ))
    } else if mac == [0; 6] {
        Err(format!("MAC {shown} is all zeros"))
    } else {
        Ok(mac)
    }
}

/// `aa:bb:cc:dd:ee:ff`, lower case.
pub(super) fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An IPv4 or IPv6 network in CIDR notation with no host bits set; a bare address is a
/// single host (/32 or /128).
pub(super) fn cidr(text: &str) -> Result<IpNet, String> {
    let net = match (text.parse::<IpNet>(), text.parse::<IpAddr>()) {
        (Ok(net), _) => net,
        (_, Ok(addr)) => IpNet::from(addr),
        _ => {
            return Err(format!(
                "invalid CIDR `{text}`; expected an address or network such as 198.18.1.0/24 or 2001:db8::/48"
            ))
        }
    };
    if net.trunc() == net {
        Ok(net)
    } else {
        Err(format!("host bits set, did you mean {}?", net.trunc()))
    }
}

/// `IP:PORT`, IPv6 in brackets.
pub(super) fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        format!("expected IP:PORT such as 127.0.0.1:9477 or \"[::1]:9477\", found `{text}`")
    })?;
    if addr.port() == 0 {
        return Err("port must not be 0".to_owned());
    }
    Ok(addr)
}

/// A number with a unit from `units`, in the family's base unit.
fn quantity(text: &str, units: &Units) -> Result<u64, String> {
    let Units {
        noun,
        example,
        table,
    } = units;
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+')))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let spaced = unit.starts_with(char::is_whitespace);
    let unit = unit.trim_start();
    let (negative, digits) = split_sign(number);
    let (mantissa, scale) = decimal(digits)
        .ok_or_else(|| format!("expected a {noun} such as {example}, found `{text}`"))?;
    if unit.is_empty() {
        return Err(format!("missing unit, e.g. {example}"));
    }
    let Some(&(_, per_unit)) = table.iter().find(|(name, _)| *name == unit) else {
        let names: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
        return Err(format!(
            "unknown unit `{unit}` in `{text}`; expected one of: {}",
            names.join(", ")
        ));
    };
    if spaced {
        // `5 Mbit` reads fine to a person but is written `5Mbit` everywhere else
        // (the docs, the API's output): one spelling, said so, not silently taken.
        return Err(format!(
            "no space between the number and the unit: write `{number}{unit}`"
        ));
    }
    if negative || mantissa == 0 {
        return Err(format!("{noun} must be greater than zero, found `{text}`"));
    }
    let out_of_range = || format!("{noun} `{text}` is out of range");
    let divisor = 10u128.checked_pow(scale).ok_or_else(out_of_range)?;
    let scaled = mantissa.checked_mul(per_unit).ok_or_else(out_of_range)?;
    // Round to the nearest base unit: `1.5bit` is not a thing, but rejecting it helps no one.
    let value = (scaled + divisor / 2) / divisor;
    if value == 0 {
        return Err(format!("{noun} `{text}` rounds to zero"));
    }
    u64::try_from(value).map_err(|_| out_of_range())
}

/// Splits a leading sign off a number.
fn split_sign(text: &str) -> (bool, &str) {
    match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    }
}

/// An unsigned decimal `123` or `1.25` as mantissa and number of fraction digits.
fn decimal(text: &str) -> Option<(u128, u32)> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = || whole.bytes().chain(fraction.bytes());
    if digits().next().is_none() || !digits().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mantissa = digits().try_fold(0u128, |acc, b| {
        acc.checked_mul(10)?.checked_add(u128::from(b - b'0'))
    })?;
    Some((mantissa, u32::try_from(fraction.len()).ok()?))
}

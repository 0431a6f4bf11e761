//! Flag evidence as a classic libpcap file, for tcpdump and Wireshark, written with the
//! `pcap-file` crate.
//!
//! Format: a 24-byte global header (magic `0xa1b23c4d`: nanosecond timestamps, version
//! 2.4, snap length 65535, link type Ethernet) and per sample a 16-byte record header
//! (seconds, nanoseconds, captured length, original length) followed by the captured
//! bytes. Written little-endian; readers (tcpdump, Wireshark, libpcap >= 1.5) detect the
//! byte order and the resolution from the magic. Each frame keeps the kernel's own time.

use std::io::{self, Write};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};
use warden_policy::flag::Sample;

/// The snap length written in the header; longer samples are cut to it.
pub const PCAP_SNAPLEN: u32 = 65_535;

/// Writes `samples` to `w` as a pcap file.
///
/// A timestamp before 1970 or after 2106 (outside the format's unsigned 32-bit seconds) is
/// written as the nearest one it can hold.
pub fn write_pcap(w: impl Write, samples: &[Sample]) -> io::Result<()> {
    let header = PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0, // timestamps are UTC
        ts_accuracy: 0,
        snaplen: PCAP_SNAPLEN,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::NanoSecond,
        endianness: Endianness::Little,
    };
    let mut writer = PcapWriter::with_header(w, header).map_err(io_error)?;
    for s in samples {
        let at = match u64::try_from(s.at_ns) {
            Err(_) => Duration::ZERO,
            Ok(ns) => Duration::from_nanos(ns).min(Duration::new(u64::from(u32::MAX), 999_999_999)),
        };
        let data = &s.data[..s.data.len().min(PCAP_SNAPLEN as usize)];
        let incl_len = data.len() as u32; // at most PCAP_SNAPLEN
        let packet = PcapPacket::new(at, s.orig_len.max(incl_len), data);
        writer.write_packet(&packet).map_err(io_error)?;
    }
    writer.into_writer().flush()
}

/// The writer's own error as it is; a refused field (which the clamps above rule out)
/// as invalid data.
fn io_error(e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + UDP frame from 198.18.0.1:4000 to 198.18.0.2:53, `payload` long.
    fn udp_frame(payload: usize) -> Vec<u8> {
        let ip_len = 20 + 8 + payload;
        let mut f = Vec::new();
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let mut ip = vec![
            0x45,
            0,
            (ip_len >> 8) as u8,
            ip_len as u8,
            0,
            1,
            0,
            0,
            64,
            17,
            0,
            0,
            198,
            18,
            0,
            1,
            198,
            18,
            0,
            2,
        ];
        let sum = ip
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum::<u32>();
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&ip);
        let udp_len = (8 + payload) as u16;
        f.extend_from_slice(&4000u16.to_be_bytes());
        f.extend_from_slice(&53u16.to_be_bytes());
        f.extend_from_slice(&udp_len.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend(std::iter::repeat_n(0xab, payload));
        f
    }

    fn samples() -> Vec<Sample> {
        let full = udp_frame(100);
        vec![
            // Headers only: 42 of 142 bytes captured.
            Sample {
                at_ns: 1_700_000_000_123_456_789,
                data: full[..42].to_vec(),
                orig_len: full.len() as u32,
            },
            Sample {
                at_ns: 1_700_000_000_123_457_001,
                data: udp_frame(4),
                orig_len: 46,
            },
        ]
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
    }

    #[test]
    fn write_pcap_writes_header_and_records_that_parse_back() {
        let samples = samples();
        let mut out = Vec::new();
        write_pcap(&mut out, &samples).expect("write to a Vec");

        assert_eq!(u32_at(&out, 0), 0xa1b2_3c4d, "nanosecond magic");
        assert_eq!(&out[4..8], &[2, 0, 4, 0], "version 2.4");
        assert_eq!(u32_at(&out, 16), 65_535, "snaplen");
        assert_eq!(u32_at(&out, 20), 1, "LINKTYPE_ETHERNET");

        let mut at = 24;
        for s in &samples {
            let (sec, nsec) = (u32_at(&out, at), u32_at(&out, at + 4));
            let (incl, orig) = (u32_at(&out, at + 8), u32_at(&out, at + 12));
            // Two frames 212 ns apart stay 212 ns apart.
            assert_eq!(i64::from(sec) * 1_000_000_000 + i64::from(nsec), s.at_ns);
            assert_eq!(incl as usize, s.data.len());
            assert_eq!(orig, s.orig_len);
            at += 16;
            assert_eq!(&out[at..at + incl as usize], &s.data[..]);
            at += incl as usize;
        }
        assert_eq!(at, out.len(), "no trailing bytes");
    }

    #[test]
    fn write_pcap_clamps_timestamps_and_keeps_orig_len_at_least_captured() {
        let mut out = Vec::new();
        let s = Sample {
            at_ns: -5,
            data: vec![0; 20],
            orig_len: 3,
        };
        write_pcap(&mut out, &[s]).expect("write to a Vec");
        assert_eq!((u32_at(&out, 24), u32_at(&out, 28)), (0, 0));
        assert_eq!((u32_at(&out, 32), u32_at(&out, 36)), (20, 20));
    }

    #[test]
    fn tcpdump_reads_both_packets() {
        let Some(tcpdump) = ["/usr/sbin/tcpdump", "/usr/bin/tcpdump"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
        else {
            eprintln!("skipping the tcpdump check: tcpdump is not installed");
            return;
        };
        let dir = tempfile::tempdir().expect("create temp dir");
        let path = dir.path().join("evidence.pcap");
        let file = std::fs::File::create(&path).expect("create pcap file");
        write_pcap(std::io::BufWriter::new(file), &samples()).expect("write pcap file");
        let out = std::process::Command::new(tcpdump)
            .args(["-nn", "-tt", "--time-stamp-precision=nano", "-r"])
            .arg(&path)
            .output()
            .expect("run tcpdump");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "tcpdump failed: {stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 2, "stdout: {stdout}\nstderr: {stderr}");
        for line in &lines {
            assert!(line.contains("198.18.0.1.4000 > 198.18.0.2.53"), "{line}");
        }
        // Each frame's own nanoseconds, 212 ns apart.
        assert!(
            lines[0].starts_with("1700000000.123456789 "),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("1700000000.123457001 "),
            "{}",
            lines[1]
        );
    }
}

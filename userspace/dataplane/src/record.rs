//! The suspension record: which tenants are suspended (with their addresses, reason, actor,
//! time) at which suspension sequence number, kept in a map pinned beside the programs'
//! maps (`maps/SUSPENSION_RECORD`) that the programs never read. It lives exactly as long
//! as the pinned enforcement does (a reboot or `warden uninstall` removes both), so the
//! daemon can tell which suspensions the kernel still enforces when the state database is
//! gone: the programs' own per-slot `SUSPENDED` flags cannot name a tenant without the
//! database's tenant index.
//!
//! The content is opaque bytes here (the daemon writes JSON, `crate::suspension`), split
//! into 4 KiB values of a hash map without preallocation (a few KiB of kernel memory for a
//! few suspensions, at most 4 MiB). Two halves alternate: a write fills the half not in
//! use, then switches the header (one element update, atomic for readers) to it, so a
//! crash mid-write leaves the previous record whole. The header carries a SHA-256 of the
//! content.

use std::path::{Path, PathBuf};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, MapError, MapType};
use sha2::{Digest as _, Sha256};

use super::{DataplaneError, Result};

/// File name of the pin under `<bpffs>/maps`.
pub const PIN: &str = "SUSPENSION_RECORD";
/// The map's name in the kernel (bpftool), at most 15 characters.
const KERNEL_NAME: &str = "WARDEN_SUSPREC";
/// Bytes per value.
pub const CHUNK: usize = 4096;
/// Values per half: the largest record is `CHUNK * MAX_CHUNKS` bytes (4 MiB).
pub const MAX_CHUNKS: u32 = 1024;
const MAX_ENTRIES: u32 = 1 + 2 * MAX_CHUNKS;
const HEADER_KEY: u32 = 0;
const MAGIC: &[u8; 8] = b"WRDNSUSP";
const FORMAT: u32 = 1;
/// `BPF_MAP_TYPE_HASH` and `BPF_F_NO_PREALLOC` (uapi/linux/bpf.h).
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_F_NO_PREALLOC: u32 = 1;

type Chunk = [u8; CHUNK];

fn chunk_key(half: u32, i: u32) -> u32 {
    ((half + 1) << 20) | i
}

fn half_of(key: u32) -> Option<(u32, u32)> {
    match key >> 20 {
        1 => Some((0, key & 0xfffff)),
        2 => Some((1, key & 0xfffff)),
        _ => None,
    }
}

/// The header: which half holds the record, its sequence number, length and digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    half: u32,
    seq: u64,
    len: u64,
    digest: [u8; 32],
}

impl Header {
    fn encode(&self) -> Chunk {
        let mut c = [0u8; CHUNK];
        c[0..8].copy_from_slice(MAGIC);
        c[8..12].copy_from_slice(&FORMAT.to_le_bytes());
        c[12..16].copy_from_slice(&self.half.to_le_bytes());
        c[16..24].copy_from_slice(&self.seq.to_le_bytes());
        c[24..32].copy_from_slice(&self.len.to_le_bytes());
        c[32..64].copy_from_slice(&self.digest);
        c
    }

    fn decode(c: &Chunk) -> std::result::Result<Header, String> {
        if &c[0..8] != MAGIC {
            return Err("bad magic".into());
        }
        let u32_at = |i: usize| u32::from_le_bytes(c[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().expect("8 bytes"));
        let format = u32_at(8);
        if format != FORMAT {
            return Err(format!(
                "format {format}, this warden reads {FORMAT}: written by another version"
            ));
        }
        let half = u32_at(12);
        if half > 1 {
            return Err(format!("bad half {half}"));
        }
        let len = u64_at(24);
        if len > CHUNK as u64 * u64::from(MAX_CHUNKS) {
            return Err(format!("length {len} is past the largest record"));
        }
        Ok(Header {
            half,
            seq: u64_at(16),
            len,
            digest: c[32..64].try_into().expect("32 bytes"),
        })
    }
}

/// The pinned record map.
pub struct RecordMap {
    map: BpfHashMap<MapData, u32, Chunk>,
    path: PathBuf,
}

impl std::fmt::Debug for RecordMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordMap")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn err(path: &Path, detail: impl Into<String>) -> DataplaneError {
    DataplaneError::Record {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

fn map_error<'a>(path: &'a Path, what: &str) -> impl Fn(MapError) -> DataplaneError + 'a {
    let what = what.to_string();
    move |e| err(path, format!("{what}: {e}"))
}

/// The pin's path under `bpffs`.
pub fn pin_path(bpffs: &Path) -> PathBuf {
    bpffs.join("maps").join(PIN)
}

impl RecordMap {
    /// Opens the pinned record under `bpffs`; `Ok(None)` when there is none. Reads only.
    pub fn open_pinned(bpffs: &Path) -> Result<Option<RecordMap>> {
        let path = pin_path(bpffs);
        if !path.exists() {
            return Ok(None);
        }
        let data = MapData::from_pin(&path).map_err(map_error(&path, "opening the pin"))?;
        let info = data.info().map_err(map_error(&path, "reading its info"))?;
        let got = (
            info.map_type().ok(),
            info.key_size(),
            info.value_size(),
            info.max_entries(),
        );
        let want = (Some(MapType::Hash), 4, CHUNK as u32, MAX_ENTRIES);
        if got != want {
            return Err(DataplaneError::IncompatiblePin {
                path,
                detail: format!("found {got:?}, expected {want:?} (type, key, value, entries)"),
            });
        }
        let map = BpfHashMap::try_from(Map::HashMap(data))
            .map_err(map_error(&path, "opening as a hash map"))?;
        Ok(Some(RecordMap { map, path }))
    }

    /// Opens the pinned record under `bpffs`, creating and pinning an empty one first
    /// when there is none.
    pub fn open_or_create(bpffs: &Path) -> Result<RecordMap> {
        if let Some(r) = Self::open_pinned(bpffs)? {
            return Ok(r);
        }
        let path = pin_path(bpffs);
        let obj = aya_obj::Map::new_from_params(
            BPF_MAP_TYPE_HASH,
            4,
            CHUNK as u32,
            MAX_ENTRIES,
            BPF_F_NO_PREALLOC,
        );
        let data =
            MapData::create(obj, KERNEL_NAME, None).map_err(map_error(&path, "creating it"))?;
        data.pin(&path)
            .map_err(|e| err(&path, format!("pinning it: {e}")))?;
        Self::open_pinned(bpffs)?.ok_or_else(|| err(&path, "gone right after pinning"))
    }

    /// The record: its sequence number and content; `Ok(None)` when nothing was written
    /// yet. An inconsistent record (bad header, missing part, digest mismatch) is an error.
    pub fn read(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let header = match self.map.get(&HEADER_KEY, 0) {
            Ok(c) => Header::decode(&c).map_err(|d| err(&self.path, format!("header: {d}")))?,
            Err(MapError::KeyNotFound) => return Ok(None),
            Err(e) => return Err(err(&self.path, format!("reading the header: {e}"))),
        };
        let len = header.len as usize;
        let mut bytes = Vec::with_capacity(len);
        let mut i = 0;
        while bytes.len() < len {
            let c = self
                .map
                .get(&chunk_key(header.half, i), 0)
                .map_err(|e| err(&self.path, format!("reading part {i}: {e}")))?;
            let take = (len - bytes.len()).min(CHUNK);
            bytes.extend_from_slice(&c[..take]);
            i += 1;
        }
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if digest != header.digest {
            return Err(err(
                &self.path,
                "content does not match the header's SHA-256 (damaged)",
            ));
        }
        Ok(Some((header.seq, bytes)))
    }

    /// Replaces the record with `bytes` at `seq`: the unused half first, then the header.
    pub fn write(&mut self, seq: u64, bytes: &[u8]) -> Result<()> {
        let chunks = bytes.len().div_ceil(CHUNK);
        if chunks > MAX_CHUNKS as usize {
            return Err(err(
                &self.path,
                format!(
                    "a record of {} bytes is past the largest one ({} bytes)",
                    bytes.len(),
                    CHUNK * MAX_CHUNKS as usize
                ),
            ));
        }
        let half = match self.map.get(&HEADER_KEY, 0) {
            Ok(c) => Header::decode(&c).map_or(0, |h| 1 - h.half),
            Err(MapError::KeyNotFound) => 0,
            Err(e) => return Err(err(&self.path, format!("reading the header: {e}"))),
        };
        for (i, part) in bytes.chunks(CHUNK).enumerate() {
            let mut c = [0u8; CHUNK];
            c[..part.len()].copy_from_slice(part);
            self.map
                .insert(chunk_key(half, i as u32), c, 0)
                .map_err(|e| err(&self.path, format!("writing part {i}: {e}")))?;
        }
        let header = Header {
            half,
            seq,
            len: bytes.len() as u64,
            digest: Sha256::digest(bytes).into(),
        };
        self.map
            .insert(HEADER_KEY, header.encode(), 0)
            .map_err(|e| err(&self.path, format!("writing the header: {e}")))?;
        // Parts no header points at any more: the other half, and this half's beyond the
        // record. A failure here costs kernel memory only.
        let stale: Vec<u32> = self
            .map
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| half_of(*k).is_some_and(|(h, i)| h != half || i as usize >= chunks))
            .collect();
        for k in stale {
            if let Err(e) = self.map.remove(&k) {
                tracing::debug!(key = k, error = %e, "removing a stale suspension record part");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_refuses_foreign_bytes() {
        let h = Header {
            half: 1,
            seq: 42,
            len: 5000,
            digest: [7; 32],
        };
        assert_eq!(Header::decode(&h.encode()), Ok(h));
        assert!(Header::decode(&[0u8; CHUNK]).is_err());
        let mut other = h.encode();
        other[8] = 9;
        assert!(Header::decode(&other).unwrap_err().contains("format 9"));
    }

    #[test]
    fn chunk_keys_name_their_half_and_never_the_header() {
        for half in 0..2 {
            for i in [0, 1, MAX_CHUNKS - 1] {
                let k = chunk_key(half, i);
                assert_ne!(k, HEADER_KEY);
                assert_eq!(half_of(k), Some((half, i)));
            }
        }
        assert_eq!(half_of(HEADER_KEY), None);
    }
}

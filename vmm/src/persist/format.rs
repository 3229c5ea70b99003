//! The state file's envelope, after Firecracker's `snapshot` crate: a
//! magic, the format version and the version of the hull-vmm that wrote
//! it, the length of the payload (the JSON of `MicrovmState`), and a
//! CRC-64 over everything before it. A file whose envelope does not check
//! out is refused with one line saying which part did not match; nothing in
//! it is trusted before the checksum and both versions did.
//!
//! ```text
//! offset      size  field
//! 0           8     magic "HULLSNAP"
//! 8           4     format version, little-endian u32
//! 12          2     length N of the hull-vmm version, little-endian u16
//! 14          N     hull-vmm version, UTF-8 ("0.1.0")
//! 14+N        8     payload length L, little-endian u64
//! 22+N        L     payload
//! 22+N+L      8     CRC-64/XZ of bytes 0..22+N+L, little-endian
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::crc64::crc64;

/// First bytes of every state file.
pub const MAGIC: &[u8; 8] = b"HULLSNAP";
/// Version of the layout of the state file and of its payload. Bump it
/// with any change to `MicrovmState` or the envelope.
pub const FORMAT_VERSION: u32 = 1;
/// The hull-vmm that writes and reads snapshots; a snapshot is restored
/// only by the same version (device models change between versions).
pub const VMM_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Largest state file read (vCPU and device state are a few tens of KiB
/// per vCPU; guest memory is in its own file).
pub const MAX_STATE_BYTES: u64 = 16 << 20;
/// Longest hull-vmm version string accepted.
const MAX_VERSION_LEN: usize = 64;
/// Bytes of the envelope around the version string and the payload.
const FIXED_BYTES: usize = 8 + 4 + 2 + 8 + 8;

/// Why a state file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file could not be read.
    #[error("cannot read {0}")]
    Read(PathBuf, #[source] std::io::Error),
    /// The file is larger than any state file.
    #[error("state file is larger than {MAX_STATE_BYTES} bytes")]
    TooLarge,
    /// The file is shorter than its envelope.
    #[error("state file is truncated ({0} bytes)")]
    Truncated(usize),
    /// The file does not start with the magic.
    #[error("not a hull-vmm snapshot state file (bad magic)")]
    Magic,
    /// The checksum does not match the contents.
    #[error("state file checksum mismatch (the file is corrupt or truncated)")]
    Checksum,
    /// Written in another format version.
    #[error("snapshot format version {found}, this hull-vmm reads version {FORMAT_VERSION}")]
    FormatVersion {
        /// The file's version.
        found: u32,
    },
    /// Written by another hull-vmm.
    #[error("snapshot made by hull-vmm {found:?}, this is hull-vmm {VMM_VERSION}")]
    VmmVersion {
        /// The file's hull-vmm version.
        found: String,
    },
    /// The lengths inside the envelope do not add up to the file.
    #[error("state file lengths are inconsistent")]
    Length,
    /// The payload is not a valid state.
    #[error("state file payload is invalid")]
    Payload(#[source] serde_json::Error),
    /// The state could not be encoded.
    #[error("cannot encode the state")]
    Encode(#[source] serde_json::Error),
}

/// Wraps `payload` in an envelope of the given versions.
pub fn seal_with(format_version: u32, vmm_version: &str, payload: &[u8]) -> Vec<u8> {
    let version = vmm_version.as_bytes();
    let mut out = Vec::with_capacity(FIXED_BYTES + version.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&format_version.to_le_bytes());
    out.extend_from_slice(&(version.len() as u16).to_le_bytes());
    out.extend_from_slice(version);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Wraps `payload` in an envelope of this hull-vmm's versions.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    seal_with(FORMAT_VERSION, VMM_VERSION, payload)
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Checks the envelope of `file` and returns its payload.
pub fn open(file: &[u8]) -> Result<&[u8], FormatError> {
    if file.len() < FIXED_BYTES {
        return Err(FormatError::Truncated(file.len()));
    }
    if &file[..8] != MAGIC {
        return Err(FormatError::Magic);
    }
    let (body, crc) = file.split_at(file.len() - 8);
    if crc64(body) != le_u64(crc) {
        return Err(FormatError::Checksum);
    }
    let found = le_u32(&file[8..12]);
    if found != FORMAT_VERSION {
        return Err(FormatError::FormatVersion { found });
    }
    let vlen = usize::from(le_u16(&file[12..14]));
    if vlen > MAX_VERSION_LEN || 14 + vlen + 8 > body.len() {
        return Err(FormatError::Length);
    }
    let version = &file[14..14 + vlen];
    if version != VMM_VERSION.as_bytes() {
        return Err(FormatError::VmmVersion {
            found: String::from_utf8_lossy(version).into_owned(),
        });
    }
    let start = 14 + vlen + 8;
    let len = le_u64(&file[14 + vlen..start]);
    if len != (body.len() - start) as u64 {
        return Err(FormatError::Length);
    }
    Ok(&body[start..])
}

/// The sealed JSON of `state`.
pub fn encode<T: Serialize>(state: &T) -> Result<Vec<u8>, FormatError> {
    let payload = serde_json::to_vec(state).map_err(FormatError::Encode)?;
    Ok(seal(&payload))
}

/// Checks the envelope of `file` and decodes its payload.
pub fn decode<T: DeserializeOwned>(file: &[u8]) -> Result<T, FormatError> {
    serde_json::from_slice(open(file)?).map_err(FormatError::Payload)
}

/// Reads a state file, refusing one larger than `MAX_STATE_BYTES`.
pub fn read_file(path: &Path) -> Result<Vec<u8>, FormatError> {
    let f = std::fs::File::open(path).map_err(|e| FormatError::Read(path.into(), e))?;
    let mut bytes = Vec::new();
    f.take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FormatError::Read(path.into(), e))?;
    if bytes.len() as u64 > MAX_STATE_BYTES {
        return Err(FormatError::TooLarge);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Thing {
        a: u32,
        b: Vec<u8>,
    }

    fn thing() -> Thing {
        Thing {
            a: 7,
            b: vec![1, 2, 3],
        }
    }

    #[test]
    fn round_trip() {
        let file = encode(&thing()).unwrap();
        assert_eq!(&file[..8], MAGIC);
        assert_eq!(decode::<Thing>(&file).unwrap(), thing());
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let file = encode(&thing()).unwrap();
        for n in 0..file.len() {
            let e = decode::<Thing>(&file[..n]).unwrap_err();
            assert!(
                matches!(
                    e,
                    FormatError::Truncated(_) | FormatError::Checksum | FormatError::Magic
                ),
                "{n}: {e}"
            );
        }
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x40;
            let e = decode::<Thing>(&bad).unwrap_err();
            assert!(
                matches!(e, FormatError::Checksum | FormatError::Magic),
                "{i}: {e}"
            );
        }
    }

    #[test]
    fn other_versions_are_refused_by_name() {
        let payload = serde_json::to_vec(&thing()).unwrap();
        let e = decode::<Thing>(&seal_with(FORMAT_VERSION + 1, VMM_VERSION, &payload))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("format version {}", FORMAT_VERSION + 1)),
            "{e}"
        );
        let e = decode::<Thing>(&seal_with(FORMAT_VERSION, "0.0.0-other", &payload))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hull-vmm \"0.0.0-other\""), "{e}");
        assert!(e.contains(VMM_VERSION), "{e}");
        let e =
            decode::<Thing>(&seal_with(FORMAT_VERSION, &"x".repeat(200), &payload)).unwrap_err();
        assert!(matches!(e, FormatError::Length), "{e}");
    }

    #[test]
    fn a_sealed_but_wrong_payload_is_refused() {
        let e = decode::<Thing>(&seal(br#"{"a": 1, "b": [1], "c": 2}"#)).unwrap_err();
        assert!(matches!(e, FormatError::Payload(_)), "{e}");
        let e = decode::<Thing>(&seal(b"\xff\xfe")).unwrap_err();
        assert!(matches!(e, FormatError::Payload(_)), "{e}");
        let e = decode::<Thing>(&seal(&b"[".repeat(100_000))).unwrap_err();
        assert!(matches!(e, FormatError::Payload(_)), "{e}");
    }

    #[test]
    fn files_are_read_with_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        std::fs::write(&p, encode(&thing()).unwrap()).unwrap();
        assert_eq!(decode::<Thing>(&read_file(&p).unwrap()).unwrap(), thing());
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(MAX_STATE_BYTES + 1).unwrap();
        assert!(matches!(read_file(&p), Err(FormatError::TooLarge)));
        let e = read_file(&dir.path().join("none")).unwrap_err().to_string();
        assert!(e.contains("none"), "{e}");
    }
}

//! Message bodies kept outside sled: append-only segment files under `<store>/bodies/`
//! (`00000001.bodies`, …), each body referenced from the `bodies` tree by a small
//! [`BodyRef`] (segment, offset, length, CRC-32).
//!
//! Why not in sled: sled rewrites whole leaf pages on consolidation and holds written pages in
//! its log buffers and page cache, so bodies in a tree cost memory in proportion to the write
//! rate and several times their size on disk. Here a body is written once, read with one
//! `pread`, and sled holds about 50 bytes per message.
//!
//! Compression: a body is stored as a zstd frame when that is smaller
//! ([`crate::compression::compress_body`]; generated mail shrinks to about 0.7×, real text
//! mail further), and as it is otherwise (a body that is mostly an already compressed
//! attachment). The ref says which ([`BodyRef::raw_len`]); its checksum covers the stored
//! bytes, so damage is found before anything is expanded.
//!
//! Durability: [`StoreTx::put_body`](super::StoreTx::put_body) appends inside the
//! transaction closure and [`super::Store::transaction`] calls [`BodyFiles::sync`] before sled
//! commits, so a committed ref never points at bytes that a crash could lose. A closure that
//! is retried or aborts leaves its appended bytes unreferenced; they are dead space, never
//! read. A crash mid-append leaves a torn tail, equally unreferenced: appends go at the file's
//! end as found at open, never over it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::codec::{CodecError, Versioned};

/// The directory of the segment files, inside the store directory.
pub const BODIES_DIR: &str = "bodies";
/// A segment is closed once it holds this much (a single larger body gets a segment alone).
const SEGMENT_LIMIT: u64 = 64 * 1024 * 1024;
/// The file name suffix of a segment.
const SEGMENT_SUFFIX: &str = ".bodies";

/// Where one body lives (the value of the `bodies` tree).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyRef {
    /// Segment number (the file name).
    pub segment: u32,
    /// Byte offset in the segment.
    pub offset: u64,
    /// Length in bytes of what is stored.
    pub len: u32,
    /// CRC-32 (IEEE) of the stored bytes.
    pub crc32: u32,
    /// `Some(n)`: the stored bytes are a zstd frame of the `n`-byte body. `None`: they are
    /// the body itself (every version-1 ref).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_len: Option<u32>,
}

/// Version 1 of [`BodyRef`], frozen: bodies stored as they are.
mod v1 {
    #[derive(serde::Deserialize)]
    pub(super) struct BodyRef {
        pub segment: u32,
        pub offset: u64,
        pub len: u32,
        pub crc32: u32,
    }
}

impl Versioned for BodyRef {
    const NAME: &'static str = "body ref";
    /// Version 2: `raw_len` (compressed bodies). The bump makes a build that knows only
    /// version 1 refuse a compressed ref instead of serving the frame as the body.
    const VERSION: u16 = 2;
    fn upgrade(from: u16, body: &[u8]) -> Result<Self, CodecError> {
        match from {
            1 => {
                let r: v1::BodyRef = crate::codec::cbor_body::<Self, _>(body)?;
                Ok(BodyRef {
                    segment: r.segment,
                    offset: r.offset,
                    len: r.len,
                    crc32: r.crc32,
                    raw_len: None,
                })
            }
            found => Err(CodecError::NoUpgrade {
                type_name: Self::NAME,
                found,
            }),
        }
    }
    fn from_legacy(_body: &[u8]) -> Result<Self, CodecError> {
        Err(CodecError::malformed::<Self>(
            "body refs did not exist in schema 1",
        ))
    }
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The segment file could not be opened or read.
    #[error("reading {path}: {source}")]
    Io {
        /// The segment file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The bytes at the ref do not match its checksum (or the file is too short).
    #[error("{path} at {offset}+{len}: {reason}")]
    Damaged {
        /// The segment file.
        path: PathBuf,
        /// Offset of the body.
        offset: u64,
        /// Its length.
        len: u32,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The segment currently appended to.
struct Active {
    segment: u32,
    file: File,
    len: u64,
}

/// The body segment files of one store.
pub struct BodyFiles {
    dir: PathBuf,
    active: Mutex<Option<Active>>,
}

impl std::fmt::Debug for BodyFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyFiles")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:08}{SEGMENT_SUFFIX}"))
}

/// The numbers of the segment files in `dir`, ascending.
pub fn segments(dir: &Path) -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| n.parse::<u32>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl BodyFiles {
    /// The body files of the store in `store_dir`. Nothing is created until the first append.
    pub fn new(store_dir: &Path) -> BodyFiles {
        BodyFiles {
            dir: store_dir.join(BODIES_DIR),
            active: Mutex::new(None),
        }
    }

    /// The directory of the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens the newest segment for appending at its current end, or creates segment 1.
    fn open_active(&self) -> io::Result<Active> {
        std::fs::create_dir_all(&self.dir)?;
        match segments(&self.dir)?.last() {
            Some(&segment) => {
                let file = File::options()
                    .read(true)
                    .write(true)
                    .open(segment_path(&self.dir, segment))?;
                let len = file.metadata()?.len();
                Ok(Active { segment, file, len })
            }
            None => self.create(1),
        }
    }

    /// Creates segment `segment` and makes its directory entry durable (before any ref into it
    /// can commit).
    fn create(&self, segment: u32) -> io::Result<Active> {
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(segment_path(&self.dir, segment))?;
        sync_dir(&self.dir)?;
        Ok(Active {
            segment,
            file,
            len: 0,
        })
    }

    /// Appends `body` to the active segment, compressed where that makes it smaller (not yet
    /// durable: see [`BodyFiles::sync`]).
    pub fn append(&self, body: &[u8]) -> io::Result<BodyRef> {
        let frame = crate::compression::compress_body(body);
        let raw_len =
            match frame {
                Some(_) => Some(u32::try_from(body.len()).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "a body over 4 GiB")
                })?),
                None => None,
            };
        let bytes = frame.as_deref().unwrap_or(body);
        let len = u32::try_from(bytes.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a body over 4 GiB"))?;
        let mut guard = self
            .active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let active = match guard.as_mut() {
            Some(a) => a,
            None => guard.insert(self.open_active()?),
        };
        if active.len > 0 && active.len + u64::from(len) > SEGMENT_LIMIT {
            // Everything appended to the old segment becomes durable before the switch, so a
            // later `sync` of the new active segment covers every earlier append.
            active.file.sync_data()?;
            *active = self.create(active.segment + 1)?;
        }
        active.file.write_all_at(bytes, active.len)?;
        let at = BodyRef {
            segment: active.segment,
            offset: active.len,
            len,
            crc32: crc32fast::hash(bytes),
            raw_len,
        };
        active.len += u64::from(len);
        Ok(at)
    }

    /// Makes every body appended so far durable.
    pub fn sync(&self) -> io::Result<()> {
        let file = {
            let guard = self
                .active
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match guard.as_ref() {
                Some(a) => a.file.try_clone()?,
                None => return Ok(()),
            }
        };
        file.sync_data()
    }

    /// Reads the body at `at` and checks it against the ref's checksum.
    pub fn read(&self, at: &BodyRef) -> Result<Vec<u8>, BodyError> {
        let path = segment_path(&self.dir, at.segment);
        let io = |source| BodyError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        let mut buf = vec![0u8; at.len as usize];
        match file.read_exact_at(&mut buf, at.offset) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(BodyError::Damaged {
                    path,
                    offset: at.offset,
                    len: at.len,
                    reason: "the segment ends before the body",
                });
            }
            Err(e) => return Err(io(e)),
        }
        if crc32fast::hash(&buf) != at.crc32 {
            return Err(BodyError::Damaged {
                path,
                offset: at.offset,
                len: at.len,
                reason: "checksum mismatch",
            });
        }
        match at.raw_len {
            None => Ok(buf),
            Some(raw_len) => {
                crate::compression::decompress_body(&buf, raw_len as usize).map_err(|_| {
                    BodyError::Damaged {
                        path,
                        offset: at.offset,
                        len: at.len,
                        reason: "the compressed body does not expand to its length",
                    }
                })
            }
        }
    }

    /// Bytes held by the segment files (live and dead).
    pub fn disk_bytes(&self) -> io::Result<u64> {
        let mut total = 0;
        for segment in segments(&self.dir)? {
            total += std::fs::metadata(segment_path(&self.dir, segment))?.len();
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_bodies_read_back_and_a_reopen_appends_after_the_old_end() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = BodyFiles::new(dir.path());
        let a = files.append(b"first body").expect("append");
        let b = files.append(b"second").expect("append");
        files.sync().expect("sync");
        assert_eq!(files.read(&a).expect("read"), b"first body");
        assert_eq!(files.read(&b).expect("read"), b"second");
        // A torn tail from a crash: bytes no ref points at.
        let seg = segment_path(files.dir(), a.segment);
        let f = File::options().append(true).open(&seg).expect("seg");
        f.write_all_at(b"torn", 16).expect("torn");
        drop(files);
        let files = BodyFiles::new(dir.path());
        let c = files.append(b"third").expect("append");
        assert_eq!(c.segment, a.segment);
        assert_eq!(c.offset, 20, "after the torn tail, never over it");
        assert_eq!(files.read(&a).expect("read"), b"first body");
        assert_eq!(files.read(&c).expect("read"), b"third");
    }

    #[test]
    fn a_damaged_or_cut_segment_is_reported_not_returned() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = BodyFiles::new(dir.path());
        let a = files.append(b"hello world").expect("append");
        let seg = segment_path(files.dir(), a.segment);
        File::options()
            .write(true)
            .open(&seg)
            .expect("seg")
            .write_all_at(b"J", 0)
            .expect("flip");
        assert!(matches!(
            files.read(&a),
            Err(BodyError::Damaged {
                reason: "checksum mismatch",
                ..
            })
        ));
        File::options()
            .write(true)
            .open(&seg)
            .expect("seg")
            .set_len(3)
            .expect("cut");
        assert!(matches!(files.read(&a), Err(BodyError::Damaged { .. })));
    }

    #[test]
    fn a_full_segment_rolls_over_to_the_next() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = BodyFiles::new(dir.path());
        let big = crate::compression::incompressible((SEGMENT_LIMIT / 2 + 1) as usize);
        let a = files.append(&big).expect("append");
        let b = files.append(&big).expect("append");
        assert_eq!((a.segment, b.segment), (1, 2));
        assert_eq!(b.offset, 0);
        assert_eq!(segments(files.dir()).expect("list"), vec![1, 2]);
        assert_eq!(files.read(&b).expect("read").len(), big.len());
    }

    #[test]
    fn text_is_stored_compressed_and_noise_as_it_is() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = BodyFiles::new(dir.path());
        let text = b"Subject: minutes\r\n\r\nWe agreed to meet again next week.\r\n".repeat(40);
        let a = files.append(&text).expect("append");
        assert_eq!(a.raw_len, Some(text.len() as u32));
        assert!((a.len as usize) < text.len() / 4, "{} bytes stored", a.len);
        let random = crate::compression::incompressible(3000);
        let b = files.append(&random).expect("append");
        assert_eq!((b.raw_len, b.len), (None, 3000));
        assert_eq!(files.read(&a).expect("read"), text);
        assert_eq!(files.read(&b).expect("read"), random);

        // A ref that claims another length is damage, not a short or padded body.
        let wrong = BodyRef {
            raw_len: Some(text.len() as u32 + 1),
            ..a
        };
        assert!(matches!(
            files.read(&wrong),
            Err(BodyError::Damaged { reason, .. }) if reason.contains("expand")
        ));
    }

    #[test]
    fn a_version_1_ref_reads_as_a_body_stored_as_it_is() {
        #[derive(serde::Serialize)]
        struct RefV1 {
            segment: u32,
            offset: u64,
            len: u32,
            crc32: u32,
        }
        let mut bytes = vec![crate::codec::FORMAT_TAGGED, 0, 1];
        ciborium::into_writer(
            &RefV1 {
                segment: 3,
                offset: 40,
                len: 11,
                crc32: 99,
            },
            &mut bytes,
        )
        .expect("cbor");
        let at: BodyRef = crate::codec::decode(&bytes).expect("upgrade");
        assert_eq!(
            at,
            BodyRef {
                segment: 3,
                offset: 40,
                len: 11,
                crc32: 99,
                raw_len: None
            }
        );
        let newer = crate::codec::encode(&at).expect("encode");
        assert_eq!(&newer[..3], &[crate::codec::FORMAT_TAGGED, 0, 2]);
    }
}

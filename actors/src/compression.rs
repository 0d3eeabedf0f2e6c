//! Compression of what the store writes: zstd frames (RFC 8878) for message bodies, and zstd
//! frames against a frozen dictionary for the larger stored values (mirrored messages, feed
//! events). This module owns the compression level, the size limits and the dictionary; the
//! codec ([`crate::codec`]) and the body files ([`crate::store::BodyRef`]) decide when to use
//! it and record that they did.
//!
//! Why a dictionary for values: a value is a few hundred bytes of CBOR whose field names
//! appear once each, so a frame on its own finds little to repeat. The dictionary holds what
//! every such value shares: our field and variant names, the feed's event kinds, Gmail's
//! system label ids and the tokens of an RFC 5322 date. It holds no message content (no
//! subject, address or text), so it helps real mail exactly as much as the emulator's.
//!
//! The dictionary is part of the on-disk format: values written with it can only be read with
//! the same bytes, so [`VALUE_DICTIONARY_V1`] never changes (a test pins its checksum). A
//! better dictionary would be a new one with its own format byte.
//!
//! Cost: a zstd context is a few hundred kilobytes of tables, and building one with the
//! dictionary loaded costs more than compressing a value with it. Each thread keeps one
//! compressor and one decompressor for values and a plain pair for bodies (`CONTEXTS`), reset
//! by zstd before every frame, so what a call returns never depends on what the thread did
//! before. (A context made per body cost 5 % of a full sync's CPU, and more in malloc.)

use std::cell::RefCell;
use std::io;

/// zstd's default level: about 300 MB/s on this project's machine for bodies, and as small as
/// level 19 within 5 % on the stored values (measured on generated mail).
pub const LEVEL: i32 = 3;

/// The largest value a compressed frame may expand to. Stored values are kilobytes; anything
/// claiming more is damage, and is refused before memory is allocated for it.
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// Dictionary 1 of stored values (zstd "raw content": matches are found in these bytes as if
/// they preceded each value). The tokens nearest the end are matched most cheaply, so the
/// names that every mirrored message and feed event carries come last. Never edit: see the
/// module doc.
pub const VALUE_DICTIONARY_V1: &[u8] = b"\
SystemUser\
calendar.addedcalendar.removedevent.createdevent.updatedevent.deleted\
message.flags_changedaccount.state_changedAccountStateChangedstatereason\
LabelCreatedLabelUpdatedLabelDeletedlabel.createdlabel.updatedlabel.deletedlabelnamekind\
MessageDeletedmessage.deleted:MessageLabelsChangedmessage.labels_changed:addedremoved\
CATEGORY_PERSONALCATEGORY_SOCIALCATEGORY_PROMOTIONSCATEGORY_UPDATESCATEGORY_FORUMS\
SPAMTRASHDRAFTCHATIMPORTANTSTARREDUNREADSENTINBOX\
Mon, Tue, Wed, Thu, Fri, Sat, Sun, \
 Jan  Feb  Mar  Apr  May  Jun  Jul  Aug  Sep  Oct  Nov  Dec 20\
 +0000Re: Fwd: \
gaccountdkindmmessage.addedckeyx'message.added::g0gpayloadlMessageAdded\
bidpithread_idpilabel_idsjhistory_idpinternal_date_msjraw_sha256x@dsizegheaders\
gsubjectdfromddatejmessage_idets_ms";

/// One thread's zstd contexts: a pair with [`VALUE_DICTIONARY_V1`] loaded for values, and a
/// plain pair for bodies.
struct Contexts {
    value_compressor: zstd::bulk::Compressor<'static>,
    value_decompressor: zstd::bulk::Decompressor<'static>,
    body_compressor: zstd::bulk::Compressor<'static>,
    body_decompressor: zstd::bulk::Decompressor<'static>,
}

impl Contexts {
    fn new() -> io::Result<Contexts> {
        Ok(Contexts {
            value_compressor: zstd::bulk::Compressor::with_dictionary(LEVEL, VALUE_DICTIONARY_V1)?,
            value_decompressor: zstd::bulk::Decompressor::with_dictionary(VALUE_DICTIONARY_V1)?,
            body_compressor: zstd::bulk::Compressor::new(LEVEL)?,
            body_decompressor: zstd::bulk::Decompressor::new()?,
        })
    }
}

thread_local! {
    static CONTEXTS: RefCell<Option<Contexts>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's contexts, creating them on first use.
fn with_contexts<R>(f: impl FnOnce(&mut Contexts) -> io::Result<R>) -> io::Result<R> {
    CONTEXTS.with(|cell| {
        // A re-entrant call (none exists) would find the cell borrowed: it gets fresh contexts.
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return f(&mut Contexts::new()?);
        };
        let contexts = match slot.as_mut() {
            Some(c) => c,
            None => slot.insert(Contexts::new()?),
        };
        f(contexts)
    })
}

/// Compresses a stored value's bytes with [`VALUE_DICTIONARY_V1`]. `None` when the frame
/// would not be smaller (the caller then stores the bytes as they are).
pub fn compress_value(plain: &[u8]) -> Option<Vec<u8>> {
    let frame = with_contexts(|c| c.value_compressor.compress(plain)).ok()?;
    (frame.len() < plain.len()).then_some(frame)
}

/// Expands a frame written by [`compress_value`].
pub fn decompress_value(frame: &[u8]) -> io::Result<Vec<u8>> {
    with_contexts(|c| c.value_decompressor.decompress(frame, MAX_VALUE_BYTES))
}

/// Compresses a message body. `None` when the frame would not be smaller (bodies that are
/// mostly an already compressed attachment): the body is then stored as it is.
pub fn compress_body(raw: &[u8]) -> Option<Vec<u8>> {
    let frame = with_contexts(|c| c.body_compressor.compress(raw)).ok()?;
    (frame.len() < raw.len()).then_some(frame)
}

/// Expands a body frame that must give exactly `raw_len` bytes.
pub fn decompress_body(frame: &[u8], raw_len: usize) -> io::Result<Vec<u8>> {
    let raw = with_contexts(|c| c.body_decompressor.decompress(frame, raw_len))?;
    if raw.len() != raw_len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expands to {} bytes, not {raw_len}", raw.len()),
        ));
    }
    Ok(raw)
}

/// `n` bytes zstd cannot shrink (xorshift), for tests of the stored-as-it-is path.
#[cfg(test)]
pub(crate) fn incompressible(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_dictionary_never_changes() {
        // Values on disk were compressed against these exact bytes.
        assert_eq!(VALUE_DICTIONARY_V1.len(), 750);
        assert_eq!(crc32fast::hash(VALUE_DICTIONARY_V1), 3_788_983_039);
    }

    #[test]
    fn values_and_bodies_round_trip_and_incompressible_bytes_are_left_alone() {
        let value = b"gaccountebenchdkindmmessage.addedckeyx'message.added:bench:19c0:g0".repeat(3);
        let frame = compress_value(&value).expect("smaller");
        assert!(frame.len() < value.len() / 2, "{} bytes", frame.len());
        assert_eq!(decompress_value(&frame).expect("expand"), value);

        let body = b"Subject: hello\r\n\r\nthe same line again\r\n".repeat(50);
        let frame = compress_body(&body).expect("smaller");
        assert_eq!(decompress_body(&frame, body.len()).expect("expand"), body);
        assert!(decompress_body(&frame, body.len() - 1).is_err(), "too long");
        assert!(
            decompress_body(&frame, body.len() + 1).is_err(),
            "too short"
        );

        let noise = incompressible(4096);
        assert!(
            compress_body(&noise).is_none(),
            "random bytes stay as they are"
        );
        assert!(compress_value(b"ab").is_none(), "a frame is never smaller");
    }

    #[test]
    fn garbage_frames_are_errors_not_panics() {
        assert!(decompress_value(b"not a zstd frame").is_err());
        assert!(decompress_body(b"\x28\xb5\x2f\xfd garbage", 10).is_err());
        let frame = compress_value(&b"x".repeat(500)).expect("smaller");
        assert!(decompress_value(&frame[..frame.len() - 2]).is_err(), "cut");
    }
}

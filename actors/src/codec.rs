//! The codec of stored values: every value says which version of its own type wrote it, and
//! every type knows how to read its older versions. This module owns the byte format and the
//! [`Versioned`] trait; each stored type implements the trait next to its definition (with
//! its frozen older shapes), so the codec knows nothing about its clients.
//!
//! Two formats exist on disk, told apart by the first byte:
//!
//! | first byte | layout | written by |
//! |---|---|---|
//! | `1` ([`FORMAT_LEGACY`]) | bincode 2 (serde, standard config) of the type's schema-1 shape | mailsync before per-type versions (schema 1) |
//! | `2` ([`FORMAT_TAGGED`]) | type version (u16, big-endian) ++ CBOR (RFC 8949) of the value | mailsync since schema 2 |
//! | `3` ([`FORMAT_COMPRESSED`]) | a zstd frame against [`crate::compression::VALUE_DICTIONARY_V1`] of what follows a `2` | this build, for types with [`Versioned::COMPRESS`] where the frame is smaller |
//!
//! Why CBOR: it is self-describing. Struct fields are written by name and enum variants by
//! their name (serde's external tagging), so
//! - **adding a field** marked `#[serde(default)]` reads every existing value (the field takes
//!   its default) — no version bump, no migration, never `Corrupt`;
//! - **reordering enum variants** changes nothing: the tag on disk is the variant's name, not
//!   its index (`codec::tests::enum_tags_are_names_not_positions`);
//! - **renaming** a field or variant, or changing what one means, bumps
//!   [`Versioned::VERSION`] and adds a step to [`Versioned::upgrade`], with a test.
//!
//! Schema-1 values (bincode, where fields and variants are positional) are read through the
//! type's frozen schema-1 shape ([`Versioned::from_legacy`]) and converted; they are rewritten in
//! the tagged format the next time their owner writes them.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// First byte of a schema-1 value: bincode behind one store-wide version byte.
pub const FORMAT_LEGACY: u8 = 1;
/// First byte of a value written by this build: type version, then CBOR.
pub const FORMAT_TAGGED: u8 = 2;
/// First byte of a compressed value: a zstd frame of the bytes that follow [`FORMAT_TAGGED`].
pub const FORMAT_COMPRESSED: u8 = 3;

/// Why a stored value could not be read or written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The bytes do not hold a value of the expected type.
    #[error("{type_name}: {reason}")]
    Malformed {
        /// The stored type.
        type_name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A value written by a newer build (a version this build does not know).
    #[error(
        "{type_name} version {found} is newer than this build knows ({known}); upgrade mailsync"
    )]
    TooNew {
        /// The stored type.
        type_name: &'static str,
        /// Version on disk.
        found: u16,
        /// Newest version this build knows.
        known: u16,
    },
    /// An older version with no upgrade step (a bug: every old version needs one).
    #[error("{type_name} version {found} has no upgrade path")]
    NoUpgrade {
        /// The stored type.
        type_name: &'static str,
        /// Version on disk.
        found: u16,
    },
    /// A `Serialize` impl failed.
    #[error("cannot encode {type_name}: {reason}")]
    Encode {
        /// The stored type.
        type_name: &'static str,
        /// Why.
        reason: String,
    },
}

impl CodecError {
    /// A [`CodecError::Malformed`] for `T`.
    pub fn malformed<T: Versioned>(reason: impl std::fmt::Display) -> CodecError {
        CodecError::Malformed {
            type_name: T::NAME,
            reason: reason.to_string(),
        }
    }
}

/// A type kept in the store. Implemented next to each stored type.
pub trait Versioned: Serialize + DeserializeOwned {
    /// The type's name in error messages (stable, human readable).
    const NAME: &'static str;
    /// The version this build writes. Bump it when a field or variant is renamed, removed, or
    /// changes meaning; adding a `#[serde(default)]` field needs no bump.
    const VERSION: u16;
    /// Whether values of this type are written compressed ([`FORMAT_COMPRESSED`]) when that
    /// makes them smaller. Worth it for the types stored once per message (hundreds of bytes
    /// each, millions of them); not for small records, nor for values nested inside another
    /// value that is compressed itself.
    const COMPRESS: bool = false;

    /// Reads the CBOR body of an older version `from` (`1 <= from < VERSION`). The default
    /// has no older versions.
    fn upgrade(from: u16, body: &[u8]) -> Result<Self, CodecError> {
        let _ = body;
        Err(CodecError::NoUpgrade {
            type_name: Self::NAME,
            found: from,
        })
    }

    /// Reads a schema-1 value (the bincode body after the version byte). Implementations
    /// decode their frozen schema-1 shape with [`legacy_bincode`] and convert it.
    fn from_legacy(body: &[u8]) -> Result<Self, CodecError>;
}

/// Encodes `value` in the tagged format.
pub fn encode<T: Versioned>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT_TAGGED);
    out.extend_from_slice(&T::VERSION.to_be_bytes());
    ciborium::into_writer(value, &mut out).map_err(|e| CodecError::Encode {
        type_name: T::NAME,
        reason: e.to_string(),
    })?;
    // `compress_value` gives a frame only when it is smaller than the bytes after the format
    // byte, so the compressed value is always the shorter one.
    if T::COMPRESS
        && let Some(frame) = crate::compression::compress_value(&out[1..])
    {
        let mut compressed = Vec::with_capacity(frame.len() + 1);
        compressed.push(FORMAT_COMPRESSED);
        compressed.extend_from_slice(&frame);
        return Ok(compressed);
    }
    Ok(out)
}

/// Decodes a value in either format, upgrading older versions.
pub fn decode<T: Versioned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::malformed::<T>("empty value")),
        Some((&FORMAT_LEGACY, body)) => T::from_legacy(body),
        Some((&FORMAT_TAGGED, rest)) => decode_tagged(rest),
        Some((&FORMAT_COMPRESSED, frame)) => {
            let rest = crate::compression::decompress_value(frame)
                .map_err(|e| CodecError::malformed::<T>(format!("compressed value: {e}")))?;
            decode_tagged(&rest)
        }
        Some((other, _)) => Err(CodecError::malformed::<T>(format!(
            "unknown value format {other}"
        ))),
    }
}

/// Decodes what follows [`FORMAT_TAGGED`]: the type version, then CBOR.
fn decode_tagged<T: Versioned>(rest: &[u8]) -> Result<T, CodecError> {
    let (version, body) = match rest.split_first_chunk::<2>() {
        Some((v, body)) => (u16::from_be_bytes(*v), body),
        None => return Err(CodecError::malformed::<T>("truncated version")),
    };
    if version == T::VERSION {
        cbor_body::<T, T>(body)
    } else if version > T::VERSION {
        Err(CodecError::TooNew {
            type_name: T::NAME,
            found: version,
            known: T::VERSION,
        })
    } else if version == 0 {
        Err(CodecError::malformed::<T>("version 0"))
    } else {
        T::upgrade(version, body)
    }
}

/// Decodes a CBOR body as `S` (the current shape or an older one inside an upgrade); errors
/// are reported against `T`. Trailing bytes are an error.
pub fn cbor_body<T: Versioned, S: DeserializeOwned>(body: &[u8]) -> Result<S, CodecError> {
    let mut rest = body;
    let value: S = ciborium::from_reader(&mut rest).map_err(|e| CodecError::malformed::<T>(e))?;
    if !rest.is_empty() {
        return Err(CodecError::malformed::<T>(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}

/// Decodes a schema-1 bincode body as the frozen shape `L`; errors are reported against `T`.
/// Truncated or trailing bytes are errors.
pub fn legacy_bincode<T: Versioned, L: DeserializeOwned>(body: &[u8]) -> Result<L, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(body, bincode::config::standard())
        .map_err(|e| CodecError::malformed::<T>(e))?;
    if used != body.len() {
        return Err(CodecError::malformed::<T>(format!(
            "{} trailing bytes",
            body.len() - used
        )));
    }
    Ok(value)
}

/// Implements [`Versioned`] at version 1 for types whose schema-1 shape is the type itself
/// (primitives and shapes that cannot change: a `u64` is a `u64` forever).
#[macro_export]
macro_rules! versioned_as_itself {
    ($($t:ty => $name:literal),* $(,)?) => {$(
        impl $crate::codec::Versioned for $t {
            const NAME: &'static str = $name;
            const VERSION: u16 = 1;
            fn from_legacy(body: &[u8]) -> Result<Self, $crate::codec::CodecError> {
                $crate::codec::legacy_bincode::<Self, Self>(body)
            }
        }
    )*};
}

versioned_as_itself!(u64 => "u64", u32 => "u32", String => "string");

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    /// A stored type as it was first written.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct ThingV1 {
        id: String,
        count: u64,
    }
    impl Versioned for ThingV1 {
        const NAME: &'static str = "thing";
        const VERSION: u16 = 1;
        fn from_legacy(body: &[u8]) -> Result<Self, CodecError> {
            legacy_bincode::<Self, Self>(body)
        }
    }

    /// The same type after a field was added (no version bump needed).
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct ThingWithField {
        id: String,
        count: u64,
        #[serde(default)]
        note: Option<String>,
    }
    impl Versioned for ThingWithField {
        const NAME: &'static str = "thing";
        const VERSION: u16 = 1;
        fn from_legacy(body: &[u8]) -> Result<Self, CodecError> {
            let old: ThingV1 = legacy_bincode::<Self, ThingV1>(body)?;
            Ok(ThingWithField {
                id: old.id,
                count: old.count,
                note: None,
            })
        }
    }

    /// The same type after `count` was renamed and changed meaning: version 2, upgrade step.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct ThingV2 {
        id: String,
        total_hundreds: u64,
    }
    impl Versioned for ThingV2 {
        const NAME: &'static str = "thing";
        const VERSION: u16 = 2;
        fn upgrade(from: u16, body: &[u8]) -> Result<Self, CodecError> {
            match from {
                1 => {
                    let old: ThingWithField = cbor_body::<Self, _>(body)?;
                    Ok(ThingV2 {
                        id: old.id,
                        total_hundreds: old.count / 100,
                    })
                }
                found => Err(CodecError::NoUpgrade {
                    type_name: Self::NAME,
                    found,
                }),
            }
        }
        fn from_legacy(body: &[u8]) -> Result<Self, CodecError> {
            let old: ThingV1 = legacy_bincode::<Self, ThingV1>(body)?;
            Ok(ThingV2 {
                id: old.id,
                total_hundreds: old.count / 100,
            })
        }
    }

    fn legacy_bytes<T: Serialize>(v: &T) -> Vec<u8> {
        let mut out = vec![FORMAT_LEGACY];
        bincode::serde::encode_into_std_write(v, &mut out, bincode::config::standard()).unwrap();
        out
    }

    #[test]
    fn roundtrip_and_header() {
        let v = ThingV1 {
            id: "a".into(),
            count: 7,
        };
        let bytes = encode(&v).unwrap();
        assert_eq!(&bytes[..3], &[FORMAT_TAGGED, 0, 1]);
        assert_eq!(decode::<ThingV1>(&bytes).unwrap(), v);
    }

    #[test]
    fn adding_a_field_reads_old_values_in_both_formats() {
        let v1 = ThingV1 {
            id: "a".into(),
            count: 7,
        };
        let tagged = encode(&v1).unwrap();
        let got: ThingWithField = decode(&tagged).unwrap();
        assert_eq!(got.note, None);
        assert_eq!(got.count, 7);
        let legacy = legacy_bytes(&v1);
        let got: ThingWithField = decode(&legacy).unwrap();
        assert_eq!((got.id.as_str(), got.count), ("a", 7));
        // And the new field survives a roundtrip.
        let with = ThingWithField {
            id: "b".into(),
            count: 1,
            note: Some("n".into()),
        };
        assert_eq!(
            decode::<ThingWithField>(&encode(&with).unwrap()).unwrap(),
            with
        );
    }

    #[test]
    fn a_version_bump_upgrades_older_values_and_refuses_newer_ones() {
        let old = encode(&ThingWithField {
            id: "a".into(),
            count: 700,
            note: None,
        })
        .unwrap();
        let got: ThingV2 = decode(&old).unwrap();
        assert_eq!(got.total_hundreds, 7);
        let legacy = legacy_bytes(&ThingV1 {
            id: "a".into(),
            count: 300,
        });
        assert_eq!(decode::<ThingV2>(&legacy).unwrap().total_hundreds, 3);
        let newer = encode(&got).unwrap();
        assert!(matches!(
            decode::<ThingV1>(&newer),
            Err(CodecError::TooNew {
                found: 2,
                known: 1,
                ..
            })
        ));
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone, Copy)]
    enum Order {
        First,
        Second,
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone, Copy)]
    enum Reordered {
        Second,
        First,
    }
    versioned_as_itself!(Order => "order", Reordered => "order");

    #[test]
    fn enum_tags_are_names_not_positions() {
        let bytes = encode(&Order::Second).unwrap();
        assert_eq!(decode::<Reordered>(&bytes).unwrap(), Reordered::Second);
        assert!(
            bytes.windows(6).any(|w| w == b"Second"),
            "the variant name is on disk"
        );
    }

    #[test]
    fn corrupt_values_are_errors_not_panics() {
        assert!(decode::<u64>(&[]).is_err());
        assert!(decode::<u64>(&[9, 1]).is_err());
        assert!(decode::<u64>(&[FORMAT_TAGGED, 0]).is_err());
        assert!(decode::<u64>(&[FORMAT_TAGGED, 0, 0, 1]).is_err());
        let mut trailing = encode(&1u64).unwrap();
        trailing.push(0);
        assert!(decode::<u64>(&trailing).is_err());
        let v = encode(&ThingV1 {
            id: "abc".into(),
            count: 1,
        })
        .unwrap();
        assert!(decode::<ThingV1>(&v[..v.len() - 2]).is_err());
        let mut legacy = legacy_bytes(&5u64);
        assert_eq!(decode::<u64>(&legacy).unwrap(), 5);
        legacy.push(1);
        assert!(decode::<u64>(&legacy).is_err());
    }

    /// A type written compressed; `ThingV1` reads the same bytes uncompressed.
    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Bulky {
        id: String,
        count: u64,
    }
    impl Versioned for Bulky {
        const NAME: &'static str = "bulky";
        const VERSION: u16 = 1;
        const COMPRESS: bool = true;
        fn from_legacy(body: &[u8]) -> Result<Self, CodecError> {
            legacy_bincode::<Self, Self>(body)
        }
    }

    #[test]
    fn compressing_types_write_a_frame_only_where_it_is_smaller() {
        let big = Bulky {
            id: "message.added:".repeat(20),
            count: 7,
        };
        let bytes = encode(&big).unwrap();
        assert_eq!(bytes[0], FORMAT_COMPRESSED);
        assert!(bytes.len() < 100, "{} bytes", bytes.len());
        assert_eq!(decode::<Bulky>(&bytes).unwrap(), big);

        let small = Bulky {
            id: "a".into(),
            count: 1,
        };
        let bytes = encode(&small).unwrap();
        assert_eq!(bytes[0], FORMAT_TAGGED, "a frame would not be smaller");
        assert_eq!(decode::<Bulky>(&bytes).unwrap(), small);

        // Values written before the type compressed, and by a type that does not, still read;
        // a compressed value reads as any type of the same shape (the frame hides nothing).
        let plain = encode(&ThingV1 {
            id: big.id.clone(),
            count: 7,
        })
        .unwrap();
        assert_eq!(plain[0], FORMAT_TAGGED);
        assert_eq!(decode::<Bulky>(&plain).unwrap(), big);
        let compressed = encode(&big).unwrap();
        assert_eq!(decode::<ThingV1>(&compressed).unwrap().count, 7);

        // A damaged or cut frame is an error naming the type.
        let mut damaged = compressed.clone();
        let mid = damaged.len() / 2;
        damaged[mid] ^= 0xff;
        assert!(decode::<Bulky>(&damaged).is_err());
        let err = decode::<Bulky>(&compressed[..compressed.len() - 3]).unwrap_err();
        assert!(
            err.to_string().starts_with("bulky: compressed value"),
            "{err}"
        );
    }
}

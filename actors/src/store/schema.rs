//! The schema version of the store and the migrations between versions, run at open before
//! anything else touches the database.

use std::path::Path;

use super::{Space, StoreError, decode_in, encode};

/// The schema version this build writes and understands. Version 2: values carry their own
/// type version ([`crate::codec`]); schema-1 values stay readable and are rewritten lazily.
/// Version 3: new message bodies go to the body files (`store::bodies`), referenced from the
/// `bodies` tree; bodies stored inline in the `raw` tree stay readable where they are.
/// Version 4: bodies and the larger values may be stored compressed ([`crate::compression`]).
/// Version 5: the feed's events are stored in pages, one per transaction (`feed_pages`).
/// Version 6: a new mirrored message keeps its body reference in its own record
/// (`MirrorMessage::body`) instead of under its key in the `bodies` tree.
pub const SCHEMA_VERSION: u32 = 6;
/// The key of the schema version in the `meta` tree.
pub const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";

/// A migration from schema version `n` to `n + 1`. Runs before anything else touches the db.
pub type Migration = fn(&sled::Db) -> Result<(), String>;

/// `MIGRATIONS[i]` upgrades schema version `i + 1` to `i + 2`.
pub const MIGRATIONS: &[Migration] = &[
    to_v2_per_type_versions,
    to_v3_bodies_outside_sled,
    to_v4_compressed_values,
    super::feed_pages::move_legacy_feed,
    to_v6_body_refs_in_records,
];

/// Schema 1 → 2: nothing to rewrite. Each type reads its schema-1 values itself
/// ([`Versioned::from_legacy`]); the bump makes an older build refuse this store with
/// [`StoreError::SchemaTooNew`] instead of misreading tagged values.
fn to_v2_per_type_versions(_db: &sled::Db) -> Result<(), String> {
    Ok(())
}

/// Schema 2 → 3: nothing to move. Inline bodies in `raw` are read where they are and dropped
/// with their message; the bump makes a schema-2 build, which knows no `bodies` tree, refuse
/// this store instead of serving messages without bodies.
fn to_v3_bodies_outside_sled(_db: &sled::Db) -> Result<(), String> {
    Ok(())
}

/// Schema 3 → 4: nothing to rewrite. Stored values and bodies are read as they are, and only
/// new writes are compressed; the bump makes a schema-3 build, which cannot read a compressed
/// value or body, refuse this store instead of failing on the first one it meets.
fn to_v4_compressed_values(_db: &sled::Db) -> Result<(), String> {
    Ok(())
}

/// Schema 5 → 6: nothing to move. Records without a body reference are read through the
/// `bodies` tree as before; the bump makes a schema-5 build, which would look for the bodies
/// of new records only there, refuse this store instead of serving messages without bodies.
fn to_v6_body_refs_in_records(_db: &sled::Db) -> Result<(), String> {
    Ok(())
}

/// Checks the schema version and runs `migrations` up to the current version.
pub(super) fn migrate(
    db: &sled::Db,
    dir: &Path,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let current = u32::try_from(migrations.len() + 1).unwrap_or(u32::MAX);
    let meta = db
        .open_tree(Space::Meta.tree_name())
        .map_err(StoreError::sled("opening the meta tree"))?;
    let found: u32 = match meta
        .get(SCHEMA_VERSION_KEY)
        .map_err(StoreError::sled("reading the schema version"))?
    {
        Some(v) => decode_in("meta/schema_version", &v)?,
        None => {
            // A fresh store: stamp it with the current version.
            meta.insert(SCHEMA_VERSION_KEY, encode(&current))
                .map_err(StoreError::sled("writing the schema version"))?;
            db.flush().map_err(StoreError::sled("flushing"))?;
            return Ok(());
        }
    };
    if found > current {
        return Err(StoreError::SchemaTooNew {
            dir: dir.to_path_buf(),
            found,
            supported: current,
        });
    }
    if found == 0 {
        return Err(StoreError::corrupt("meta/schema_version", "version 0"));
    }
    for version in found..current {
        tracing::info!(
            from = version,
            to = version + 1,
            "Migrating the store schema."
        );
        let step = migrations[(version - 1) as usize];
        step(db).map_err(|reason| StoreError::Migration {
            from: version,
            reason,
        })?;
        meta.insert(SCHEMA_VERSION_KEY, encode(&(version + 1)))
            .map_err(StoreError::sled("writing the schema version"))?;
        db.flush().map_err(StoreError::sled("flushing"))?;
    }
    Ok(())
}

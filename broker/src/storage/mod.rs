//! The node's single RocksDB: column families, key layout, checksummed values and the
//! node-wide group commit.
//!
//! Every Raft group on the node (the metadata group and each shard replica) lives in the
//! same handful of column families, its keys prefixed by the 8-byte big-endian group id.
//! One RocksDB means one write-ahead log: a single fsync makes every group's pending
//! appends durable at once.

pub mod flusher;
pub mod keys;
pub mod reclaim;

pub use flusher::Flusher;
use reclaim::Reclaimer;

use crate::error::Error;
use rocksdb::{ColumnFamilyDescriptor, Options, ReadOptions, SliceTransform, WriteBatch, DB};
use std::path::Path;
use std::sync::Arc;

/// Raft log entries of every group: `(group, log index)`; the entries carry the records.
pub const CF_LOG: &str = "log";
/// Raft's own durable state per group: vote, committed, purge point.
pub const CF_RAFT_META: &str = "raft_meta";
/// `(group, arrival ms, log index)` for AT_TIMESTAMP iterators.
pub const CF_TS_INDEX: &str = "ts_index";
/// State-machine state per group: applied log id, membership, trim horizon.
pub const CF_SM_META: &str = "sm_meta";
const FAMILIES: [&str; 4] = [CF_LOG, CF_RAFT_META, CF_TS_INDEX, CF_SM_META];

/// A value failed its checksum: this replica must not serve it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt value in {family} at key {key}: checksum mismatch")]
    Corrupt { family: &'static str, key: String },
    #[error("undecodable value in {family}: {reason}")]
    Decode { family: &'static str, reason: String },
    #[error(
        "{dir} holds data in storage format {found}, and this build reads format {FORMAT_VERSION}: \
         run the Freshet version that wrote it, or move the directory aside to start empty"
    )]
    Format { dir: String, found: u32 },
}

/// Version of everything this node writes (keys, bincode layouts of Raft entries and state
/// machines). Bumped on any incompatible change, so old data is refused with a clear error
/// instead of misread.
pub const FORMAT_VERSION: u32 = 6;
const FORMAT_KEY: &[u8] = b"freshet-storage-format";

/// Stamps a new store with `FORMAT_VERSION`; refuses a store stamped with another. Stores
/// from before the stamp existed count as format 1.
fn check_format(db: &DB, dir: &Path) -> StorageResult<()> {
    match db.get(FORMAT_KEY)? {
        Some(v) => {
            let found = v.as_slice().try_into().map(u32::from_le_bytes).unwrap_or(0);
            if found != FORMAT_VERSION {
                return Err(StorageError::Format { dir: dir.display().to_string(), found });
            }
        }
        None if has_data(db) => {
            return Err(StorageError::Format { dir: dir.display().to_string(), found: 1 });
        }
        None => {
            db.put(FORMAT_KEY, FORMAT_VERSION.to_le_bytes())?;
            db.flush_wal(true)?;
        }
    }
    Ok(())
}

fn has_data(db: &DB) -> bool {
    db.cf_handle(CF_RAFT_META).is_some_and(|cf| {
        let mut it = db.raw_iterator_cf(cf);
        it.seek_to_first();
        it.valid()
    })
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::internal(format!("storage: {e}"))
    }
}

impl From<StorageError> for std::io::Error {
    fn from(e: StorageError) -> Self {
        std::io::Error::other(e.to_string())
    }
}

pub type StorageResult<T> = std::result::Result<T, StorageError>;

/// The node's database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    pub flusher: Flusher,
    reclaimer: Arc<Reclaimer>,
}

/// Log entries at least this big live in blob files; smaller ones (membership, trims,
/// tiny records) stay in the SST files, where a blob reference would cost as much.
const LOG_BLOB_MIN: u64 = 512;

impl Store {
    pub fn open(dir: &Path) -> StorageResult<Store> {
        Store::open_with(dir, flusher::DEFAULT_LINGER)
    }

    /// Opens with `sync_linger`: how long the group commit waits for company when busy.
    pub fn open_with(dir: &Path, sync_linger: std::time::Duration) -> StorageResult<Store> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(3);
        // Reused WAL files keep their size, so the group-commit fdatasync does not also
        // have to write the file's metadata.
        opts.set_recycle_log_file_num(4);
        // Writes stay in RocksDB's WAL buffer until the group commit writes and syncs them
        // in one go (one write(2) per sync instead of one per write). The WAL is written
        // in order, so a crash keeps a prefix of the writes: never a later without an
        // earlier one.
        opts.set_manual_wal_flush(true);
        let cfs = FAMILIES.iter().map(|name| {
            let mut cf = Options::default();
            cf.set_prefix_extractor(SliceTransform::create_fixed_prefix(8));
            cf.set_memtable_prefix_bloom_ratio(0.05);
            if *name == CF_LOG {
                cf.set_compression_type(rocksdb::DBCompressionType::Lz4);
                cf.set_write_buffer_size(64 << 20);
                // Entries go to blob files when the memtable is flushed, and compactions
                // then move only keys and blob references: an entry is written (and LZ4
                // compressed) once instead of again at every level. A log never updates a
                // value, and retention drops whole prefixes, so old blob files empty out
                // in order; blob GC rewrites the live rest of the oldest quarter. Paired
                // runs (docs/benchmarks.md, 2026-12-04 06:10): batched +15-25% records/s,
                // 15-24% less server CPU per record. Existing data stays readable either way.
                cf.set_enable_blob_files(true);
                cf.set_min_blob_size(LOG_BLOB_MIN);
                cf.set_blob_file_size(64 << 20);
                cf.set_blob_compression_type(rocksdb::DBCompressionType::Lz4);
                cf.set_enable_blob_gc(true);
                // Blob files mix every group's entries, so one that a trimmed stream emptied
                // may still hold a longer-retained stream's values: once the oldest quarter
                // of the files (the default age cutoff) is half garbage, compactions are
                // forced to move those values out, and the files go (`reclaim.rs`).
                cf.set_blob_gc_force_threshold(0.5);
            } else {
                cf.set_write_buffer_size(8 << 20);
            }
            ColumnFamilyDescriptor::new(*name, cf)
        });
        let db = Arc::new(DB::open_cf_descriptors(&opts, dir, cfs)?);
        check_format(&db, dir)?;
        let flusher = Flusher::start(&db, sync_linger);
        let reclaimer = Arc::new(Reclaimer::start(Arc::downgrade(&db)));
        Ok(Store { db, flusher, reclaimer })
    }

    pub fn db(&self) -> &DB {
        &self.db
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column family created at open")
    }

    /// Reads a checksummed value.
    pub fn get(&self, family: &'static str, key: &[u8]) -> StorageResult<Option<Vec<u8>>> {
        match self.db.get_pinned_cf(self.cf(family), key)? {
            None => Ok(None),
            Some(v) => unseal(family, key, &v).map(Some),
        }
    }

    pub fn put(&self, batch: &mut WriteBatch, family: &'static str, key: &[u8], value: &[u8]) {
        batch.put_cf(self.cf(family), key, seal(value));
    }

    pub fn delete(&self, batch: &mut WriteBatch, family: &'static str, key: &[u8]) {
        batch.delete_cf(self.cf(family), key);
    }

    pub fn delete_range(&self, batch: &mut WriteBatch, family: &'static str, from: &[u8], to: &[u8]) {
        batch.delete_range_cf(self.cf(family), from, to);
    }

    /// Gives back the space of `group`'s log entries in `[from, to)` in the background;
    /// call once their range delete is written.
    pub fn reclaim_log(&self, group: u64, from: Vec<u8>, to: Vec<u8>) {
        self.reclaimer.reclaim(group, from, to);
    }

    /// Writes without waiting for the disk: readable at once, durable after the next sync.
    pub fn write(&self, batch: WriteBatch) -> StorageResult<()> {
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(false);
        Ok(self.db.write_opt(batch, &wo)?)
    }

    /// Writes and fsyncs before returning (votes: a node must never forget one).
    pub fn write_sync(&self, batch: WriteBatch) -> StorageResult<()> {
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        Ok(self.db.write_opt(batch, &wo)?)
    }

    /// Iterates checksummed `(key, value)` pairs in `[from, to)` of one family.
    pub fn scan(
        &self,
        family: &'static str,
        from: Vec<u8>,
        to: Vec<u8>,
    ) -> impl Iterator<Item = StorageResult<(Box<[u8]>, Vec<u8>)>> + '_ {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(to);
        ro.set_prefix_same_as_start(true);
        self.db
            .iterator_cf_opt(
                self.cf(family),
                ro,
                rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward),
            )
            .map(move |item| {
                let (k, v) = item?;
                let value = unseal(family, &k, &v)?;
                Ok((k, value))
            })
    }

    /// The last key in `[from, to)` of one family, if any.
    pub fn last_key(
        &self,
        family: &'static str,
        from: Vec<u8>,
        to: Vec<u8>,
    ) -> StorageResult<Option<Box<[u8]>>> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(from);
        ro.set_iterate_upper_bound(to.clone());
        // The target key may carry the next group's prefix: seek in total order.
        ro.set_total_order_seek(true);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(family), ro);
        it.seek_for_prev(&to);
        if it.valid() {
            return Ok(it.key().map(Box::from));
        }
        it.status()?;
        Ok(None)
    }

    /// Group ids that have state on this node (to find replicas left by a deleted stream).
    pub fn groups_on_disk(&self) -> StorageResult<Vec<u64>> {
        let mut groups = Vec::new();
        let mut ro = ReadOptions::default();
        ro.set_total_order_seek(true);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_SM_META), ro);
        it.seek_to_first();
        while it.valid() {
            let g = keys::group_of(it.key().expect("valid"));
            groups.push(g);
            match g.checked_add(1) {
                Some(next) => it.seek(next.to_be_bytes()),
                None => break,
            }
        }
        it.status()?;
        Ok(groups)
    }

    /// Removes everything a group stored, in every family, and reclaims the space.
    pub fn destroy_group(&self, group: u64) -> StorageResult<()> {
        let (from, to) = keys::group_bounds(group);
        let mut batch = WriteBatch::default();
        for family in FAMILIES {
            self.delete_range(&mut batch, family, &from, &to);
        }
        self.write_sync(batch)?;
        for family in FAMILIES {
            self.db.compact_range_cf(self.cf(family), Some(&from), Some(&to));
        }
        Ok(())
    }
}

/// `crc32(value) (4 bytes LE) || value`.
fn seal(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 4);
    out.extend_from_slice(&crc32fast::hash(value).to_le_bytes());
    out.extend_from_slice(value);
    out
}

fn unseal(family: &'static str, key: &[u8], stored: &[u8]) -> StorageResult<Vec<u8>> {
    let corrupt = || StorageError::Corrupt { family, key: keys::describe(key) };
    if stored.len() < 4 {
        return Err(corrupt());
    }
    let (sum, value) = stored.split_at(4);
    if crc32fast::hash(value).to_le_bytes() != sum {
        return Err(corrupt());
    }
    Ok(value.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_of_another_format_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let reopened = Store::open(dir.path()).expect("the same format reopens");
        reopened.db().put(FORMAT_KEY, 9u32.to_le_bytes()).unwrap();
        drop(reopened);
        let err = Store::open(dir.path()).err().expect("format 9 is refused").to_string();
        assert!(err.contains("storage format 9") && err.contains("move the directory aside"), "{err}");
    }

    #[test]
    fn checksum_detects_a_flipped_bit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = keys::log(7, 1);
        let mut b = WriteBatch::default();
        store.put(&mut b, CF_LOG, &key, b"hello");
        store.write_sync(b).unwrap();
        assert_eq!(store.get(CF_LOG, &key).unwrap().unwrap(), b"hello");
        // Corrupt the stored bytes behind the checksum's back.
        let mut raw = store.db().get_cf(store.cf(CF_LOG), &key).unwrap().unwrap();
        raw[5] ^= 0x01;
        store.db().put_cf(store.cf(CF_LOG), &key, raw).unwrap();
        assert!(matches!(store.get(CF_LOG, &key), Err(StorageError::Corrupt { .. })));
    }

    fn blob_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("blob".as_ref()))
            .count()
    }

    #[test]
    fn flushed_entries_live_in_blob_files_checked_and_go_with_their_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let entry = |g: u64, i: u64| vec![(g * 31 + i) as u8; 2048];
        let mut b = WriteBatch::default();
        for g in [1u64, 2] {
            for i in 0..50 {
                store.put(&mut b, CF_LOG, &keys::log(g, i), &entry(g, i));
            }
        }
        store.put(&mut b, CF_LOG, &keys::log(1, 50), b"small");
        store.write_sync(b).unwrap();
        store.db().flush_cf(store.cf(CF_LOG)).unwrap();
        assert_eq!(blob_files(dir.path()), 1, "the flush wrote the entries to one blob file");
        for g in [1u64, 2] {
            for i in 0..50 {
                assert_eq!(store.get(CF_LOG, &keys::log(g, i)).unwrap().unwrap(), entry(g, i));
            }
        }
        assert_eq!(store.get(CF_LOG, &keys::log(1, 50)).unwrap().unwrap(), b"small");
        // The checksum still covers a value that lives in a blob file.
        let key = keys::log(2, 7);
        let mut raw = store.db().get_cf(store.cf(CF_LOG), &key).unwrap().unwrap();
        raw[100] ^= 0x01;
        store.db().put_cf(store.cf(CF_LOG), &key, raw).unwrap();
        store.db().flush_cf(store.cf(CF_LOG)).unwrap();
        assert!(matches!(store.get(CF_LOG, &key), Err(StorageError::Corrupt { .. })));
        // Destroying both groups leaves no blob file behind.
        store.destroy_group(1).unwrap();
        store.destroy_group(2).unwrap();
        assert_eq!(blob_files(dir.path()), 0, "a destroyed group's blob files are deleted");
    }

    #[test]
    fn groups_are_isolated_and_destroyable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = WriteBatch::default();
        for g in [1u64, 2, 3] {
            for i in 0..5 {
                store.put(&mut b, CF_LOG, &keys::log(g, i), &[g as u8]);
            }
            store.put(&mut b, CF_SM_META, &keys::meta(g, keys::APPLIED), b"x");
        }
        store.write_sync(b).unwrap();
        assert_eq!(store.groups_on_disk().unwrap(), vec![1, 2, 3]);
        let (from, to) = keys::log_range(2, 0, u64::MAX);
        assert_eq!(store.scan(CF_LOG, from, to).count(), 5);
        store.destroy_group(2).unwrap();
        assert_eq!(store.groups_on_disk().unwrap(), vec![1, 3]);
        let (from, to) = keys::log_range(2, 0, u64::MAX);
        assert_eq!(store.scan(CF_LOG, from, to).count(), 0);
        let (from, to) = keys::log_range(3, 0, u64::MAX);
        assert_eq!(store.scan(CF_LOG, from.clone(), to.clone()).count(), 5);
        assert_eq!(store.last_key(CF_LOG, from, to).unwrap().map(|k| keys::index_of(&k)), Some(4));
    }
}

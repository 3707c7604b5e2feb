//! Producer ids for idempotent producers: unique for the life of the log
//! directory, handed out from blocks reserved durably in the
//! `producer-id-block` file (as Kafka's controller reserves blocks of 1000).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::{Error, IoContext, Result};
use crate::log::Log;
use crate::storage::checkpoint::write_atomically;

/// File holding the first producer id not yet reserved.
const PRODUCER_ID_BLOCK_FILE: &str = "producer-id-block";
/// Ids reserved per write of the block file.
const BLOCK_SIZE: i64 = 1000;

pub(crate) struct ProducerIdAllocator {
    path: PathBuf,
    /// (next id to hand out, first id not reserved).
    range: Mutex<(i64, i64)>,
}

impl ProducerIdAllocator {
    pub(crate) fn open(dir: &Path) -> Result<ProducerIdAllocator> {
        let path = dir.join(PRODUCER_ID_BLOCK_FILE);
        let reserved_end = match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<i64>().map_err(|_| Error::Corrupt {
                path: path.clone(),
                reason: format!("{text:?} is not a producer id"),
            })?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => 0,
            Err(err) => return Err(err).at(&path),
        };
        // Ids below the reserved end may have been handed out before a
        // crash: start after them.
        Ok(ProducerIdAllocator {
            path,
            range: Mutex::new((reserved_end, reserved_end)),
        })
    }

    pub(crate) fn next(&self) -> Result<i64> {
        let mut range = self.range.lock();
        if range.0 == range.1 {
            let end = range.1 + BLOCK_SIZE;
            write_atomically(&self.path, format!("{end}\n").as_bytes(), true).at(&self.path)?;
            range.1 = end;
        }
        let id = range.0;
        range.0 += 1;
        Ok(id)
    }
}

impl Log {
    /// A producer id never handed out before in this log directory, with
    /// epoch 0: the identity of an idempotent producer.
    pub fn init_producer_id(&self) -> Result<(i64, i16)> {
        self.check_open()?;
        Ok((self.inner.registry.producer_ids.next()?, 0))
    }
}

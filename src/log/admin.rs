//! Topic administration: create, list, describe, delete, add partitions.

use std::fs;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::config::TopicConfig;
use crate::error::{Error, IoContext, Result};
use crate::log::{Log, Topic};
use crate::storage::checkpoint::sync_dir;
use crate::storage::{PartitionContext, PartitionLog};
use crate::topics::{partition_dir, remove_config, store_config, validate_topic_name};

/// A topic as [`Log::describe_topic`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDescription {
    /// The topic's name.
    pub name: String,
    /// Its configuration.
    pub config: TopicConfig,
    /// Each partition, in order.
    pub partitions: Vec<PartitionDescription>,
}

/// One partition in a [`TopicDescription`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The partition number.
    pub partition: u32,
    /// The first offset still in the log.
    pub log_start_offset: i64,
    /// Readers see offsets below it.
    pub high_watermark: i64,
    /// The offset the next record gets.
    pub log_end_offset: i64,
    /// How many segment files the partition has.
    pub segment_count: usize,
    /// Bytes in its segment files.
    pub size_bytes: u64,
}

impl Log {
    /// Creates a topic with `config.partitions` partitions. The name must
    /// follow Kafka's rules; see [`validate_topic_name`].
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        validate_topic_name(name)?;
        config.validate()?;
        self.check_open()?;
        let _admin = self.inner.admin_lock.lock();
        if self.inner.registry.topics.read().contains_key(name) {
            return Err(Error::TopicAlreadyExists(name.to_owned()));
        }
        let config = Arc::new(config);
        let partitions = match self.create_partitions(name, &config, 0..config.partitions) {
            Ok(partitions) => partitions,
            Err(err) => {
                self.remove_partition_dirs(name, 0..config.partitions);
                return Err(err);
            }
        };
        // The configuration file is the commit point: without it the
        // partition directories are leftovers that a later create clears.
        if let Err(err) = store_config(self.dir(), name, &config) {
            self.remove_partition_dirs(name, 0..config.partitions);
            return Err(err);
        }
        let topic = Topic {
            name: name.to_owned(),
            config,
            partitions: RwLock::new(partitions),
        };
        self.inner
            .registry
            .topics
            .write()
            .insert(name.to_owned(), Arc::new(topic));
        self.bump_metadata_version();
        Ok(())
    }

    fn create_partitions(
        &self,
        name: &str,
        config: &Arc<TopicConfig>,
        range: std::ops::Range<u32>,
    ) -> Result<Vec<Arc<PartitionLog>>> {
        let registry = &self.inner.registry;
        let mut created = Vec::new();
        for partition in range {
            let dir = partition_dir(&registry.dir, name, partition);
            if dir.exists() {
                // Left by a delete or create that crashed before its commit.
                fs::remove_dir_all(&dir).at(&dir)?;
            }
            let ctx = PartitionContext {
                topic: name,
                partition,
                dir,
                config: Arc::clone(config),
                clock: Arc::clone(&registry.clock),
                background: Arc::clone(&registry.background),
            };
            created.push(Arc::new(PartitionLog::create(ctx)?));
        }
        sync_dir(&registry.dir).at(&registry.dir)?;
        Ok(created)
    }

    fn remove_partition_dirs(&self, name: &str, range: std::ops::Range<u32>) {
        for partition in range {
            // Best effort: what is left is cleared by the next create.
            let _ = fs::remove_dir_all(partition_dir(self.dir(), name, partition));
        }
    }

    /// The names of all topics, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.inner.registry.topics.read().keys().cloned().collect()
    }

    /// A topic's configuration and the state of each partition.
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let topic = self.topic(name)?;
        let partitions = topic
            .partitions
            .read()
            .iter()
            .enumerate()
            .map(|(i, log)| {
                let state = log.state.lock();
                PartitionDescription {
                    partition: u32::try_from(i).unwrap_or(u32::MAX),
                    log_start_offset: state.log_start_offset,
                    high_watermark: state.high_watermark,
                    log_end_offset: state.next_offset,
                    segment_count: state.segments.len(),
                    size_bytes: state.segments.iter().map(|s| s.size()).sum(),
                }
            })
            .collect();
        Ok(TopicDescription {
            name: topic.name.clone(),
            config: TopicConfig::clone(&topic.config)
                .partitions(topic.partitions.read().len() as u32),
            partitions,
        })
    }

    /// Deletes a topic and its files. Readers holding its data keep what
    /// they have; further calls for the topic fail with
    /// [`Error::UnknownTopic`].
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        self.check_open()?;
        let _admin = self.inner.admin_lock.lock();
        let topic = self.topic(name)?;
        remove_config(self.dir(), name)?;
        self.inner.registry.topics.write().remove(name);
        self.bump_metadata_version();
        let partitions = topic.partitions.read().clone();
        for partition in &partitions {
            partition.mark_closed();
        }
        let mut first_error = None;
        for partition in &partitions {
            let dir = partition.dir();
            if let Err(err) = fs::remove_dir_all(dir) {
                first_error.get_or_insert(Error::Io {
                    path: dir.to_owned(),
                    source: err,
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Grows a topic to `partition_count` partitions (Kafka's
    /// CreatePartitions: the count can only grow).
    pub fn add_partitions(&self, name: &str, partition_count: u32) -> Result<()> {
        self.check_open()?;
        let _admin = self.inner.admin_lock.lock();
        let topic = self.topic(name)?;
        let current = u32::try_from(topic.partitions.read().len()).unwrap_or(u32::MAX);
        if partition_count <= current {
            return Err(Error::InvalidConfig(format!(
                "topic {name:?} has {current} partitions; the count can only grow"
            )));
        }
        let config = TopicConfig::clone(&topic.config).partitions(partition_count);
        config.validate()?;
        let new = match self.create_partitions(name, &topic.config, current..partition_count) {
            Ok(new) => new,
            Err(err) => {
                self.remove_partition_dirs(name, current..partition_count);
                return Err(err);
            }
        };
        store_config(self.dir(), name, &config)?;
        topic.partitions.write().extend(new);
        self.bump_metadata_version();
        Ok(())
    }
}

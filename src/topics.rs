//! Topic names and the topic registry on disk: one
//! `topics/<name>.properties` file per topic, in Kafka's configuration keys.
//! The file is the commit point of creating (and deleting) a topic.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{CleanupPolicy, Durability, TimestampType, TopicConfig};
use crate::error::{Error, IoContext, Result};
use crate::storage::checkpoint::{sync_dir, write_atomically};

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Directory of topic configuration files inside the log directory.
pub(crate) const TOPICS_DIR: &str = "topics";
const CONFIG_SUFFIX: &str = ".properties";

/// Checks a topic name against Kafka's rules. A valid name can never point
/// outside the log directory.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidTopicName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid("it is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// The directory of one partition: `<log dir>/<topic>-<partition>`.
pub(crate) fn partition_dir(root: &Path, topic: &str, partition: u32) -> PathBuf {
    root.join(format!("{topic}-{partition}"))
}

fn config_path(root: &Path, topic: &str) -> PathBuf {
    root.join(TOPICS_DIR)
        .join(format!("{topic}{CONFIG_SUFFIX}"))
}

/// Kafka's "never" for `flush.messages`, `flush.ms` and
/// `max.compaction.lag.ms`.
const NEVER: i64 = i64::MAX;

/// Renders a topic's configuration in Kafka's keys.
pub(crate) fn render_config(config: &TopicConfig) -> String {
    let (flush_messages, flush_ms) = match config.durability {
        Durability::Os => (NEVER, NEVER),
        Durability::EveryAppend => (1, NEVER),
        Durability::Interval(interval) => {
            (NEVER, i64::try_from(interval.as_millis()).unwrap_or(NEVER))
        }
    };
    let timestamp_type = match config.timestamp_type {
        TimestampType::CreateTime => "CreateTime",
        TimestampType::LogAppendTime => "LogAppendTime",
    };
    let cleanup = match config.cleanup_policy {
        CleanupPolicy::Delete => "delete",
        CleanupPolicy::Compact => "compact",
        CleanupPolicy::CompactDelete => "compact,delete",
    };
    let lines = [
        "# brooklet topic configuration, in Kafka's keys".to_owned(),
        format!("partitions={}", config.partitions),
        format!("segment.bytes={}", config.segment_bytes),
        format!("segment.ms={}", config.segment_ms),
        format!("segment.index.bytes={}", config.segment_index_bytes),
        format!("index.interval.bytes={}", config.index_interval_bytes),
        format!("max.message.bytes={}", config.max_message_bytes),
        format!("flush.messages={flush_messages}"),
        format!("flush.ms={flush_ms}"),
        format!("message.timestamp.type={timestamp_type}"),
        format!("cleanup.policy={cleanup}"),
        format!("retention.ms={}", config.retention_ms.unwrap_or(-1)),
        format!(
            "retention.bytes={}",
            config
                .retention_bytes
                .map_or(-1, |b| i64::try_from(b).unwrap_or(NEVER))
        ),
        format!("delete.retention.ms={}", config.delete_retention_ms),
        format!(
            "min.cleanable.dirty.ratio={}",
            f64::from(config.min_cleanable_dirty_ratio_percent) / 100.0
        ),
        format!("min.compaction.lag.ms={}", config.min_compaction_lag_ms),
        format!(
            "max.compaction.lag.ms={}",
            config.max_compaction_lag_ms.unwrap_or(NEVER)
        ),
    ];
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Parses what [`render_config`] wrote. Unknown keys are an error, so a
/// typo in a hand-edited file is not silently ignored.
pub(crate) fn parse_config(path: &Path, text: &str) -> Result<TopicConfig> {
    let bad = |reason: String| Error::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let mut config = TopicConfig::default();
    let (mut flush_messages, mut flush_ms) = (NEVER, NEVER);
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| bad(format!("line {line:?} is not key=value")))?;
        let (key, value) = (key.trim(), value.trim());
        let int = || {
            value
                .parse::<i64>()
                .map_err(|_| bad(format!("{key}={value} is not an integer")))
        };
        let uint = || {
            value
                .parse::<u32>()
                .map_err(|_| bad(format!("{key}={value} is out of range")))
        };
        match key {
            "partitions" => config.partitions = uint()?,
            "segment.bytes" => config.segment_bytes = uint()?,
            "segment.ms" => config.segment_ms = int()?,
            "segment.index.bytes" => config.segment_index_bytes = uint()?,
            "index.interval.bytes" => config.index_interval_bytes = uint()?,
            "max.message.bytes" => config.max_message_bytes = uint()?,
            "flush.messages" => flush_messages = int()?,
            "flush.ms" => flush_ms = int()?,
            "message.timestamp.type" => {
                config.timestamp_type = match value {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(bad(format!("unknown timestamp type {value:?}"))),
                }
            }
            "cleanup.policy" => {
                config.cleanup_policy = match value {
                    "delete" => CleanupPolicy::Delete,
                    "compact" => CleanupPolicy::Compact,
                    "compact,delete" | "delete,compact" => CleanupPolicy::CompactDelete,
                    _ => return Err(bad(format!("unknown cleanup policy {value:?}"))),
                }
            }
            "retention.ms" => config.retention_ms = Some(int()?).filter(|&ms| ms >= 0),
            "retention.bytes" => config.retention_bytes = u64::try_from(int()?).ok(),
            "delete.retention.ms" => config.delete_retention_ms = int()?,
            "min.cleanable.dirty.ratio" => {
                let ratio: f64 = value
                    .parse()
                    .map_err(|_| bad(format!("{key}={value} is not a number")))?;
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(bad(format!("{key}={value} is not between 0 and 1")));
                }
                config.min_cleanable_dirty_ratio_percent = (ratio * 100.0).round() as u8;
            }
            "min.compaction.lag.ms" => config.min_compaction_lag_ms = int()?,
            "max.compaction.lag.ms" => {
                config.max_compaction_lag_ms = Some(int()?).filter(|&ms| ms != NEVER)
            }
            _ => return Err(bad(format!("unknown setting {key:?}"))),
        }
    }
    config.durability = if flush_messages == 1 {
        Durability::EveryAppend
    } else if flush_ms != NEVER {
        let ms = u64::try_from(flush_ms).map_err(|_| bad("flush.ms is negative".into()))?;
        Durability::Interval(Duration::from_millis(ms))
    } else if flush_messages == NEVER {
        Durability::Os
    } else {
        return Err(bad(format!(
            "flush.messages={flush_messages} is not supported (only 1 or never)"
        )));
    };
    config.validate().map_err(|err| bad(err.to_string()))?;
    Ok(config)
}

/// Writes (or replaces) a topic's configuration file durably.
pub(crate) fn store_config(root: &Path, topic: &str, config: &TopicConfig) -> Result<()> {
    let dir = root.join(TOPICS_DIR);
    fs::create_dir_all(&dir).at(&dir)?;
    let path = config_path(root, topic);
    write_atomically(&path, render_config(config).as_bytes(), true).at(&path)
}

/// Removes a topic's configuration file durably: the topic is gone.
pub(crate) fn remove_config(root: &Path, topic: &str) -> Result<()> {
    let path = config_path(root, topic);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).at(&path),
    }
    let dir = root.join(TOPICS_DIR);
    sync_dir(&dir).at(&dir)
}

/// Every topic with its configuration, by name.
pub(crate) fn load_configs(root: &Path) -> Result<Vec<(String, TopicConfig)>> {
    let dir = root.join(TOPICS_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).at(&dir),
    };
    let mut topics = Vec::new();
    for entry in entries {
        let entry = entry.at(&dir)?;
        let path = entry.path();
        let Some(name) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(CONFIG_SUFFIX))
            .map(str::to_owned)
        else {
            continue;
        };
        if validate_topic_name(&name).is_err() {
            continue;
        }
        let text = fs::read_to_string(&path).at(&path)?;
        topics.push((name, parse_config(&path, &text)?));
    }
    topics.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafkas_rules() {
        for good in [
            "a",
            "orders",
            "a.b_c-d",
            "A9",
            &"x".repeat(249),
            ".hidden",
            "...",
        ] {
            assert!(
                validate_topic_name(good).is_ok(),
                "{good:?} should be valid"
            );
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../etc",
            "a b",
            "ü",
            "a\0",
            &"x".repeat(250),
            "a:b",
        ] {
            assert!(
                matches!(
                    validate_topic_name(bad),
                    Err(Error::InvalidTopicName { .. })
                ),
                "{bad:?} should be invalid"
            );
        }
    }

    #[test]
    fn configs_round_trip() {
        let config = TopicConfig::default()
            .partitions(7)
            .segment_bytes(4096)
            .durability(Durability::Interval(Duration::from_millis(250)))
            .timestamp_type(TimestampType::LogAppendTime)
            .cleanup_policy(CleanupPolicy::CompactDelete)
            .retention_ms(None)
            .retention_bytes(Some(1 << 20))
            .max_compaction_lag_ms(Some(60_000));
        let text = render_config(&config);
        assert_eq!(parse_config(Path::new("t"), &text).expect("parses"), config);
        let every = TopicConfig::default().durability(Durability::EveryAppend);
        assert_eq!(
            parse_config(Path::new("t"), &render_config(&every)).expect("parses"),
            every
        );
        assert!(parse_config(Path::new("t"), "segmnt.bytes=5\n").is_err());
    }
}

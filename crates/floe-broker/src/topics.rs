//! Topic administration through the sequencer.

use floe_core::{TopicConfig, TopicId, validate_topic_name};
use floe_sequencer::{Command, Outcome, SequencerError};

use crate::Broker;
use crate::error::BrokerError;

/// A topic with its configuration and per-partition offsets.
#[derive(Debug, Clone)]
pub struct TopicDescription {
    pub name: String,
    pub id: TopicId,
    pub config: TopicConfig,
    pub created_ms: i64,
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub partition: u32,
    pub log_start_offset: u64,
    pub high_watermark: u64,
    pub size_bytes: u64,
    /// The broker that owns the partition (for locality and background jobs); empty
    /// while no live broker is assigned.
    pub owner: String,
    /// Bumped each time the owner changes.
    pub owner_epoch: u64,
}

impl Broker {
    /// Changes a topic's configuration: `set` keys to values, `reset` keys to defaults.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        set: std::collections::BTreeMap<String, String>,
        reset: Vec<String>,
    ) -> Result<TopicDescription, BrokerError> {
        let current = self
            .inner
            .sequencer
            .read(|state| state.topic(name).map(|topic| topic.config.clone()))
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_owned()))?;
        // Checked here for a clear answer; the state machine checks again on apply.
        current.altered(&set, &reset)?;
        self.inner
            .sequencer
            .submit(Command::AlterTopicConfig {
                name: name.to_owned(),
                set,
                reset,
            })
            .await?;
        self.describe_topic(name)
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<TopicDescription, BrokerError> {
        validate_topic_name(name)?;
        self.check_cluster_limits(1, u64::from(partitions))?;
        let command = Command::CreateTopic {
            name: name.to_owned(),
            partitions,
            config,
            created_ms: self.inner.clock.now_ms(),
        };
        self.inner.sequencer.submit(command).await?;
        self.describe_topic(name)
    }

    /// Refuses a change that would take the cluster past `broker.max_topics` or
    /// `broker.max_partitions`. Checked on this broker's replica before the command is
    /// submitted, so creations racing on several brokers may overshoot by what they add.
    fn check_cluster_limits(
        &self,
        new_topics: u64,
        new_partitions: u64,
    ) -> Result<(), BrokerError> {
        let (topics, partitions) = self.inner.sequencer.read(|state| {
            state
                .topics()
                .fold((0u64, 0u64), |(topics, partitions), topic| {
                    (topics + 1, partitions + u64::from(topic.partition_count()))
                })
        });
        let options = &self.inner.options;
        if new_topics > 0 && topics + new_topics > options.max_topics {
            return Err(BrokerError::LimitReached(format!(
                "the cluster has {topics} topics; broker.max_topics is {}",
                options.max_topics
            )));
        }
        if partitions + new_partitions > options.max_partitions {
            return Err(BrokerError::LimitReached(format!(
                "the cluster has {partitions} partitions and this adds {new_partitions}; \
                 broker.max_partitions is {}",
                options.max_partitions
            )));
        }
        Ok(())
    }

    /// Deletes a topic. Every replica releases the topic's index under its state's write
    /// lock, which took 81 ms for 288,000 entries (docs/benchmarks.md): a large index is
    /// first trimmed away in bounded steps, as retention does, and the delete releases
    /// only what an export holds and what was produced meanwhile. A delete that fails
    /// after a step leaves the topic with fewer records; deleting it again finishes.
    pub async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        // The steps go no further than each partition's end now. A topic this replica
        // does not know (yet) goes straight to the delete, which the leader judges.
        let began = self.inner.sequencer.read(|state| {
            state.topic(name).map(|topic| {
                let ends: Vec<u64> = topic.partitions.iter().map(|p| p.high_watermark).collect();
                (topic.id, ends)
            })
        });
        while let Some((id, ends)) = &began {
            let step = self.inner.sequencer.read(|state| {
                state
                    .topic(name)
                    .filter(|topic| topic.id == *id)
                    .map(|topic| crate::jobs::retention::delete_step(topic, ends))
            });
            // Deleted meanwhile (and perhaps created again): the delete below judges.
            let Some((trims, cut)) = step else {
                break;
            };
            if trims.is_empty() {
                break;
            }
            let command = Command::TrimPartitions {
                at_ms: self.inner.clock.now_ms(),
                trims,
            };
            let moved = match self.inner.sequencer.submit(command).await? {
                Outcome::Trimmed(moved) => moved,
                _ => 0,
            };
            // Not cut short: the rest is held by an export or came after the delete
            // began. Nothing moved: the state held the starts back (a hold that moved
            // since the plan). Either way, the delete releases what is left.
            if !cut || moved == 0 {
                break;
            }
        }
        let command = Command::DeleteTopic {
            name: name.to_owned(),
            at_ms: self.inner.clock.now_ms(),
        };
        match self.inner.sequencer.submit(command).await {
            Ok(_) => Ok(()),
            Err(SequencerError::Rejected(floe_sequencer::ApplyError::UnknownTopic(name))) => {
                Err(BrokerError::UnknownTopic(name))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Grows a topic to `count` partitions.
    pub async fn add_partitions(
        &self,
        name: &str,
        count: u32,
    ) -> Result<TopicDescription, BrokerError> {
        let current = self
            .inner
            .sequencer
            .read(|state| state.topic(name).map(|topic| topic.partition_count()));
        if let Some(current) = current {
            self.check_cluster_limits(0, u64::from(count.saturating_sub(current)))?;
        }
        let command = Command::AddPartitions {
            name: name.to_owned(),
            count,
        };
        match self.inner.sequencer.submit(command).await {
            Ok(Outcome::PartitionsAdded { .. }) => self.describe_topic(name),
            Ok(other) => Err(BrokerError::Corrupt(format!(
                "unexpected outcome {other:?}"
            ))),
            Err(SequencerError::Rejected(floe_sequencer::ApplyError::UnknownTopic(name))) => {
                Err(BrokerError::UnknownTopic(name))
            }
            Err(error) => Err(error.into()),
        }
    }

    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription, BrokerError> {
        let membership = self.inner.sequencer.membership();
        self.inner
            .sequencer
            .read(|state| {
                state.topic(name).map(|topic| TopicDescription {
                    name: topic.name.clone(),
                    id: topic.id,
                    config: topic.config.clone(),
                    created_ms: topic.created_ms,
                    partitions: topic
                        .partitions
                        .iter()
                        .enumerate()
                        .map(|(index, partition)| PartitionInfo {
                            partition: index as u32,
                            log_start_offset: partition.log_start_offset,
                            high_watermark: partition.high_watermark,
                            size_bytes: partition.size_bytes,
                            owner: membership
                                .owner_of(partition.owner.as_deref())
                                .unwrap_or_default(),
                            owner_epoch: partition.owner_epoch,
                        })
                        .collect(),
                })
            })
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_owned()))
    }

    pub fn list_topics(&self) -> Vec<(String, u32)> {
        self.inner.sequencer.read(|state| {
            state
                .topics()
                .map(|topic| (topic.name.clone(), topic.partition_count()))
                .collect()
        })
    }
}

//! Partition assignors, as Kafka's consumer defines them: range (the
//! default), round-robin, sticky and cooperative-sticky.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::consumer::TopicPartition;

/// How a group divides partitions among its members
/// (`partition.assignment.strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AssignmentStrategy {
    /// Kafka's `RangeAssignor`: per topic, consecutive ranges of partitions
    /// to members in order. The default.
    #[default]
    Range,
    /// Kafka's `RoundRobinAssignor`: all partitions dealt out in turn.
    RoundRobin,
    /// Kafka's `StickyAssignor`: balanced, moving as few partitions as
    /// possible; every rebalance revokes everything first (eager).
    Sticky,
    /// Kafka's `CooperativeStickyAssignor`: the sticky assignment, but
    /// members keep consuming the partitions that stay and only moved
    /// partitions are revoked (incremental rebalancing).
    CooperativeSticky,
}

impl AssignmentStrategy {
    /// Whether the strategy rebalances incrementally.
    pub fn is_cooperative(self) -> bool {
        self == AssignmentStrategy::CooperativeSticky
    }

    /// Kafka's name of the strategy.
    pub fn name(self) -> &'static str {
        match self {
            AssignmentStrategy::Range => "range",
            AssignmentStrategy::RoundRobin => "roundrobin",
            AssignmentStrategy::Sticky => "sticky",
            AssignmentStrategy::CooperativeSticky => "cooperative-sticky",
        }
    }
}

/// What an assignor knows of one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSubscription {
    /// The member id.
    pub member_id: String,
    /// The static instance id, if any: members are ordered by it.
    pub instance_id: Option<String>,
    /// The topics the member subscribes to.
    pub topics: BTreeSet<String>,
    /// The partitions it owns now (sticky assignors keep them).
    pub owned: Vec<TopicPartition>,
}

/// Kafka's `MemberInfo` order: static members by instance id first, then
/// dynamic members by member id.
fn member_order(a: &MemberSubscription, b: &MemberSubscription) -> Ordering {
    match (&a.instance_id, &b.instance_id) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    }
}

/// Member id → assigned partitions (every member appears, maybe empty).
pub type Assignment = BTreeMap<String, Vec<TopicPartition>>;

/// Assigns the partitions of `partitions_per_topic` to `members`.
pub fn assign(
    strategy: AssignmentStrategy,
    members: &[MemberSubscription],
    partitions_per_topic: &BTreeMap<String, u32>,
) -> Assignment {
    let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
    sorted.sort_by(|a, b| member_order(a, b));
    let mut assignment: Assignment = members
        .iter()
        .map(|m| (m.member_id.clone(), Vec::new()))
        .collect();
    match strategy {
        AssignmentStrategy::Range => range(&sorted, partitions_per_topic, &mut assignment),
        AssignmentStrategy::RoundRobin => {
            round_robin(&sorted, partitions_per_topic, &mut assignment)
        }
        AssignmentStrategy::Sticky | AssignmentStrategy::CooperativeSticky => {
            sticky(&sorted, partitions_per_topic, &mut assignment)
        }
    }
    for partitions in assignment.values_mut() {
        partitions.sort();
    }
    assignment
}

fn range(
    sorted: &[&MemberSubscription],
    partitions_per_topic: &BTreeMap<String, u32>,
    out: &mut Assignment,
) {
    for (topic, &count) in partitions_per_topic {
        let consumers: Vec<_> = sorted.iter().filter(|m| m.topics.contains(topic)).collect();
        if consumers.is_empty() {
            continue;
        }
        let per_consumer = count as usize / consumers.len();
        let extra = count as usize % consumers.len();
        for (i, member) in consumers.iter().enumerate() {
            let start = per_consumer * i + i.min(extra);
            let length = per_consumer + usize::from(i < extra);
            let partitions = out.entry(member.member_id.clone()).or_default();
            for partition in start..start + length {
                partitions.push(TopicPartition::new(topic.clone(), partition as u32));
            }
        }
    }
}

fn round_robin(
    sorted: &[&MemberSubscription],
    partitions_per_topic: &BTreeMap<String, u32>,
    out: &mut Assignment,
) {
    if sorted.is_empty() {
        return;
    }
    let mut next = 0usize;
    for (topic, &count) in partitions_per_topic {
        if !sorted.iter().any(|m| m.topics.contains(topic)) {
            continue;
        }
        for partition in 0..count {
            // Kafka's circular iterator: skip members not subscribed.
            while !sorted[next % sorted.len()].topics.contains(topic) {
                next += 1;
            }
            let member = sorted[next % sorted.len()];
            out.entry(member.member_id.clone())
                .or_default()
                .push(TopicPartition::new(topic.clone(), partition));
            next += 1;
        }
    }
}

/// Balanced and sticky: members keep what they own as far as balance
/// allows (Kafka's sticky assignors' goals), the rest goes to the least
/// loaded eligible members, in a fixed order so the result is
/// deterministic.
fn sticky(
    sorted: &[&MemberSubscription],
    partitions_per_topic: &BTreeMap<String, u32>,
    out: &mut Assignment,
) {
    let all: Vec<TopicPartition> = partitions_per_topic
        .iter()
        .flat_map(|(topic, &count)| (0..count).map(move |p| TopicPartition::new(topic.clone(), p)))
        .filter(|tp| sorted.iter().any(|m| m.topics.contains(&tp.topic)))
        .collect();
    if sorted.is_empty() || all.is_empty() {
        return;
    }
    let total = all.len();
    let members = sorted.len();
    let min_quota = total / members;
    // How many members may hold one more than the minimum.
    let mut over_quota_slots = total % members;
    let exists: HashSet<&TopicPartition> = all.iter().collect();
    let mut taken: HashSet<TopicPartition> = HashSet::new();
    let mut load: HashMap<&str, usize> = HashMap::new();

    // 1. Keep owned partitions, members with the most owned first, up to
    //    their quota.
    let mut by_owned: Vec<&&MemberSubscription> = sorted.iter().collect();
    by_owned.sort_by(|a, b| {
        b.owned
            .len()
            .cmp(&a.owned.len())
            .then_with(|| member_order(a, b))
    });
    for member in by_owned {
        let mut owned: Vec<&TopicPartition> = member
            .owned
            .iter()
            .filter(|tp| exists.contains(tp) && member.topics.contains(&tp.topic))
            .collect();
        owned.sort();
        let quota = if owned.len() > min_quota && over_quota_slots > 0 {
            over_quota_slots -= 1;
            min_quota + 1
        } else {
            min_quota
        };
        let kept = out.entry(member.member_id.clone()).or_default();
        for tp in owned.into_iter().take(quota) {
            if taken.insert(tp.clone()) {
                kept.push(tp.clone());
            }
        }
        load.insert(member.member_id.as_str(), kept.len());
    }
    // 2. Deal out the rest to the least-loaded eligible member (ties in
    //    member order), respecting the remaining over-quota slots.
    for tp in all.iter().filter(|tp| !taken.contains(*tp)) {
        let eligible = sorted.iter().filter(|m| m.topics.contains(&tp.topic));
        let best = eligible
            .filter(|m| {
                let current = load.get(m.member_id.as_str()).copied().unwrap_or(0);
                current < min_quota
                    || (current == min_quota && over_quota_slots > 0)
                    || min_quota == 0
            })
            .min_by_key(|m| load.get(m.member_id.as_str()).copied().unwrap_or(0))
            .or_else(|| {
                sorted
                    .iter()
                    .filter(|m| m.topics.contains(&tp.topic))
                    .min_by_key(|m| load.get(m.member_id.as_str()).copied().unwrap_or(0))
            });
        let Some(member) = best else { continue };
        let current = load.entry(member.member_id.as_str()).or_insert(0);
        if *current == min_quota && over_quota_slots > 0 {
            over_quota_slots -= 1;
        }
        *current += 1;
        out.entry(member.member_id.clone())
            .or_default()
            .push(tp.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_owned(),
            instance_id: None,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            owned: Vec::new(),
        }
    }

    fn tps(list: &[(&str, u32)]) -> Vec<TopicPartition> {
        list.iter()
            .map(|(t, p)| TopicPartition::new(*t, *p))
            .collect()
    }

    fn topics(list: &[(&str, u32)]) -> BTreeMap<String, u32> {
        list.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
    }

    #[test]
    fn range_matches_kafkas_two_consumers_two_topics_three_partitions() {
        // Kafka's RangeAssignorTest.testTwoConsumersTwoTopicsSixPartitions.
        let members = [
            member("consumer1", &["t1", "t2"]),
            member("consumer2", &["t1", "t2"]),
        ];
        let result = assign(
            AssignmentStrategy::Range,
            &members,
            &topics(&[("t1", 3), ("t2", 3)]),
        );
        assert_eq!(
            result["consumer1"],
            tps(&[("t1", 0), ("t1", 1), ("t2", 0), ("t2", 1)])
        );
        assert_eq!(result["consumer2"], tps(&[("t1", 2), ("t2", 2)]));
    }

    #[test]
    fn round_robin_matches_kafkas_two_consumers_two_topics_six_partitions() {
        // Kafka's RoundRobinAssignorTest.testTwoConsumersTwoTopicsSixPartitions.
        let members = [
            member("consumer1", &["t1", "t2"]),
            member("consumer2", &["t1", "t2"]),
        ];
        let result = assign(
            AssignmentStrategy::RoundRobin,
            &members,
            &topics(&[("t1", 3), ("t2", 3)]),
        );
        assert_eq!(result["consumer1"], tps(&[("t1", 0), ("t1", 2), ("t2", 1)]));
        assert_eq!(result["consumer2"], tps(&[("t1", 1), ("t2", 0), ("t2", 2)]));
    }

    #[test]
    fn sticky_keeps_owned_partitions_and_balances() {
        let mut a = member("a", &["t"]);
        a.owned = tps(&[("t", 0), ("t", 1), ("t", 2)]);
        let mut b = member("b", &["t"]);
        b.owned = tps(&[("t", 3), ("t", 4), ("t", 5)]);
        let c = member("c", &["t"]);
        let result = assign(AssignmentStrategy::Sticky, &[a, b, c], &topics(&[("t", 6)]));
        assert_eq!(result["a"].len(), 2);
        assert_eq!(result["b"].len(), 2);
        assert_eq!(result["c"].len(), 2);
        assert!(result["a"].iter().all(|tp| tp.partition < 3));
        assert!(result["b"].iter().all(|tp| tp.partition >= 3));
    }
}

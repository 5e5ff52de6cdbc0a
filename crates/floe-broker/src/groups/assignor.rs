//! The server-side assignor: sticky and balanced (KIP-848's `uniform` assignor in spirit).
//!
//! Partitions stay with the member that owns them while it still subscribes to their
//! topic; free partitions go to the eligible member with the fewest; then partitions move,
//! one at a time, from the fullest member to the emptiest member that can take one, until
//! no two members that could trade differ by more than one. So a join or a leave moves only
//! what balance needs. Pure and deterministic: same input, same answer.

use std::collections::{BTreeMap, BTreeSet};

use floe_core::TopicId;

/// A partition of a topic.
pub(crate) type Partition = (TopicId, u32);

/// What the assignor needs of a member.
#[derive(Debug, Clone)]
pub(crate) struct Subscriber {
    pub(crate) topics: BTreeSet<TopicId>,
    /// What the member owns now (stickiness).
    pub(crate) owned: BTreeSet<Partition>,
}

/// Computes the target assignment: member id → partitions. `partitions` lists each
/// subscribed topic's partition count.
pub(crate) fn assign(
    members: &BTreeMap<String, Subscriber>,
    partitions: &BTreeMap<TopicId, u32>,
) -> BTreeMap<String, BTreeSet<Partition>> {
    let mut target: BTreeMap<String, BTreeSet<Partition>> = members
        .keys()
        .map(|id| (id.clone(), BTreeSet::new()))
        .collect();
    let eligible = |member: &str, partition: &Partition| {
        members[member].topics.contains(&partition.0)
            && partitions
                .get(&partition.0)
                .is_some_and(|count| partition.1 < *count)
    };
    // Keep what is owned and still wanted (first claim wins a partition claimed twice).
    let mut taken: BTreeSet<Partition> = BTreeSet::new();
    for (id, member) in members {
        for partition in &member.owned {
            if eligible(id, partition) && taken.insert(*partition) {
                target.get_mut(id).expect("every member").insert(*partition);
            }
        }
    }
    // Give out the free ones, each to the eligible member with the fewest.
    for (topic, count) in partitions {
        for index in 0..*count {
            let partition = (*topic, index);
            if taken.contains(&partition) {
                continue;
            }
            let receiver = target
                .iter()
                .filter(|(id, _)| eligible(id, &partition))
                .min_by_key(|(id, owned)| (owned.len(), (*id).clone()))
                .map(|(id, _)| id.clone());
            if let Some(receiver) = receiver {
                taken.insert(partition);
                target
                    .get_mut(&receiver)
                    .expect("a member")
                    .insert(partition);
            }
        }
    }
    balance(&mut target, &eligible);
    target
}

/// Moves partitions from fuller to emptier members while a move narrows the spread.
fn balance(
    target: &mut BTreeMap<String, BTreeSet<Partition>>,
    eligible: &impl Fn(&str, &Partition) -> bool,
) {
    loop {
        let mut by_load: Vec<(usize, String)> = target
            .iter()
            .map(|(id, owned)| (owned.len(), id.clone()))
            .collect();
        by_load.sort();
        let mut moved = false;
        'search: for (low, receiver) in &by_load {
            for (high, giver) in by_load.iter().rev() {
                if *high <= low + 1 {
                    break;
                }
                // The giver's last eligible partition moves (its lowest ones stay put).
                let candidate = target[giver]
                    .iter()
                    .rev()
                    .find(|partition| eligible(receiver, partition))
                    .copied();
                if let Some(partition) = candidate {
                    target.get_mut(giver).expect("giver").remove(&partition);
                    target
                        .get_mut(receiver)
                        .expect("receiver")
                        .insert(partition);
                    moved = true;
                    break 'search;
                }
            }
        }
        if !moved {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: TopicId = TopicId(1);
    const U: TopicId = TopicId(2);

    fn members(spec: &[(&str, &[TopicId], &[Partition])]) -> BTreeMap<String, Subscriber> {
        spec.iter()
            .map(|(id, topics, owned)| {
                (
                    (*id).to_owned(),
                    Subscriber {
                        topics: topics.iter().copied().collect(),
                        owned: owned.iter().copied().collect(),
                    },
                )
            })
            .collect()
    }

    fn counts(target: &BTreeMap<String, BTreeSet<Partition>>) -> Vec<usize> {
        target.values().map(BTreeSet::len).collect()
    }

    fn all_once(target: &BTreeMap<String, BTreeSet<Partition>>, total: usize) {
        let mut seen = BTreeSet::new();
        for owned in target.values() {
            for partition in owned {
                assert!(seen.insert(*partition), "{partition:?} given twice");
            }
        }
        assert_eq!(seen.len(), total);
    }

    #[test]
    fn a_fresh_group_is_balanced() {
        let topics = BTreeMap::from([(T, 12)]);
        let target = assign(
            &members(&[("a", &[T], &[]), ("b", &[T], &[]), ("c", &[T], &[])]),
            &topics,
        );
        assert_eq!(counts(&target), vec![4, 4, 4]);
        all_once(&target, 12);
    }

    #[test]
    fn a_join_moves_only_what_balance_needs() {
        let topics = BTreeMap::from([(T, 100)]);
        let three = assign(
            &members(&[("a", &[T], &[]), ("b", &[T], &[]), ("c", &[T], &[])]),
            &topics,
        );
        let owned = |id: &str| three[id].iter().copied().collect::<Vec<_>>();
        let (a, b, c) = (owned("a"), owned("b"), owned("c"));
        let four = assign(
            &members(&[
                ("a", &[T], &a),
                ("b", &[T], &b),
                ("c", &[T], &c),
                ("d", &[T], &[]),
            ]),
            &topics,
        );
        assert_eq!(counts(&four), vec![25, 25, 25, 25]);
        all_once(&four, 100);
        let stayed: usize = ["a", "b", "c"]
            .iter()
            .map(|id| three[*id].intersection(&four[*id]).count())
            .sum();
        assert_eq!(stayed, 75, "only the 25 partitions d takes move");
    }

    #[test]
    fn a_leave_hands_out_only_the_leavers_partitions() {
        let topics = BTreeMap::from([(T, 12)]);
        let target = assign(
            &members(&[
                ("a", &[T], &[(T, 0), (T, 1), (T, 2), (T, 3)]),
                ("b", &[T], &[(T, 4), (T, 5), (T, 6), (T, 7)]),
            ]),
            &topics,
        );
        assert_eq!(counts(&target), vec![6, 6]);
        assert!(target["a"].is_superset(&BTreeSet::from([(T, 0), (T, 1), (T, 2), (T, 3)])));
        assert!(target["b"].is_superset(&BTreeSet::from([(T, 4), (T, 5), (T, 6), (T, 7)])));
    }

    #[test]
    fn members_get_only_topics_they_subscribe_to() {
        let topics = BTreeMap::from([(T, 4), (U, 2)]);
        let target = assign(
            &members(&[
                ("a", &[T, U], &[]),
                ("b", &[U], &[]),
                ("c", &[T], &[(U, 0)]),
            ]),
            &topics,
        );
        all_once(&target, 6);
        assert!(target["b"].iter().all(|(topic, _)| *topic == U));
        assert!(target["c"].iter().all(|(topic, _)| *topic == T));
        assert_eq!(counts(&target), vec![2, 2, 2]);
    }

    #[test]
    fn partitions_beyond_the_count_or_claimed_twice_are_not_kept() {
        let topics = BTreeMap::from([(T, 2)]);
        let target = assign(
            &members(&[("a", &[T], &[(T, 0), (T, 5)]), ("b", &[T], &[(T, 0)])]),
            &topics,
        );
        assert_eq!(target["a"], BTreeSet::from([(T, 0)]));
        assert_eq!(target["b"], BTreeSet::from([(T, 1)]));
    }
}

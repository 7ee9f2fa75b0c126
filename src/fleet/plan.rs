//! The fleet's arithmetic (issue 22): which bots each of several botvisor
//! instances on one PostgreSQL store should hold, and which moves get them
//! there. Pure: every instance computes the same plan from the same view
//! (the instances alive, their weights, the bots, who holds each), so no
//! instance has to lead. The supervisor acting on it (heartbeats, the
//! lease table, handovers) is built on top of this.
//!
//! - **Shares**: each instance's share of the bots is proportional to its
//!   weight, rounded by the largest remainder (ties by instance id), so
//!   with equal weights every instance holds ⌊B/N⌋ or ⌈B/N⌉.
//! - **Moves**: a bot held by an instance that is gone is free; an
//!   instance over its share releases the excess (the bots it holds that
//!   rank lowest for it); free bots go to the instances under their share.
//!   Which bot goes where is decided by rendezvous hashing (the instance
//!   that ranks highest for a bot, among those that have room), so a join
//!   or a leave moves few bots and the same bots each time.

use std::collections::{BTreeMap, BTreeSet};

/// An instance alive in the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// Unique and stable while it runs.
    pub id: String,
    /// `[supervisor.fleet] weight`: a weight-2 instance takes twice the
    /// share of a weight-1 one; 0 takes none.
    pub weight: u32,
}

/// What one instance should do now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Moves {
    /// Bots it holds and should hand over (stop polling, drain, store the
    /// offset, release).
    pub release: Vec<String>,
    /// Free bots it should take.
    pub take: Vec<String>,
}

/// The plan for the whole fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// How many bots each instance should hold, by id.
    pub shares: BTreeMap<String, usize>,
    /// Who should hold each bot once the moves are done.
    pub holders: BTreeMap<String, String>,
    /// By instance id.
    pub moves: BTreeMap<String, Moves>,
}

impl Plan {
    /// The moves of instance `id` (none when it has nothing to do).
    pub fn moves_of(&self, id: &str) -> Moves {
        self.moves.get(id).cloned().unwrap_or_default()
    }
}

/// Each instance's share of `bots` bots, by id: proportional to the
/// weights, by the largest remainder. All zero weights share nothing.
pub fn shares(instances: &[Instance], bots: usize) -> BTreeMap<String, usize> {
    let total: u128 = instances.iter().map(|i| u128::from(i.weight)).sum();
    let mut shares: BTreeMap<String, usize> = instances.iter().map(|i| (i.id.clone(), 0)).collect();
    if total == 0 || bots == 0 {
        return shares;
    }
    let bots_wide = bots as u128;
    let mut given = 0usize;
    // (remainder, id) to hand out what the floors leave.
    let mut remainders: Vec<(u128, &str)> = Vec::with_capacity(instances.len());
    for instance in instances {
        let exact = bots_wide * u128::from(instance.weight);
        let floor = usize::try_from(exact / total).unwrap_or(bots);
        given += floor;
        shares.insert(instance.id.clone(), floor);
        remainders.push((exact % total, instance.id.as_str()));
    }
    // Largest remainder first; equal remainders by id.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    for (_, id) in remainders
        .iter()
        .filter(|(_, id)| instances.iter().any(|i| i.id == *id && i.weight > 0))
        .take(bots.saturating_sub(given))
    {
        if let Some(share) = shares.get_mut(*id) {
            *share += 1;
        }
    }
    shares
}

/// The plan that brings `holders` (bot → instance id; bots absent are
/// free) to every live instance holding its share of `bots`.
pub fn plan(instances: &[Instance], bots: &[String], holders: &BTreeMap<String, String>) -> Plan {
    let wanted: BTreeSet<&str> = bots.iter().map(String::as_str).collect();
    let live: BTreeSet<&str> = instances.iter().map(|i| i.id.as_str()).collect();
    let shares = shares(instances, wanted.len());
    let mut moves: BTreeMap<String, Moves> = BTreeMap::new();
    // What each live instance holds now, of the bots wanted.
    let mut held: BTreeMap<&str, Vec<&str>> = live.iter().map(|id| (*id, Vec::new())).collect();
    let mut free: Vec<&str> = Vec::new();
    for bot in &wanted {
        match holders.get(*bot).map(String::as_str) {
            Some(holder) if live.contains(holder) => {
                held.entry(holder).or_default().push(bot);
            }
            _ => free.push(bot),
        }
    }
    // Over its share: release the bots that rank lowest for it.
    for (id, bots) in &mut held {
        let share = shares.get(*id).copied().unwrap_or(0);
        if bots.len() > share {
            bots.sort_by_key(|bot| std::cmp::Reverse(rank(id, bot)));
            let released: Vec<&str> = bots.split_off(share);
            moves.entry((*id).to_owned()).or_default().release =
                released.iter().map(|b| (*b).to_owned()).collect();
            free.extend(released);
        }
    }
    // Free bots to the instances with room, each to the one that ranks
    // highest for it; the bots placed in a fixed order.
    free.sort_unstable();
    let mut room: BTreeMap<&str, usize> = held
        .iter()
        .map(|(id, bots)| {
            let share = shares.get(*id).copied().unwrap_or(0);
            (*id, share.saturating_sub(bots.len()))
        })
        .collect();
    let mut final_holders: BTreeMap<String, String> = BTreeMap::new();
    for (id, bots) in &held {
        for bot in bots {
            final_holders.insert((*bot).to_owned(), (*id).to_owned());
        }
    }
    for bot in free {
        let best = room
            .iter()
            .filter(|(_, left)| **left > 0)
            .max_by(|a, b| {
                rank(a.0, bot)
                    .cmp(&rank(b.0, bot))
                    .then_with(|| b.0.cmp(a.0))
            })
            .map(|(id, _)| *id);
        let Some(id) = best else { continue };
        if let Some(left) = room.get_mut(id) {
            *left -= 1;
        }
        final_holders.insert(bot.to_owned(), id.to_owned());
        if holders.get(bot).map(String::as_str) != Some(id) {
            moves
                .entry(id.to_owned())
                .or_default()
                .take
                .push(bot.to_owned());
        }
    }
    // An instance that releases a bot and is given it back keeps it.
    for moves in moves.values_mut() {
        let kept: BTreeSet<String> = moves
            .release
            .iter()
            .filter(|bot| moves.take.contains(bot))
            .cloned()
            .collect();
        moves.release.retain(|bot| !kept.contains(bot));
        moves.take.retain(|bot| !kept.contains(bot));
    }
    moves.retain(|_, m| !m.release.is_empty() || !m.take.is_empty());
    Plan {
        shares,
        holders: final_holders,
        moves,
    }
}

/// How much instance `id` wants bot `bot` (rendezvous hashing): FNV-1a of
/// both, stable across processes and versions.
fn rank(id: &str, bot: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.bytes().chain([0xff]).chain(bot.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's low bits mix poorly on short keys: finish with a mixer.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instances(spec: &[(&str, u32)]) -> Vec<Instance> {
        spec.iter()
            .map(|(id, weight)| Instance {
                id: (*id).to_owned(),
                weight: *weight,
            })
            .collect()
    }

    fn bots(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("bot{i:03}")).collect()
    }

    fn counts(plan: &Plan) -> BTreeMap<String, usize> {
        let mut counts: BTreeMap<String, usize> =
            plan.shares.keys().map(|id| (id.clone(), 0)).collect();
        for holder in plan.holders.values() {
            *counts.entry(holder.clone()).or_default() += 1;
        }
        counts
    }

    #[test]
    fn shares_follow_the_weights_by_the_largest_remainder() {
        type Case = (Vec<(&'static str, u32)>, usize, Vec<usize>);
        let cases: Vec<Case> = vec![
            (vec![("a", 1), ("b", 1), ("c", 1)], 300, vec![100, 100, 100]),
            (vec![("a", 1), ("b", 1), ("c", 1)], 301, vec![101, 100, 100]),
            (vec![("a", 1), ("b", 1), ("c", 1)], 302, vec![101, 101, 100]),
            (vec![("a", 2), ("b", 1)], 300, vec![200, 100]),
            (vec![("a", 2), ("b", 1)], 1, vec![1, 0]),
            (vec![("a", 1), ("b", 0)], 5, vec![5, 0]),
            (vec![("a", 0), ("b", 0)], 5, vec![0, 0]),
            (vec![("a", 1)], 0, vec![0]),
            (vec![("a", 3), ("b", 3), ("c", 1)], 10, vec![4, 4, 2]),
        ];
        for (spec, n, expected) in cases {
            let got: Vec<usize> = shares(&instances(&spec), n).into_values().collect();
            assert_eq!(got, expected, "{spec:?} with {n} bots");
            if spec.iter().any(|(_, w)| *w > 0) {
                assert_eq!(got.iter().sum::<usize>(), n);
            }
        }
    }

    #[test]
    fn the_first_instance_takes_everything_and_a_second_takes_half() {
        let all = bots(300);
        let alone = plan(&instances(&[("a", 1)]), &all, &BTreeMap::new());
        assert_eq!(alone.moves_of("a").take.len(), 300);
        assert!(alone.moves_of("a").release.is_empty());

        // b joins: a hands over 150, b takes exactly those, nothing else moves.
        let two = plan(&instances(&[("a", 1), ("b", 1)]), &all, &alone.holders);
        let a = two.moves_of("a");
        let b = two.moves_of("b");
        assert_eq!(a.release.len(), 150);
        assert!(a.take.is_empty());
        // b takes them only once a has released them: the plan says so, the
        // lease table makes it so (no bot in two places).
        assert_eq!(
            b.take.iter().collect::<BTreeSet<_>>(),
            a.release.iter().collect::<BTreeSet<_>>()
        );
        assert_eq!(counts(&two).into_values().collect::<Vec<_>>(), [150, 150]);

        // The plan is stable: nothing more moves once it is done.
        let again = plan(&instances(&[("a", 1), ("b", 1)]), &all, &two.holders);
        assert!(again.moves.is_empty(), "{:?}", again.moves);
    }

    #[test]
    fn a_join_or_a_leave_moves_only_what_the_shares_need() {
        let all = bots(300);
        let three = instances(&[("a", 1), ("b", 1), ("c", 1)]);
        let settled = plan(&three, &all, &BTreeMap::new()).holders;
        assert!(
            counts(&plan(&three, &all, &settled))
                .values()
                .all(|n| *n == 100)
        );

        // c leaves (kill -9: its rows stay, it is no longer alive): only its
        // 100 bots move, 50 to each of the others.
        let two = instances(&[("a", 1), ("b", 1)]);
        let after = plan(&two, &all, &settled);
        assert!(after.moves_of("a").release.is_empty());
        assert!(after.moves_of("b").release.is_empty());
        assert_eq!(after.moves_of("a").take.len(), 50);
        assert_eq!(after.moves_of("b").take.len(), 50);
        for bot in after
            .moves_of("a")
            .take
            .iter()
            .chain(&after.moves_of("b").take)
        {
            assert_eq!(settled[bot], "c", "{bot} moved though its holder stayed");
        }

        // d joins the three: each gives up 25, d takes 75.
        let four = instances(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
        let joined = plan(&four, &all, &settled);
        for id in ["a", "b", "c"] {
            assert_eq!(joined.moves_of(id).release.len(), 25, "{id}");
        }
        assert_eq!(joined.moves_of("d").take.len(), 75);
        assert_eq!(
            counts(&joined).into_values().collect::<Vec<_>>(),
            [75, 75, 75, 75]
        );
    }

    #[test]
    fn weights_bots_that_come_and_go_and_strangers() {
        let all = bots(10);
        let mut holders: BTreeMap<String, String> = BTreeMap::new();
        // Held by an instance that is gone, and a bot no longer configured.
        holders.insert("bot000".into(), "gone".into());
        holders.insert("old".into(), "a".into());
        let plan = plan(&instances(&[("a", 2), ("b", 3)]), &all, &holders);
        assert_eq!(counts(&plan).into_values().collect::<Vec<_>>(), [4, 6]);
        assert!(!plan.holders.contains_key("old"));
        assert_eq!(plan.holders.len(), 10);
        // Every bot has exactly one holder, and a live one.
        assert!(plan.holders.values().all(|h| h == "a" || h == "b"));
    }

    #[test]
    fn no_instance_no_holder() {
        let plan = plan(&[], &bots(3), &BTreeMap::new());
        assert!(plan.holders.is_empty());
        assert!(plan.moves.is_empty());
    }
}

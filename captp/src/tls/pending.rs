//! The handshakes a listener has in progress, and which one gives way when
//! there are too many. A plain state machine: no sockets, no clock.
//!
//! Every accepted socket is admitted at once (accepting is cheap; waiting
//! in the kernel's backlog would let a few hundred silent sockets keep
//! everyone out). When the listener's total, or the total of the caller's
//! source, is reached, the oldest socket of that scope that has not sent
//! its ClientHello is shed to make room, or failing that the oldest one of
//! the scope. Never the newcomer: an attacker can always open sockets
//! faster than a queue drains, but an honest client sends its ClientHello
//! at once and leaves the sheddable group before many others arrive.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv6Addr};

/// Identifies one admitted socket; later sockets have larger ids.
pub(crate) type Id = u64;

/// Where pending handshakes are counted together: an IPv4 address, or the
/// /64 prefix of an IPv6 address (one machine usually holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Source(IpAddr);

impl Source {
    /// The source of a caller at `ip`.
    pub(crate) fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !u128::from(u64::MAX);
                    Source(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

/// How far a pending handshake has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted; its ClientHello has not fully arrived.
    AwaitingHello,
    /// Its ClientHello arrived; the rest of the handshake is under way.
    Handshaking,
}

/// Why a pending handshake was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Crowded {
    /// Its source had the most pending handshakes allowed per source.
    Source,
    /// The listener had the most pending handshakes allowed in all.
    Listener,
}

/// A pending handshake to end now, to make room for a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shed {
    /// The socket to drop.
    pub(crate) id: Id,
    /// Whether it had sent its ClientHello.
    pub(crate) had_hello: bool,
    /// Which bound was reached.
    pub(crate) crowded: Crowded,
}

/// The set of pending handshakes of one listener.
#[derive(Debug)]
pub(crate) struct Pending {
    max_total: usize,
    max_per_source: usize,
    next: Id,
    phases: BTreeMap<Id, (Source, Phase)>,
    awaiting_hello: BTreeSet<Id>,
    by_source: HashMap<Source, Scope>,
}

/// The pending handshakes of one source.
#[derive(Debug, Default)]
struct Scope {
    all: BTreeSet<Id>,
    awaiting_hello: BTreeSet<Id>,
}

impl Pending {
    /// An empty set allowing `max_total` pending handshakes in all and
    /// `max_per_source` from one source (each at least 1).
    pub(crate) fn new(max_total: usize, max_per_source: usize) -> Pending {
        Pending {
            max_total: max_total.max(1),
            max_per_source: max_per_source.max(1),
            next: 0,
            phases: BTreeMap::new(),
            awaiting_hello: BTreeSet::new(),
            by_source: HashMap::new(),
        }
    }

    /// Admits a socket just accepted from `source`; returns its id and the
    /// pending handshakes to end to make room for it (already removed).
    pub(crate) fn admit(&mut self, source: Source) -> (Id, Vec<Shed>) {
        let mut shed = Vec::new();
        let source_full = self
            .by_source
            .get(&source)
            .is_some_and(|scope| scope.all.len() >= self.max_per_source);
        if source_full {
            shed.extend(self.shed_from_source(source));
        }
        if self.phases.len() >= self.max_total {
            shed.extend(self.shed_from_all());
        }
        let id = self.next;
        self.next += 1;
        self.phases.insert(id, (source, Phase::AwaitingHello));
        self.awaiting_hello.insert(id);
        let scope = self.by_source.entry(source).or_default();
        scope.all.insert(id);
        scope.awaiting_hello.insert(id);
        (id, shed)
    }

    /// Notes that `id`'s ClientHello has arrived: it is shed only when no
    /// socket of its scope is still waiting for one.
    pub(crate) fn hello_received(&mut self, id: Id) {
        let Some((source, phase)) = self.phases.get_mut(&id) else {
            return;
        };
        *phase = Phase::Handshaking;
        self.awaiting_hello.remove(&id);
        if let Some(scope) = self.by_source.get_mut(source) {
            scope.awaiting_hello.remove(&id);
        }
    }

    /// Removes `id` (its handshake ended); nothing happens if it is gone.
    pub(crate) fn finished(&mut self, id: Id) {
        let Some((source, _phase)) = self.phases.remove(&id) else {
            return;
        };
        self.awaiting_hello.remove(&id);
        if let Some(scope) = self.by_source.get_mut(&source) {
            scope.all.remove(&id);
            scope.awaiting_hello.remove(&id);
            if scope.all.is_empty() {
                self.by_source.remove(&source);
            }
        }
    }

    /// Sheds the oldest socket that has not sent its ClientHello, from any
    /// source: to free a file descriptor when the process has run out.
    pub(crate) fn shed_oldest_silent(&mut self) -> Option<Shed> {
        let id = *self.awaiting_hello.first()?;
        self.finished(id);
        Some(Shed {
            id,
            had_hello: false,
            crowded: Crowded::Listener,
        })
    }

    /// Makes room in `source`'s share.
    fn shed_from_source(&mut self, source: Source) -> Option<Shed> {
        let scope = self.by_source.get(&source)?;
        let (id, had_hello) = match scope.awaiting_hello.first() {
            Some(&id) => (id, false),
            None => (*scope.all.first()?, true),
        };
        self.finished(id);
        Some(Shed {
            id,
            had_hello,
            crowded: Crowded::Source,
        })
    }

    /// Makes room in the listener's total.
    fn shed_from_all(&mut self) -> Option<Shed> {
        let (id, had_hello) = match self.awaiting_hello.first() {
            Some(&id) => (id, false),
            None => (*self.phases.keys().next()?, true),
        };
        self.finished(id);
        Some(Shed {
            id,
            had_hello,
            crowded: Crowded::Listener,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(last: u8) -> Source {
        Source::of(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn sockets_are_admitted_without_shedding_while_there_is_room() {
        let mut pending = Pending::new(3, 3);
        for _ in 0..3 {
            assert!(pending.admit(source(1)).1.is_empty());
        }
        assert_eq!(pending.phases.len(), 3);
    }

    #[test]
    fn a_full_listener_sheds_its_oldest_silent_socket_not_the_newcomer() {
        let mut pending = Pending::new(3, 10);
        let (first, _) = pending.admit(source(1));
        let (second, _) = pending.admit(source(2));
        let (_third, _) = pending.admit(source(3));
        pending.hello_received(first);
        let (newest, shed) = pending.admit(source(4));
        assert_eq!(
            shed,
            [Shed {
                id: second,
                had_hello: false,
                crowded: Crowded::Listener
            }]
        );
        assert_eq!(pending.phases.len(), 3);
        assert!(newest > second);
    }

    #[test]
    fn when_every_socket_has_sent_its_hello_the_oldest_gives_way() {
        let mut pending = Pending::new(2, 10);
        let (first, _) = pending.admit(source(1));
        let (second, _) = pending.admit(source(2));
        pending.hello_received(first);
        pending.hello_received(second);
        let (_, shed) = pending.admit(source(3));
        assert_eq!(shed.len(), 1);
        assert_eq!((shed[0].id, shed[0].had_hello), (first, true));
    }

    #[test]
    fn a_crowded_source_sheds_its_own_oldest_and_spares_the_others() {
        let mut pending = Pending::new(100, 2);
        let (honest, _) = pending.admit(source(9));
        let (attacker_1, _) = pending.admit(source(1));
        let (_attacker_2, _) = pending.admit(source(1));
        let (_, shed) = pending.admit(source(1));
        assert_eq!(
            shed,
            [Shed {
                id: attacker_1,
                had_hello: false,
                crowded: Crowded::Source
            }]
        );
        assert!(pending.phases.contains_key(&honest));
    }

    #[test]
    fn a_socket_that_sent_its_hello_outlives_newer_silent_ones() {
        let mut pending = Pending::new(2, 2);
        let (honest, _) = pending.admit(source(1));
        pending.hello_received(honest);
        for _ in 0..50 {
            let (_, shed) = pending.admit(source(1));
            assert!(shed.iter().all(|s| s.id != honest));
        }
        assert!(pending.phases.contains_key(&honest));
    }

    #[test]
    fn finished_handshakes_free_their_room_and_may_be_reported_twice() {
        let mut pending = Pending::new(1, 1);
        let (id, _) = pending.admit(source(1));
        pending.finished(id);
        pending.finished(id);
        assert_eq!(pending.phases.len(), 0);
        assert!(pending.by_source.is_empty());
        assert!(pending.admit(source(1)).1.is_empty());
    }

    #[test]
    fn running_out_of_descriptors_sheds_the_oldest_silent_socket() {
        let mut pending = Pending::new(10, 10);
        let (talker, _) = pending.admit(source(1));
        pending.hello_received(talker);
        let (silent, _) = pending.admit(source(2));
        assert_eq!(pending.shed_oldest_silent().map(|s| s.id), Some(silent));
        assert_eq!(pending.shed_oldest_silent(), None);
    }

    #[test]
    fn ipv6_callers_are_counted_by_their_64_prefix_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(Source::of(mapped), source(1));
    }
}

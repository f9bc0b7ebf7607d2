//! Which children restart, and with which siblings.

use std::fmt;

/// When a child is restarted (Erlang's restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always restarted, whether it crashed or exited normally.
    Permanent,
    /// Restarted only when it ended abnormally (crashed, or its vat was
    /// lost); a normal exit ([`ExitHandle::exit_normally`](super::ExitHandle::exit_normally))
    /// ends it for good.
    Transient,
    /// Never restarted. When a sibling's restart stops it (one-for-all,
    /// rest-for-one), it stays stopped too.
    Temporary,
}

impl Restart {
    /// Whether a child that ended (abnormally or not) starts again.
    pub(crate) fn restarts_after(self, abnormal: bool) -> bool {
        match self {
            Restart::Permanent => true,
            Restart::Transient => abnormal,
            Restart::Temporary => false,
        }
    }
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Restart::Permanent => "permanent",
            Restart::Transient => "transient",
            Restart::Temporary => "temporary",
        })
    }
}

/// Which children restart when one of them has to (Erlang's strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Only the child that ended.
    #[default]
    OneForOne,
    /// Every child: the others are stopped (last started first), then all
    /// start again in order. For children that depend on each other.
    OneForAll,
    /// The child that ended and every child started after it.
    RestForOne,
}

impl Strategy {
    /// The children to restart when child `ended` has to, out of the
    /// children `running` (indices in start order). Sorted.
    pub(crate) fn restart_set(self, ended: usize, running: &[usize]) -> Vec<usize> {
        let mut set: Vec<usize> = match self {
            Strategy::OneForOne => Vec::new(),
            Strategy::OneForAll => running.to_vec(),
            Strategy::RestForOne => running.iter().copied().filter(|&i| i > ended).collect(),
        };
        set.push(ended);
        set.sort_unstable();
        set.dedup();
        set
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::OneForOne => "one-for-one",
            Strategy::OneForAll => "one-for-all",
            Strategy::RestForOne => "rest-for-one",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_restart_as_erlang_does() {
        assert!(Restart::Permanent.restarts_after(true));
        assert!(Restart::Permanent.restarts_after(false));
        assert!(Restart::Transient.restarts_after(true));
        assert!(!Restart::Transient.restarts_after(false));
        assert!(!Restart::Temporary.restarts_after(true));
    }

    #[test]
    fn strategies_pick_their_siblings() {
        let running = [0, 1, 3, 4];
        assert_eq!(Strategy::OneForOne.restart_set(1, &running), vec![1]);
        assert_eq!(
            Strategy::OneForAll.restart_set(1, &running),
            vec![0, 1, 3, 4]
        );
        assert_eq!(Strategy::RestForOne.restart_set(1, &running), vec![1, 3, 4]);
        // The child that ended is no longer running, and still restarts.
        assert_eq!(Strategy::RestForOne.restart_set(2, &running), vec![2, 3, 4]);
    }
}

//! The last crashes a supervisor saw.

use std::collections::VecDeque;
use std::time::SystemTime;

/// One crash of a child, as the supervisor recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashEntry {
    /// When the supervisor learnt of it.
    pub time: SystemTime,
    /// The child's name.
    pub child: String,
    /// What ended it: the crash error, why its vat was lost, or why it
    /// could not be started.
    pub error: String,
    /// How many times the child had been restarted before this crash.
    pub restarts: u64,
}

/// A ring of the last `capacity` crashes.
#[derive(Debug)]
pub(crate) struct CrashLog {
    capacity: usize,
    entries: VecDeque<CrashEntry>,
}

impl CrashLog {
    pub(crate) fn new(capacity: usize) -> CrashLog {
        CrashLog {
            capacity,
            entries: VecDeque::with_capacity(capacity.min(64)),
        }
    }

    pub(crate) fn push(&mut self, entry: CrashEntry) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// Oldest first.
    pub(crate) fn entries(&self) -> Vec<CrashEntry> {
        self.entries.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_entries() {
        let mut log = CrashLog::new(2);
        for i in 0..5 {
            log.push(CrashEntry {
                time: SystemTime::UNIX_EPOCH,
                child: format!("c{i}"),
                error: String::new(),
                restarts: i,
            });
        }
        let kept: Vec<u64> = log.entries().iter().map(|e| e.restarts).collect();
        assert_eq!(kept, vec![3, 4]);
    }
}

//! Who holds a vat's store: the processes that have its file open.
//!
//! redb locks its file while a process has it open, and the lock names no
//! owner. The commands need one to tell a running vat (`vat serve`) from a
//! short command that has the store open for a moment (`vat tokens list`
//! while the vat is down), so they look through `/proc/*/fd`. Where that is
//! not readable (another user's processes, no procfs) nobody is found and
//! the commands say so.

use std::fmt;
use std::fs;
use std::path::Path;

/// A process that has the store open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// Its command line, arguments joined by spaces (empty if unreadable).
    pub command: String,
}

impl Holder {
    /// Whether it is a vat serving this store (rather than a short command).
    pub fn is_serving(&self) -> bool {
        self.command.split(' ').nth(1) == Some("serve")
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.command.is_empty() {
            write!(f, "process {}", self.pid)
        } else {
            // A command line is the local user's own text, but keep the
            // message on one line whatever it holds.
            write!(f, "process {} ({})", self.pid, self.command.escape_debug())
        }
    }
}

/// The other processes that have `file` open, in pid order.
pub fn holders(file: &Path) -> Vec<Holder> {
    let Ok(target) = fs::canonicalize(file) else {
        return Vec::new();
    };
    let ours = std::process::id();
    let Ok(processes) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<Holder> = processes
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != ours && has_open(pid, &target))
        .map(|pid| Holder {
            pid,
            command: command_line(pid),
        })
        .collect();
    found.sort_by_key(|holder| holder.pid);
    found
}

/// Whether process `pid` has `target` open.
fn has_open(pid: u32, target: &Path) -> bool {
    let Ok(descriptors) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    descriptors
        .filter_map(Result::ok)
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|path| path == target))
}

/// Process `pid`'s arguments, joined by spaces.
fn command_line(pid: u32) -> String {
    let Ok(bytes) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return String::new();
    };
    bytes
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .enumerate()
        .map(|(index, arg)| {
            let arg = String::from_utf8_lossy(arg);
            // The program by its file name: its path says nothing here.
            match (index, arg.rsplit_once('/')) {
                (0, Some((_, name))) => name.to_owned(),
                _ => arg.into_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // unit tests: a panic is a failed test

    use super::*;

    #[test]
    fn a_process_with_the_file_open_is_found_with_its_command() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("store");
        fs::write(&file, b"x").unwrap();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("exec 3<\"$0\"; read line")
            .arg(&file)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut found = Vec::new();
        for _ in 0..2000 {
            found = holders(&file);
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(child.stdin.take());
        child.wait().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pid, child.id());
        assert!(found[0].command.starts_with("sh -c"), "{found:?}");
        assert!(!found[0].is_serving());
        assert!(holders(&file).is_empty());
    }
}

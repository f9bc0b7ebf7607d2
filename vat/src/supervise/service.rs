//! The `Supervisor` capability: a supervisor's children and crash log for
//! other vats and tools.

use std::rc::{Rc, Weak};
use std::time::UNIX_EPOCH;

use schema::supervise_capnp::supervisor;

use super::supervisor::{Inner, Supervisor};
use crate::error::{Error, ErrorKind};

pub(crate) struct Service {
    // Weak: the supervisor keeps its capability, not the other way round.
    supervisor: Weak<Inner>,
}

impl Service {
    pub(crate) fn new(supervisor: Weak<Inner>) -> Service {
        Service { supervisor }
    }

    fn supervisor(&self) -> Result<Supervisor, Error> {
        self.supervisor
            .upgrade()
            .map(Supervisor::from_inner)
            .ok_or_else(|| Error::new(ErrorKind::Failed, "the supervisor is gone"))
    }
}

fn count(n: usize) -> Result<u32, Error> {
    u32::try_from(n).map_err(|_| Error::new(ErrorKind::Failed, "too many entries to list"))
}

impl supervisor::Server for Service {
    async fn crash_log(
        self: Rc<Self>,
        _: supervisor::CrashLogParams,
        mut results: supervisor::CrashLogResults,
    ) -> Result<(), capnp::Error> {
        let entries = self.supervisor()?.crash_log();
        let mut list = results.get().init_entries(count(entries.len())?);
        for (i, entry) in entries.iter().enumerate() {
            let mut out = list.reborrow().get(i as u32);
            let millis = entry
                .time
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0);
            out.set_time(millis);
            out.set_child(&entry.child);
            out.set_error(&entry.error);
            out.set_restarts(entry.restarts);
        }
        Ok(())
    }

    async fn children(
        self: Rc<Self>,
        _: supervisor::ChildrenParams,
        mut results: supervisor::ChildrenResults,
    ) -> Result<(), capnp::Error> {
        let children = self.supervisor()?.children();
        let mut list = results.get().init_children(count(children.len())?);
        for (i, child) in children.iter().enumerate() {
            let mut out = list.reborrow().get(i as u32);
            out.set_name(&child.name);
            out.set_status(child.status.as_str());
            out.set_restarts(child.restarts);
            out.set_incarnation(child.incarnation);
        }
        Ok(())
    }

    async fn child(
        self: Rc<Self>,
        params: supervisor::ChildParams,
        mut results: supervisor::ChildResults,
    ) -> Result<(), capnp::Error> {
        let name = params.get()?.get_name()?.to_str()?.to_owned();
        let child: capnp::capability::Client = self.supervisor()?.child(&name)?;
        results.get().init_child().set_as_capability(child.hook);
        Ok(())
    }
}

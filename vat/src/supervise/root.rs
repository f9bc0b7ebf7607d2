//! The root supervisor's last resort: stop the vat and exit the process,
//! so that systemd or Kubernetes starts it again.

use crate::error::Error;

/// The process exit status when a vat's root supervisor gives up: 70,
/// `EX_SOFTWARE` in `sysexits.h` ("an internal software error"). Process
/// managers should restart on it (systemd: `Restart=on-failure`).
pub const ROOT_GAVE_UP_EXIT: i32 = 70;

/// The default give-up hook of a root supervisor: logs the error, stops
/// the vat (its tasks and connections end, so peers see it go) and exits
/// the process with [`ROOT_GAVE_UP_EXIT`].
///
/// Pass another hook to
/// [`SupervisorBuilder::on_give_up`](super::SupervisorBuilder::on_give_up)
/// to observe the give-up without exiting (tests do).
pub fn exit_process(error: &Error) {
    tracing::error!(status = ROOT_GAVE_UP_EXIT, %error, "the root supervisor gave up: stopping the vat and exiting");
    // Standard error too: the operator must see why, logging or not.
    eprintln!(
        "vat: the root supervisor gave up ({error}); exiting with status {ROOT_GAVE_UP_EXIT}"
    );
    // A simulated vat is a process of its own world: it stops, as its
    // process would exit, and the simulator sees it gone.
    if vat_env::is_simulated() {
        if let Some(vat) = crate::try_current() {
            vat.stop();
        }
        return;
    }
    let handle = crate::try_current().and_then(|vat| vat.handle());
    let Some(handle) = handle else {
        std::process::exit(ROOT_GAVE_UP_EXIT);
    };
    // A vat cannot wait for itself to stop: another thread stops it, then
    // ends the process.
    let exiting = std::thread::Builder::new()
        .name("root-gave-up".into())
        .spawn(move || {
            let _ = handle.stop();
            std::process::exit(ROOT_GAVE_UP_EXIT);
        });
    if exiting.is_err() {
        std::process::exit(ROOT_GAVE_UP_EXIT);
    }
}

//! What a panic in a vat prints: one log line.
//!
//! A panic inside a turn is caught by its vat (the object is marked crashed
//! and the caller's promise breaks with the panic's message), so Rust's
//! default hook, which prints `thread '…' panicked at …` and, under
//! `RUST_BACKTRACE=1`, a whole backtrace, would only interrupt the output of
//! a program that goes on working. Vat threads therefore run with this hook:
//! one `error` line per panic through `tracing` (inside the vat's span), the
//! backtrace at `debug`, and, for a program that installed no `tracing`
//! subscriber, one line on standard error instead. Other threads keep the
//! hook they had; [`VatBuilder::standard_panic_hook`](crate::VatBuilder::standard_panic_hook)
//! keeps it for a vat too.

use std::backtrace::Backtrace;
use std::cell::Cell;
use std::panic::PanicHookInfo;
use std::sync::Once;

thread_local! {
    /// Whether this thread is a vat that reports panics as log lines.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Makes panics on the calling thread (a vat's, at its start) log lines.
pub(crate) fn quiet_this_thread() {
    install();
    QUIET.with(|quiet| quiet.set(true));
}

/// Runs `f` with panics on this thread reported as log lines, then puts
/// back what was set before: a hosted vat's polls, on a thread that also
/// runs other code (a simulator's scenario, a test harness).
pub(crate) fn quiet_while<R>(f: impl FnOnce() -> R) -> R {
    install();
    let before = QUIET.with(|quiet| quiet.replace(true));
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0;
            let _ = QUIET.try_with(|quiet| quiet.set(before));
        }
    }
    let _restore = Restore(before);
    f()
}

/// Installs the hook once per process, in front of whatever hook was set
/// before (which still serves every other thread).
fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                report(info);
            } else {
                previous(info);
            }
        }));
    });
}

/// One line for the panic, and its backtrace for whoever logs at debug.
fn report(info: &PanicHookInfo<'_>) {
    let message = crate::core::panic_message(info.payload());
    let location = info.location().map(ToString::to_string).unwrap_or_default();
    let logged = tracing::dispatcher::get_default(|dispatch| {
        !dispatch.is::<tracing::subscriber::NoSubscriber>()
    });
    if logged {
        tracing::error!(%location, "panic caught in a turn: {message}");
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(backtrace = %Backtrace::force_capture(), "where the panic was");
        }
    } else {
        let thread = std::thread::current();
        eprintln!(
            "{}: panic caught in a turn at {location}: {}",
            thread.name().unwrap_or("vat"),
            message.escape_debug()
        );
    }
}

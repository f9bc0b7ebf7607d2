//! `vat`: the command-line tool of the vat system.
//!
//! `vat demo` starts a small federation on loopback and narrates what
//! happens. Logs go to standard error, filtered by `RUST_LOG` (default:
//! warnings and errors), so the narrative on standard output stays readable.

mod demo;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Vats: objects that call each other nearly, send to each other eventually,
/// and reach other vats only through Cap'n Proto capabilities.
#[derive(Debug, Parser)]
#[command(name = "vat", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a federation of three vats on loopback and show, step by step,
    /// spawns, near calls, eventual sends, pipelining and a caught crash.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let outcome = match cli.command {
        Command::Demo => demo::run(),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vat: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to standard error; `RUST_LOG` chooses what (e.g. `RUST_LOG=debug`
/// shows a span per vat, connection and turn).
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // A panic inside a turn is caught by its vat, which logs it as a crashed
    // object; the default hook would also print a raw backtrace notice in
    // the middle of the output. Route panics through the log instead.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        tracing::warn!(
            thread = thread.name().unwrap_or("unnamed"),
            location = info.location().map(|l| l.to_string()).unwrap_or_default(),
            "panic: {}",
            panic_text(info.payload())
        );
    }));
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "a panic whose payload is not text"
    }
}

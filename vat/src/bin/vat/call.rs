//! `vat call`: restores a token and calls one method on the object it names.
//!
//! The object's kind, which the vat reports on restore, decides the
//! interface: `counter` (`add N`, `get`) or `host` (`echo N`, `greet NAME`).

use std::path::PathBuf;

use capnp::capability::FromClientHook;
use captp::log::Untrusted;
use schema::demo_capnp::{callback, counter, host};
use schema::gateway_capnp::gateway;
use sturdyrefs::SturdyRef;
use vat::demo::Greeter;
use vat::net::{Connection, Limits};
use vat::sturdy::RestoreError;

use crate::data::DataDir;
use crate::error::CliError;
use crate::oneshot;

/// A method call `vat call` knows how to make.
#[derive(Debug, Clone)]
enum Method {
    /// `counter.add(by)`.
    Add(i64),
    /// `counter.get()`.
    Get,
    /// `host.echo(value)`.
    Echo(u64),
    /// `host.greet(callback, name)`.
    Greet(String),
}

impl Method {
    /// Reads a method name and its arguments.
    fn parse(name: &str, args: &[String]) -> Result<Method, CliError> {
        let bad = |why: String| Err(CliError::BadCall(why));
        match (name, args) {
            ("add", [n]) => match n.parse() {
                Ok(n) => Ok(Method::Add(n)),
                Err(_) => bad(format!("add takes a whole number, not {n:?}")),
            },
            ("get", []) => Ok(Method::Get),
            ("echo", [n]) => match n.parse() {
                Ok(n) => Ok(Method::Echo(n)),
                Err(_) => bad(format!("echo takes a whole number from 0 up, not {n:?}")),
            },
            ("greet", [who]) => Ok(Method::Greet(who.clone())),
            ("add" | "echo", _) => bad(format!("{name} takes one number, N")),
            ("greet", _) => bad("greet takes one name, NAME".to_owned()),
            ("get", _) => bad("get takes no arguments".to_owned()),
            _ => bad(format!(
                "unknown method {name:?}: a counter has add N and get, a host has echo N and \
                 greet NAME"
            )),
        }
    }

    /// The method's name.
    fn name(&self) -> &'static str {
        match self {
            Method::Add(_) => "add",
            Method::Get => "get",
            Method::Echo(_) => "echo",
            Method::Greet(_) => "greet",
        }
    }

    /// The kind of object the method belongs to.
    fn kind(&self) -> &'static str {
        match self {
            Method::Add(_) | Method::Get => "counter",
            Method::Echo(_) | Method::Greet(_) => "host",
        }
    }
}

/// `vat call`: restores `token` (anonymously, or proving the identity in
/// `as_dir`), calls `method` with `args` and prints the answer.
pub fn run(
    token: &str,
    method: &str,
    args: &[String],
    as_dir: Option<PathBuf>,
) -> Result<(), CliError> {
    let token = SturdyRef::parse(token)?;
    let method = Method::parse(method, args)?;
    let identity = as_dir.map(|dir| DataDir::new(dir).identity()).transpose()?;
    let answer = oneshot::run("call", move || async move {
        let connection = vat::sturdy::connect(&token, identity.as_ref(), Limits::default()).await?;
        let answer = restore_and_call(&connection, &token, method).await;
        // A clean goodbye, so the vat does not log a connection cut short.
        if let Err(error) = connection.close().await {
            tracing::debug!(error = %Untrusted(&error), "closing the connection failed");
        }
        answer
    })?;
    println!("{answer}");
    Ok(())
}

/// Restores `token` over `connection` (as [`vat::sturdy::restore`] does,
/// on a connection this command can then close) and makes the call.
async fn restore_and_call(
    connection: &Connection,
    token: &SturdyRef,
    method: Method,
) -> Result<String, CliError> {
    let refused = |error: capnp::Error| RestoreError::from(vat::Error::from(error));
    let gateway: gateway::Client = connection.peer();
    let mut request = gateway.restore_request();
    request.get().set_swiss_number(token.swiss().as_bytes());
    let response = request.send().promise.await.map_err(refused)?;
    let results = response.get().map_err(refused)?;
    let kind = results.get_kind().map_err(refused)?.to_str()?;
    if kind != method.kind() {
        return Err(CliError::BadCall(format!(
            "the token names a {kind}, and {} is a {}'s method (a counter has add N and get, a \
             host has echo N and greet NAME)",
            method.name(),
            method.kind()
        )));
    }
    let object = results.get_object().get_as_capability().map_err(refused)?;
    call(object, method).await
}

/// Makes the call on a restored object of the method's kind.
async fn call(object: capnp::capability::Client, method: Method) -> Result<String, CliError> {
    match method {
        Method::Add(by) => {
            let counter: counter::Client = object.cast_to();
            let mut request = counter.add_request();
            request.get().set_by(by);
            let response = request.send().promise.await?;
            Ok(response.get()?.get_value().to_string())
        }
        Method::Get => {
            let counter: counter::Client = object.cast_to();
            let response = counter.get_request().send().promise.await?;
            Ok(response.get()?.get_value().to_string())
        }
        Method::Echo(value) => {
            let host: host::Client = object.cast_to();
            let mut request = host.echo_request();
            request.get().set_value(value);
            let response = request.send().promise.await?;
            Ok(response.get()?.get_value().to_string())
        }
        Method::Greet(name) => {
            let host: host::Client = object.cast_to();
            // The host calls this back with its greeting; its answer is the reply.
            let me: callback::Client = vat::export(Greeter::new("vat call"));
            let mut request = host.greet_request();
            request.get().set_callback(me);
            request.get().set_name(&name);
            let response = request.send().promise.await?;
            Ok(response.get()?.get_reply()?.to_str()?.to_owned())
        }
    }
}

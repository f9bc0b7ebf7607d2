//! A program with its own interface, compiled by vat-build, served by one
//! vat and called from another over TLS.

use vat::net::{tls, Identity, Limits};

include!(concat!(env!("OUT_DIR"), "/vat_schemas.rs"));

use teller_capnp::teller;

/// One account's teller: its state is a plain field.
#[derive(Default)]
struct Teller {
    balance: u64,
}

#[vat::object(teller)]
impl Teller {
    fn deposit(
        &mut self,
        params: teller::DepositParams,
        mut results: teller::DepositResults,
    ) -> vat::Reply {
        self.balance = self.balance.saturating_add(params.get()?.get_amount());
        results.get().set_balance(self.balance);
        vat::done()
    }

    fn balance(
        &mut self,
        _: teller::BalanceParams,
        mut results: teller::BalanceResults,
    ) -> vat::Reply {
        results.get().set_balance(self.balance);
        vat::done()
    }

    // `close` is left out: capnp answers it `unimplemented`.
}

/// What can go wrong on the customer's side.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Net(#[from] vat::net::NetError),
    #[error(transparent)]
    Call(#[from] capnp::Error),
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bank_identity = Identity::generate()?;
    let bank_key = bank_identity.public_key();
    let bank = vat::VatHandle::start("bank")?;
    let addr = bank
        .run_async(move || async move {
            let listener =
                tls::TlsListener::bind(([127, 0, 0, 1], 0).into(), &bank_identity).await?;
            let addr = listener.local_addr();
            let teller: teller::Client = vat::spawn(Teller::default()).export();
            listener.serve(move |_| Some(teller.client.clone()), Limits::default());
            Ok::<_, vat::net::NetError>(addr)
        })
        .wait()??;

    let customer = vat::VatHandle::start("customer")?;
    let (first, second, closed) = customer
        .run_async(move || async move {
            let connection = tls::dial(addr, bank_key, None, None, Limits::default()).await?;
            let teller: teller::Client = connection.peer();
            let mut deposit = teller.deposit_request();
            deposit.get().set_amount(30);
            let first = deposit.send().promise.await?.get()?.get_balance();
            let mut deposit = teller.deposit_request();
            deposit.get().set_amount(12);
            let second = deposit.send().promise.await?.get()?.get_balance();
            // A method the teller left out is answered `unimplemented`.
            let closed = teller.close_request().send().promise.await.map(|_| ());
            let closed = closed.map_err(|e| vat::Error::from(e).kind());
            Ok::<_, Failure>((first, second, closed))
        })
        .wait()??;
    println!("deposits answered {first} then {second}; close: {closed:?}");
    customer.stop()?;
    bank.stop()?;
    Ok(())
}

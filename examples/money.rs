//! E's money: a mint, its purses, and a payment no one can forge or spend
//! twice.
//!
//! ```sh
//! cargo run -p examples --example money
//! ```
//!
//! Three vats in one process, joined by mutually authenticated TLS on
//! loopback: the bank holds a mint and every purse of its currency; alice
//! and bob are its customers, each holding a purse. Alice pays bob: she
//! sprouts an empty payment purse from her own, deposits the amount into it
//! and hands it to bob, who deposits it into his. A purse takes money only
//! from a genuine purse of its own mint, which it tells from any other with
//! a [`vat::Brand`]: a purse made up by a customer, or one of another mint,
//! moves nothing.
//!
//! capnp-rpc carries a capability passed between two vats through the vat
//! that passed it (RPC level 1). A purse alice handed bob over a connection
//! of their own would reach the bank as bob's proxy and be refused; so
//! customers reach one another through the bank's `Market`, and everything
//! bob holds from the bank comes straight from the bank.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use schema::money_capnp::{market, mint, payee, purse};
use vat::net::{tls, Identity, Limits, PublicKey};
use vat::{Brand, ErrorKind, Root, VatHandle};

/// Any error this program can meet, as one type that may cross threads.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------
// The bank's vat: the mint and its purses.

/// Why a purse or the mint refused.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("the source is not a purse of this mint")]
    NotThisMintsPurse,
    #[error("insufficient funds: the source holds {balance}, {amount} asked")]
    InsufficientFunds { balance: i64, amount: i64 },
    #[error("an amount cannot be negative ({amount})")]
    NegativeAmount { amount: i64 },
    #[error("the mint cannot make {amount} more: its total would overflow")]
    TotalOverflow { amount: i64 },
}

impl From<Refusal> for capnp::Error {
    fn from(refusal: Refusal) -> capnp::Error {
        let kind = match refusal {
            Refusal::InsufficientFunds { .. } => ErrorKind::Failed,
            _ => ErrorKind::InvalidArgument,
        };
        vat::Error::new(kind, refusal.to_string()).into()
    }
}

/// What a mint and its purses share: the brand that tells its purses from
/// any other capability, how much money it has made, and how much went
/// with purses no one held any more.
struct Issuer {
    purses: Brand<Purse>,
    minted: Cell<i64>,
    burned: Cell<i64>,
}

impl Issuer {
    fn new() -> Rc<Issuer> {
        Rc::new(Issuer {
            purses: Brand::new(),
            minted: Cell::new(0),
            burned: Cell::new(0),
        })
    }

    /// A purse holding `amount` new units.
    fn mint(self: &Rc<Self>, amount: i64) -> Result<purse::Client, Refusal> {
        if amount < 0 {
            return Err(Refusal::NegativeAmount { amount });
        }
        let minted = self.minted.get().checked_add(amount);
        self.minted
            .set(minted.ok_or(Refusal::TotalOverflow { amount })?);
        Ok(self.purses.export(Purse {
            issuer: Rc::clone(self),
            balance: Cell::new(amount),
        }))
    }

    /// Every live purse's balance, the total ever minted and burned.
    fn audit(&self) -> Audit {
        Audit {
            minted: self.minted.get(),
            burned: self.burned.get(),
            balances: self
                .purses
                .members()
                .iter()
                .map(|p| p.balance.get())
                .collect(),
        }
    }
}

/// The state of a mint's currency at one moment: what is in live purses
/// plus what was burned is what was minted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Audit {
    minted: i64,
    burned: i64,
    balances: Vec<i64>,
}

impl Audit {
    /// The money in live purses.
    fn total(&self) -> i64 {
        self.balances.iter().sum()
    }

    /// Whether no money was made but by the mint nor lost but by burning.
    fn balanced(&self) -> bool {
        self.total() + self.burned == self.minted
    }
}

struct Mint(Rc<Issuer>);

impl mint::Server for Mint {
    async fn make_purse(
        self: Rc<Self>,
        params: mint::MakePurseParams,
        mut results: mint::MakePurseResults,
    ) -> Result<(), capnp::Error> {
        let purse = self.0.mint(params.get()?.get_balance())?;
        results.get().set_purse(purse);
        Ok(())
    }
}

struct Purse {
    issuer: Rc<Issuer>,
    balance: Cell<i64>,
}

/// Money in a purse no one can reach is gone: the mint counts it burned.
impl Drop for Purse {
    fn drop(&mut self) {
        let burned = self.issuer.burned.get() + self.balance.get();
        self.issuer.burned.set(burned);
    }
}

impl purse::Server for Purse {
    async fn get_balance(
        self: Rc<Self>,
        _: purse::GetBalanceParams,
        mut results: purse::GetBalanceResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_balance(self.balance.get());
        Ok(())
    }

    async fn sprout(
        self: Rc<Self>,
        _: purse::SproutParams,
        mut results: purse::SproutResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_purse(self.issuer.mint(0)?);
        Ok(())
    }

    async fn deposit(
        self: Rc<Self>,
        params: purse::DepositParams,
        _: purse::DepositResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let amount = params.get_amount();
        if amount < 0 {
            return Err(Refusal::NegativeAmount { amount }.into());
        }
        let src = params.get_src()?;
        let Some(src) = self.issuer.purses.recognise(&src).await else {
            return Err(Refusal::NotThisMintsPurse.into());
        };
        // No await from here on: the check and the move happen in this one
        // turn, and the vat runs one turn at a time, so no other deposit can
        // see the source's balance between them. Two deposits from one
        // purse cannot both spend the same money.
        let balance = src.balance.get();
        if balance < amount {
            return Err(Refusal::InsufficientFunds { balance, amount }.into());
        }
        src.balance.set(balance - amount);
        // Cannot overflow: every balance is part of the mint's i64 total.
        self.balance.set(self.balance.get() + amount);
        Ok(())
    }
}

/// The bank's front door: customers open a purse and find one another.
struct Market {
    mint: mint::Client,
    opening_balance: i64,
    payees: RefCell<HashMap<String, payee::Client>>,
}

impl market::Server for Market {
    async fn open(
        self: Rc<Self>,
        params: market::OpenParams,
        mut results: market::OpenResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let name = params.get_name()?.to_string()?;
        let payee = params.get_payee()?;
        {
            let mut payees = self.payees.borrow_mut();
            if payees.contains_key(&name) {
                let taken = format!("the name {name:?} is taken");
                return Err(vat::Error::new(ErrorKind::InvalidArgument, taken).into());
            }
            payees.insert(name, payee);
        }
        let mut request = self.mint.make_purse_request();
        request.get().set_balance(self.opening_balance);
        let response = request.send().promise.await?;
        results.get().set_purse(response.get()?.get_purse()?);
        Ok(())
    }

    async fn payee(
        self: Rc<Self>,
        params: market::PayeeParams,
        mut results: market::PayeeResults,
    ) -> Result<(), capnp::Error> {
        let name = params.get()?.get_name()?.to_string()?;
        let payee = self.payees.borrow().get(&name).cloned();
        let payee = payee.ok_or_else(|| {
            vat::Error::new(
                ErrorKind::InvalidArgument,
                format!("no customer named {name:?}"),
            )
        })?;
        results.get().set_payee(payee);
        Ok(())
    }
}

/// The bank: its vat, where customers dial it, and its issuer for audits.
struct Bank {
    vat: VatHandle,
    addr: SocketAddr,
    key: PublicKey,
    issuer: Arc<Root<Rc<Issuer>>>,
}

impl Bank {
    /// Starts a bank whose customers each open with `opening_balance`.
    fn open(name: &str, opening_balance: i64) -> Result<Bank, BoxError> {
        let vat = VatHandle::start(name)?;
        let identity = Identity::generate()?;
        let key = identity.public_key();
        let (addr, issuer) = vat
            .run_async(move || async move {
                let issuer = Issuer::new();
                let mint: mint::Client = vat::export(Mint(Rc::clone(&issuer)));
                let market: market::Client = vat::export(Market {
                    mint,
                    opening_balance,
                    payees: RefCell::new(HashMap::new()),
                });
                let listener =
                    tls::TlsListener::bind(([127, 0, 0, 1], 0).into(), &identity).await?;
                let addr = listener.local_addr();
                listener.serve(move |_| Some(market.client.clone()), Limits::default());
                let root = vat::current().root(&vat::spawn(issuer));
                Ok::<_, BoxError>((addr, root))
            })
            .wait()??;
        Ok(Bank {
            vat,
            addr,
            key,
            issuer: Arc::new(issuer),
        })
    }

    fn audit(&self) -> Result<Audit, BoxError> {
        let issuer = Arc::clone(&self.issuer);
        Ok(self
            .vat
            .run(move || issuer.get()?.call(|i| i.audit()))
            .wait()??)
    }
}

// ---------------------------------------------------------------------------
// A customer's vat.

/// What a customer holds: the bank's market and its own purse.
#[derive(Clone)]
struct Account {
    market: market::Client,
    purse: purse::Client,
}

/// The customer as a payee: takes payments into its purse.
struct Receiver(Rc<OnceCell<purse::Client>>);

impl payee::Server for Receiver {
    async fn receive(
        self: Rc<Self>,
        params: payee::ReceiveParams,
        mut results: payee::ReceiveResults,
    ) -> Result<(), capnp::Error> {
        let payment = params.get()?.get_payment()?;
        let purse =
            self.0.get().cloned().ok_or_else(|| {
                vat::Error::new(ErrorKind::Failed, "this customer has no purse yet")
            })?;
        let amount = balance(&payment).await?;
        deposit(&purse, amount, &payment).await?;
        results.get().set_amount(amount);
        Ok(())
    }
}

async fn balance(purse: &purse::Client) -> Result<i64, capnp::Error> {
    let response = purse.get_balance_request().send().promise.await?;
    Ok(response.get()?.get_balance())
}

async fn deposit(
    into: &purse::Client,
    amount: i64,
    src: &purse::Client,
) -> Result<(), capnp::Error> {
    let mut request = into.deposit_request();
    request.get().set_amount(amount);
    request.get().set_src(src.clone());
    request.send().promise.await.map(|_| ())
}

async fn sprout(purse: &purse::Client) -> Result<purse::Client, capnp::Error> {
    let response = purse.sprout_request().send().promise.await?;
    response.get()?.get_purse()
}

impl Account {
    /// Dials the bank and opens an account as `name`.
    async fn open(name: &str, addr: SocketAddr, key: PublicKey) -> Result<Account, BoxError> {
        let connection = tls::dial(addr, key, None, None, Limits::default()).await?;
        let market: market::Client = connection.peer();
        let slot = Rc::new(OnceCell::new());
        let receiver: payee::Client = vat::export(Receiver(Rc::clone(&slot)));
        let mut request = market.open_request();
        request.get().set_name(name);
        request.get().set_payee(receiver);
        let response = request.send().promise.await?;
        let purse = response.get()?.get_purse()?;
        let _ = slot.set(purse.clone());
        Ok(Account { market, purse })
    }

    /// Pays `amount` to the customer named `to`: a payment purse sprouted
    /// from ours, filled from ours, handed to them through the market.
    /// Answers what they took.
    async fn pay(&self, to: &str, amount: i64) -> Result<i64, capnp::Error> {
        let payment = sprout(&self.purse).await?;
        deposit(&payment, amount, &self.purse).await?;
        let mut find = self.market.payee_request();
        find.get().set_name(to);
        let payee = find.send().promise.await?.get()?.get_payee()?;
        let mut receive = payee.receive_request();
        receive.get().set_payment(payment);
        Ok(receive.send().promise.await?.get()?.get_amount())
    }

    async fn balance(&self) -> Result<i64, capnp::Error> {
        balance(&self.purse).await
    }
}

/// A customer: its vat and its account there.
struct Customer {
    name: String,
    vat: VatHandle,
    account: Arc<Root<Account>>,
}

impl Customer {
    fn join(name: &str, bank: &Bank) -> Result<Customer, BoxError> {
        let vat = VatHandle::start(name)?;
        let (addr, key, who) = (bank.addr, bank.key, name.to_string());
        let account = vat
            .run_async(move || async move {
                let account = Account::open(&who, addr, key).await?;
                Ok::<_, BoxError>(vat::current().root(&vat::spawn(account)))
            })
            .wait()??;
        Ok(Customer {
            name: name.to_string(),
            vat,
            account: Arc::new(account),
        })
    }

    /// Runs `work` on this customer's account, in its vat.
    fn with<R, F, Fut>(&self, work: F) -> Result<R, BoxError>
    where
        R: Send + 'static,
        F: FnOnce(Account) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = R> + 'static,
    {
        Ok(self.start(work).wait()??)
    }

    /// [`with`](Customer::with), without waiting for it.
    fn start<R, F, Fut>(&self, work: F) -> vat::Completion<Result<R, vat::Error>>
    where
        R: Send + 'static,
        F: FnOnce(Account) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = R> + 'static,
    {
        let root = Arc::clone(&self.account);
        self.vat.run_async(move || async move {
            let account = root.get()?.call(|a| a.clone())?;
            Ok::<_, vat::Error>(work(account).await)
        })
    }

    fn balance(&self) -> Result<i64, BoxError> {
        Ok(self.with(|a| async move { a.balance().await })??)
    }

    fn pay(&self, to: &Customer, amount: i64) -> Result<i64, vat::Error> {
        let to = to.name.clone();
        match self.with(move |a| async move { a.pay(&to, amount).await }) {
            Ok(paid) => paid.map_err(vat::Error::from),
            Err(error) => Err(vat::Error::new(ErrorKind::Failed, error.to_string())),
        }
    }
}

/// A purse made up by a customer: it claims a fortune and gives nothing.
struct Counterfeit;

impl purse::Server for Counterfeit {
    async fn get_balance(
        self: Rc<Self>,
        _: purse::GetBalanceParams,
        mut results: purse::GetBalanceResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_balance(1_000_000);
        Ok(())
    }

    async fn deposit(
        self: Rc<Self>,
        _: purse::DepositParams,
        _: purse::DepositResults,
    ) -> Result<(), capnp::Error> {
        Ok(())
    }
}

fn main() -> Result<(), BoxError> {
    // 1. The bank: a mint, and a market where each customer opens a purse
    //    of 100.
    let bank = Bank::open("bank", 100)?;
    let alice = Customer::join("alice", &bank)?;
    let bob = Customer::join("bob", &bank)?;
    println!(
        "alice and bob open purses at the bank: {} and {}",
        alice.balance()?,
        bob.balance()?
    );

    // 2. Alice pays bob 30 through a payment purse she hands him.
    let paid = alice.pay(&bob, 30)?;
    println!(
        "alice pays bob {paid}: alice has {}, bob has {}",
        alice.balance()?,
        bob.balance()?
    );
    assert_eq!((alice.balance()?, bob.balance()?), (70, 130));

    // 3. Bob tries a purse of his own making: it moves nothing.
    let forged = bob
        .with(|a| async move {
            let fake: purse::Client = vat::export(Counterfeit);
            deposit(&a.purse, 1_000, &fake).await
        })?
        .map_err(vat::Error::from);
    let error = forged.err().ok_or("a counterfeit purse was accepted")?;
    println!("bob deposits from a counterfeit purse: refused ({error})");
    assert_eq!(error.kind(), ErrorKind::InvalidArgument);

    // 4. Alice tries to spend more than she has: refused, nothing moves.
    let overdraft = alice.pay(&bob, 500);
    let error = overdraft.err().ok_or("an overdraft was accepted")?;
    println!("alice tries to pay bob 500: refused ({error})");

    // 5. However they try, the money the mint made is all there is.
    let audit = bank.audit()?;
    println!(
        "the bank's audit: {} minted, {} in {} purses, {} burned",
        audit.minted,
        audit.total(),
        audit.balances.len(),
        audit.burned
    );
    assert!(audit.balanced() && audit.burned == 0, "{audit:?}");
    assert_eq!((alice.balance()?, bob.balance()?), (70, 130));

    alice.vat.stop()?;
    bob.vat.stop()?;
    bank.vat.stop()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_story_runs_to_the_end() {
        main().unwrap();
    }

    fn refused_as_not_genuine(outcome: Result<(), vat::Error>) {
        let error = outcome.expect_err("the deposit must be refused");
        assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{error}");
        assert!(
            error.message().contains("not a purse of this mint"),
            "{error}"
        );
    }

    #[test]
    fn a_counterfeit_or_another_mints_purse_is_refused_and_moves_nothing() {
        let bank = Bank::open("bank", 100).unwrap();
        let rival = Bank::open("rival", 100).unwrap();
        let mallory = VatHandle::start("mallory").unwrap();
        let (here, there) = ((bank.addr, bank.key), (rival.addr, rival.key));
        let (forged, foreign, balances) = mallory
            .run_async(move || async move {
                let ours = Account::open("mallory", here.0, here.1).await.unwrap();
                let theirs = Account::open("mallory", there.0, there.1).await.unwrap();
                let fake: purse::Client = vat::export(Counterfeit);
                let forged = deposit(&ours.purse, 50, &fake).await;
                let foreign = deposit(&ours.purse, 50, &theirs.purse).await;
                let balances = (
                    ours.balance().await.unwrap(),
                    theirs.balance().await.unwrap(),
                );
                (
                    forged.map_err(vat::Error::from),
                    foreign.map_err(vat::Error::from),
                    balances,
                )
            })
            .wait()
            .unwrap();
        refused_as_not_genuine(forged);
        refused_as_not_genuine(foreign);
        assert_eq!(balances, (100, 100), "nothing moved");
        for audit in [bank.audit().unwrap(), rival.audit().unwrap()] {
            assert_eq!((audit.minted, audit.total()), (100, 100), "{audit:?}");
        }
        mallory.stop().unwrap();
        bank.vat.stop().unwrap();
        rival.vat.stop().unwrap();
    }

    #[test]
    fn a_genuine_purse_handed_on_through_another_vat_is_refused() {
        // RPC level 1: alice hands bob her payment over a connection of
        // their own, so bob holds alice's proxy of it, and that is what the
        // bank is handed. The money stays in the payment.
        let bank = Bank::open("bank", 100).unwrap();
        let alice = Customer::join("alice", &bank).unwrap();
        let bob = Customer::join("bob", &bank).unwrap();
        let identity = Identity::generate().unwrap();
        let key = identity.public_key();
        let addr = bob
            .with(move |a| async move {
                let direct: payee::Client = vat::export(Receiver(Rc::new(OnceCell::from(a.purse))));
                let listener = tls::TlsListener::bind(([127, 0, 0, 1], 0).into(), &identity)
                    .await
                    .unwrap();
                let addr = listener.local_addr();
                listener.serve(move |_| Some(direct.client.clone()), Limits::default());
                addr
            })
            .unwrap();
        let (refused, held, recovered) = alice
            .with(move |a| async move {
                let connection = tls::dial(addr, key, None, None, Limits::default())
                    .await
                    .unwrap();
                let bob_directly: payee::Client = connection.peer();
                let payment = sprout(&a.purse).await.unwrap();
                deposit(&payment, 40, &a.purse).await.unwrap();
                let mut receive = bob_directly.receive_request();
                receive.get().set_payment(payment.clone());
                let refused = receive.send().promise.await.map(|_| ());
                let held = balance(&payment).await.unwrap();
                deposit(&a.purse, held, &payment).await.unwrap();
                (
                    refused.map_err(vat::Error::from),
                    held,
                    a.balance().await.unwrap(),
                )
            })
            .unwrap();
        refused_as_not_genuine(refused);
        assert_eq!(held, 40, "the payment kept its money");
        assert_eq!((recovered, bob.balance().unwrap()), (100, 100));
        alice.vat.stop().unwrap();
        bob.vat.stop().unwrap();
        bank.vat.stop().unwrap();
    }

    #[test]
    fn concurrent_deposits_from_one_purse_take_only_what_it_holds() {
        let bank = Bank::open("bank", 100).unwrap();
        let alice = Customer::join("alice", &bank).unwrap();
        // Ten deposits of 30 from alice's 100, all sent before any is
        // answered: exactly three fit.
        let (outcomes, targets, left) = alice
            .with(|a| async move {
                let mut targets = Vec::new();
                for _ in 0..10 {
                    targets.push(sprout(&a.purse).await.unwrap());
                }
                let deposits = targets.iter().map(|t| deposit(t, 30, &a.purse));
                let outcomes: Vec<Result<(), vat::Error>> = futures::future::join_all(deposits)
                    .await
                    .into_iter()
                    .map(|o| o.map_err(vat::Error::from))
                    .collect();
                let mut balances = Vec::new();
                for target in &targets {
                    balances.push(balance(target).await.unwrap());
                }
                (outcomes, balances, a.balance().await.unwrap())
            })
            .unwrap();
        let succeeded = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(succeeded, 3, "{outcomes:?}");
        for refused in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            assert_eq!(refused.kind(), ErrorKind::Failed, "{refused}");
            assert!(
                refused.message().contains("insufficient funds"),
                "{refused}"
            );
        }
        assert_eq!(targets.iter().sum::<i64>(), 90);
        assert_eq!(left, 10);
        // The targets are dropped by now (their money burned, or soon to
        // be): what is live plus what burned is what was minted.
        let audit = bank.audit().unwrap();
        assert_eq!(audit.minted, 100);
        assert!(audit.balanced(), "nothing created: {audit:?}");
        alice.vat.stop().unwrap();
        bank.vat.stop().unwrap();
    }

    #[test]
    fn one_payment_handed_to_two_payees_is_spent_once() {
        let bank = Bank::open("bank", 100).unwrap();
        let alice = Customer::join("alice", &bank).unwrap();
        let bob = Customer::join("bob", &bank).unwrap();
        let carol = Customer::join("carol", &bank).unwrap();
        let taken = alice
            .with(|a| async move {
                let payment = sprout(&a.purse).await.unwrap();
                deposit(&payment, 60, &a.purse).await.unwrap();
                let mut payees = Vec::new();
                for name in ["bob", "carol"] {
                    let mut find = a.market.payee_request();
                    find.get().set_name(name);
                    let found = find.send().promise.await.unwrap();
                    payees.push(found.get().unwrap().get_payee().unwrap());
                }
                let receipts = payees.iter().map(|payee| {
                    let mut receive = payee.receive_request();
                    receive.get().set_payment(payment.clone());
                    async move {
                        let response = receive.send().promise.await?;
                        Ok::<_, capnp::Error>(response.get()?.get_amount())
                    }
                });
                futures::future::join_all(receipts)
                    .await
                    .into_iter()
                    .map(|r| r.map_err(vat::Error::from))
                    .collect::<Vec<_>>()
            })
            .unwrap();
        // One payee takes the 60; the other is refused (or, if it looked
        // after the first took it, takes the 0 it saw).
        let full = taken.iter().filter(|t| matches!(t, Ok(60))).count();
        assert_eq!(full, 1, "{taken:?}");
        assert!(
            taken.iter().all(|t| matches!(t, Ok(60) | Ok(0))
                || t.as_ref()
                    .is_err_and(|e| e.message().contains("insufficient funds"))),
            "{taken:?}"
        );
        let balances = (
            alice.balance().unwrap(),
            bob.balance().unwrap(),
            carol.balance().unwrap(),
        );
        assert_eq!(balances.0, 40);
        assert_eq!(balances.1 + balances.2, 260, "{balances:?}");
        let audit = bank.audit().unwrap();
        assert_eq!((audit.minted, audit.total()), (300, 300), "{audit:?}");
        for customer in [alice, bob, carol] {
            customer.vat.stop().unwrap();
        }
        bank.vat.stop().unwrap();
    }

    /// xorshift64*: enough randomness for picking payments, reproducible
    /// from its seed.
    struct Random(u64);

    impl Random {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    #[test]
    fn a_thousand_concurrent_random_payments_conserve_the_money() {
        const OPENING: i64 = 1_000;
        const PAYMENTS: usize = 1_000;
        // MONEY_SEED=<seed> replays a run.
        let seed = match std::env::var("MONEY_SEED") {
            Ok(seed) => seed.parse().unwrap(),
            Err(_) => {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            }
        };
        let mut random = Random(seed);
        let bank = Bank::open("bank", OPENING).unwrap();
        let names = ["alice", "bob", "carol"];
        let customers: Vec<Customer> = names
            .iter()
            .map(|name| Customer::join(name, &bank).unwrap())
            .collect();
        // Each customer's share, as (payee, amount).
        let mut plans: Vec<Vec<(&'static str, i64)>> = vec![Vec::new(); names.len()];
        for _ in 0..PAYMENTS {
            let payer = random.below(3) as usize;
            let payee = (payer + 1 + random.below(2) as usize) % 3;
            // About 330 payments a customer, 5.5 on average, against 1,000:
            // sent all at once, some fit and some do not.
            let amount = 1 + random.below(10) as i64;
            plans[payer].push((names[payee], amount));
        }
        // Every customer sends all its payments at once, the three vats at
        // the same time.
        let running: Vec<_> = customers
            .iter()
            .zip(plans)
            .map(|(customer, plan)| {
                customer.start(move |a| async move {
                    let payments = plan.iter().map(|(to, amount)| a.pay(to, *amount));
                    futures::future::join_all(payments)
                        .await
                        .into_iter()
                        .map(|paid| paid.map_err(vat::Error::from))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for done in running {
            outcomes.extend(done.wait().unwrap().unwrap());
        }
        assert_eq!(outcomes.len(), PAYMENTS);
        let failed: Vec<&vat::Error> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
        for error in &failed {
            assert!(
                error.message().contains("insufficient funds"),
                "seed {seed}: {error}"
            );
        }
        assert!(
            !failed.is_empty(),
            "seed {seed}: some payments must not fit"
        );
        assert!(
            failed.len() < PAYMENTS,
            "seed {seed}: some payments must fit"
        );

        let audit = bank.audit().unwrap();
        assert_eq!(
            audit.minted,
            OPENING * 3,
            "seed {seed}: nothing minted but the openings"
        );
        assert!(
            audit.balances.iter().all(|b| *b >= 0),
            "seed {seed}: {audit:?}"
        );
        assert_eq!(audit.total(), audit.minted, "seed {seed}: {audit:?}");
        assert_eq!(
            audit.burned, 0,
            "seed {seed}: every payment purse ends empty"
        );
        let held: i64 = customers.iter().map(|c| c.balance().unwrap()).sum();
        assert_eq!(
            held,
            OPENING * 3,
            "seed {seed}: every payment purse ends empty"
        );
        println!(
            "seed {seed}: {} payments made, {} refused for insufficient funds",
            PAYMENTS - failed.len(),
            failed.len()
        );
        for customer in customers {
            customer.vat.stop().unwrap();
        }
        bank.vat.stop().unwrap();
    }
}

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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::FutureExt;
use schema::money_capnp::{market, mint, payee, purse};
use vat::net::{Dialer, Identity, PublicKey, Server};
use vat::{Brand, ErrorKind, Ref, Root, VatHandle, WeakRef};

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

/// What a mint and all its purses share: the brand that tells its purses
/// from any other capability, how much money it has made, and how much went
/// with purses no one held any more. Every purse may change the totals (a
/// sprout, a drop), so they live in this one object, which the mint and
/// each of its purses reach by a `Ref`.
#[derive(Default)]
struct Currency {
    purses: Brand<Purse>,
    minted: i64,
    burned: i64,
}

/// The mint: the only maker of its currency's money. Every purse holds a
/// copy, to sprout purses and to recognise its own kind.
#[derive(Clone)]
struct Mint(Ref<Currency>);

#[vat::object(mint)]
impl Mint {
    fn make_purse(
        &mut self,
        params: mint::MakePurseParams,
        mut results: mint::MakePurseResults,
    ) -> vat::Reply {
        let purse = self.issue(params.get()?.get_balance())?;
        results.get().set_purse(purse);
        vat::done()
    }

    /// A purse holding `amount` new units.
    fn issue(&self, amount: i64) -> Result<purse::Client, capnp::Error> {
        if amount < 0 {
            return Err(Refusal::NegativeAmount { amount }.into());
        }
        let purses = self.0.call(|c| {
            let minted = c.minted.checked_add(amount);
            c.minted = minted.ok_or(Refusal::TotalOverflow { amount })?;
            Ok::<_, Refusal>(c.purses.clone())
        })??;
        let mint = self.clone();
        let purse = vat::spawn_cyclic(|me| Purse {
            mint,
            balance: amount,
            me,
        });
        Ok(purses.export_object(&purse))
    }

    /// Every live purse's balance, the total ever minted and burned.
    fn audit(&self) -> Result<Audit, vat::Error> {
        let (purses, minted, burned) = self.0.call(|c| (c.purses.clone(), c.minted, c.burned))?;
        let live = purses.objects();
        let balances = live.iter().map(|p| p.call(|p| p.balance));
        let balances = balances.collect::<Result<_, _>>()?;
        Ok(Audit {
            minted,
            burned,
            balances,
        })
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

struct Purse {
    mint: Mint,
    balance: i64,
    /// Itself, weakly, to take a deposit after awaiting (see `deposit`).
    me: WeakRef<Purse>,
}

/// Money in a purse no one can reach is gone: the mint counts it burned.
impl Drop for Purse {
    fn drop(&mut self) {
        let balance = self.balance;
        // Never refused: no turn of the currency drops a purse.
        let _ = self.mint.0.call(|c| c.burned += balance);
    }
}

#[vat::object(purse)]
impl Purse {
    fn get_balance(
        &mut self,
        _: purse::GetBalanceParams,
        mut results: purse::GetBalanceResults,
    ) -> vat::Reply {
        results.get().set_balance(self.balance);
        vat::done()
    }

    fn sprout(&mut self, _: purse::SproutParams, mut results: purse::SproutResults) -> vat::Reply {
        results.get().set_purse(self.mint.issue(0)?);
        vat::done()
    }

    fn deposit(&mut self, params: purse::DepositParams, _: purse::DepositResults) -> vat::Reply {
        let params = params.get()?;
        let amount = params.get_amount();
        if amount < 0 {
            return Err(Refusal::NegativeAmount { amount }.into());
        }
        let (src, purses) = (params.get_src()?, self.mint.0.call(|c| c.purses.clone())?);
        // One of ours handed back is recognised at once (there is nothing
        // to wait for), so the whole deposit is this one turn.
        if let Some(src) = purses.recognise_object(&src).now_or_never() {
            self.take(src, amount)?;
            return vat::done();
        }
        // A promise (a pipelined answer, say): wait for what it resolves
        // to, then take in a turn of this purse, reached again through its
        // own weak reference (the wait cannot hold `&mut self`).
        let me = self.me.clone();
        vat::later(async move {
            let src = purses.recognise_object(&src).await;
            let this = me
                .upgrade()
                .ok_or_else(|| failed("the purse was dropped"))?;
            this.call(|p| p.take(src, amount))?
        })
    }

    /// Moves `amount` into this purse from `src`, if that is a purse of this
    /// mint holding at least as much.
    fn take(&mut self, src: Option<Ref<Purse>>, amount: i64) -> Result<(), capnp::Error> {
        let src = src.ok_or(Refusal::NotThisMintsPurse)?;
        // No await from here on: the check and the move happen in this one
        // turn (a near call runs at once, on this stack), and the vat runs
        // one turn at a time, so no other deposit can see the source's
        // balance between them. Two deposits from one purse cannot both
        // spend the same money.
        let withdrawn = match src.call(|s| s.withdraw(amount)) {
            // A near call on a purse that is running is refused: the source
            // is this very purse.
            Err(refused) if refused.kind() == ErrorKind::Reentrant => self.withdraw(amount),
            withdrawn => withdrawn?,
        };
        withdrawn?;
        // Cannot overflow: every balance is part of the mint's i64 total.
        self.balance += amount;
        Ok(())
    }

    fn withdraw(&mut self, amount: i64) -> Result<(), Refusal> {
        let balance = self.balance;
        if balance < amount {
            return Err(Refusal::InsufficientFunds { balance, amount });
        }
        self.balance = balance - amount;
        Ok(())
    }
}

/// The bank's front door: customers open a purse and find one another.
struct Market {
    mint: mint::Client,
    opening_balance: i64,
    payees: HashMap<String, payee::Client>,
}

#[vat::object(market)]
impl Market {
    fn open(&mut self, params: market::OpenParams, mut results: market::OpenResults) -> vat::Reply {
        let params = params.get()?;
        let name = params.get_name()?.to_string()?;
        if self.payees.contains_key(&name) {
            let taken = format!("the name {name:?} is taken");
            return Err(vat::Error::new(ErrorKind::InvalidArgument, taken).into());
        }
        self.payees.insert(name, params.get_payee()?);
        let mut request = self.mint.make_purse_request();
        request.get().set_balance(self.opening_balance);
        vat::later(async move {
            let response = request.send().promise.await?;
            results.get().set_purse(response.get()?.get_purse()?);
            Ok(())
        })
    }

    fn payee(
        &mut self,
        params: market::PayeeParams,
        mut results: market::PayeeResults,
    ) -> vat::Reply {
        let name = params.get()?.get_name()?.to_string()?;
        let payee = self.payees.get(&name).ok_or_else(|| {
            let unknown = format!("no customer named {name:?}");
            vat::Error::new(ErrorKind::InvalidArgument, unknown)
        })?;
        results.get().set_payee(payee.clone());
        vat::done()
    }
}

/// The bank: its vat, where customers dial it, and its mint for audits.
struct Bank {
    vat: VatHandle,
    addr: SocketAddr,
    key: PublicKey,
    mint: Arc<Root<Mint>>,
}

impl Bank {
    /// Starts a bank whose customers each open with `opening_balance`.
    fn open(name: &str, opening_balance: i64) -> Result<Bank, vat::Error> {
        let vat = VatHandle::start(name)?;
        let identity = Identity::generate()?;
        let key = identity.public_key();
        let (addr, mint) = vat.block_on(move || async move {
            let mint = vat::spawn(Mint(vat::spawn(Currency::default())));
            let market: market::Client = vat::spawn(Market {
                mint: mint.export(),
                opening_balance,
                payees: HashMap::new(),
            })
            .export();
            let loopback = ([127, 0, 0, 1], 0).into();
            let addr = Server::new(market.client).tls(loopback, &identity).await?;
            Ok::<_, vat::Error>((addr, vat::current().root(&mint)))
        })?;
        Ok(Bank {
            vat,
            addr,
            key,
            mint: Arc::new(mint),
        })
    }

    fn audit(&self) -> Result<Audit, vat::Error> {
        let mint = Arc::clone(&self.mint);
        self.vat
            .block_on(move || async move { mint.get()?.call(|m| m.audit())? })
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
struct Receiver {
    purse: Option<purse::Client>,
}

#[vat::object(payee)]
impl Receiver {
    fn receive(
        &mut self,
        params: payee::ReceiveParams,
        mut results: payee::ReceiveResults,
    ) -> vat::Reply {
        let payment = params.get()?.get_payment()?;
        let no_purse = || vat::Error::new(ErrorKind::Failed, "this customer has no purse yet");
        let purse = self.purse.clone().ok_or_else(no_purse)?;
        vat::later(async move {
            let amount = balance(&payment).await?;
            deposit(&purse, amount, &payment).await?;
            results.get().set_amount(amount);
            Ok(())
        })
    }
}

async fn balance(purse: &purse::Client) -> Result<i64, vat::Error> {
    let response = purse.get_balance_request().send().promise.await?;
    Ok(response.get()?.get_balance())
}

async fn deposit(into: &purse::Client, amount: i64, src: &purse::Client) -> Result<(), vat::Error> {
    let mut request = into.deposit_request();
    request.get().set_amount(amount);
    request.get().set_src(src.clone());
    request.send().promise.await?;
    Ok(())
}

async fn sprout(purse: &purse::Client) -> Result<purse::Client, vat::Error> {
    let response = purse.sprout_request().send().promise.await?;
    Ok(response.get()?.get_purse()?)
}

impl Account {
    /// Dials the bank and opens an account as `name`.
    async fn open(name: &str, addr: SocketAddr, key: PublicKey) -> Result<Account, vat::Error> {
        let market: market::Client = Dialer::new(addr).tls(key).await?.peer();
        let receiver = vat::spawn(Receiver { purse: None });
        let mut request = market.open_request();
        request.get().set_name(name);
        request.get().set_payee(receiver.export());
        let purse = request.send().promise.await?.get()?.get_purse()?;
        receiver.call(|r| r.purse = Some(purse.clone()))?;
        Ok(Account { market, purse })
    }

    /// Pays `amount` to the customer named `to`: a payment purse sprouted
    /// from ours, filled from ours, handed to them through the market.
    /// Answers what they took.
    async fn pay(&self, to: &str, amount: i64) -> Result<i64, vat::Error> {
        let payment = sprout(&self.purse).await?;
        deposit(&payment, amount, &self.purse).await?;
        let mut find = self.market.payee_request();
        find.get().set_name(to);
        let payee = find.send().promise.await?.get()?.get_payee()?;
        let mut receive = payee.receive_request();
        receive.get().set_payment(payment);
        Ok(receive.send().promise.await?.get()?.get_amount())
    }

    async fn balance(&self) -> Result<i64, vat::Error> {
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
    fn join(name: &str, bank: &Bank) -> Result<Customer, vat::Error> {
        let vat = VatHandle::start(name)?;
        let (addr, key, who) = (bank.addr, bank.key, name.to_string());
        let account = vat.block_on(move || async move {
            let account = Account::open(&who, addr, key).await?;
            Ok::<_, vat::Error>(vat::current().root(&vat::spawn(account)))
        })?;
        Ok(Customer {
            name: name.to_string(),
            vat,
            account: Arc::new(account),
        })
    }

    /// Runs `work` on this customer's account, in its vat.
    fn with<R, F, Fut>(&self, work: F) -> Result<R, vat::Error>
    where
        R: Send + 'static,
        F: FnOnce(Account) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = R> + 'static,
    {
        self.start(work).wait()?
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

    fn balance(&self) -> Result<i64, vat::Error> {
        self.with(|a| async move { a.balance().await })?
    }

    fn pay(&self, to: &Customer, amount: i64) -> Result<i64, vat::Error> {
        let to = to.name.clone();
        self.with(move |a| async move { a.pay(&to, amount).await })?
    }
}

/// A purse made up by a customer: it claims a fortune and gives nothing.
struct Counterfeit;

#[vat::object(purse)]
impl Counterfeit {
    fn get_balance(
        &mut self,
        _: purse::GetBalanceParams,
        mut results: purse::GetBalanceResults,
    ) -> vat::Reply {
        results.get().set_balance(1_000_000);
        vat::done()
    }

    fn deposit(&mut self, _: purse::DepositParams, _: purse::DepositResults) -> vat::Reply {
        vat::done()
    }
}

/// A failure of the story itself (something refused was accepted).
fn failed(what: &str) -> vat::Error {
    vat::Error::new(ErrorKind::Failed, what)
}

fn main() -> Result<(), vat::Error> {
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
    let forged = bob.with(|a| async move {
        let fake: purse::Client = vat::spawn(Counterfeit).export();
        deposit(&a.purse, 1_000, &fake).await
    })?;
    let Err(error) = forged else {
        return Err(failed("a counterfeit purse was accepted"));
    };
    println!("bob deposits from a counterfeit purse: refused ({error})");
    assert_eq!(error.kind(), ErrorKind::InvalidArgument);

    // 4. Alice tries to spend more than she has: refused, nothing moves.
    let Err(error) = alice.pay(&bob, 500) else {
        return Err(failed("an overdraft was accepted"));
    };
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
                let fake: purse::Client = vat::spawn(Counterfeit).export();
                let forged = deposit(&ours.purse, 50, &fake).await;
                let foreign = deposit(&ours.purse, 50, &theirs.purse).await;
                let balances = (
                    ours.balance().await.unwrap(),
                    theirs.balance().await.unwrap(),
                );
                (forged, foreign, balances)
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
                let receiver = Receiver {
                    purse: Some(a.purse),
                };
                let direct: payee::Client = vat::spawn(receiver).export();
                let loopback = ([127, 0, 0, 1], 0).into();
                Server::new(direct.client)
                    .tls(loopback, &identity)
                    .await
                    .unwrap()
            })
            .unwrap();
        let (refused, held, recovered) = alice
            .with(move |a| async move {
                let connection = Dialer::new(addr).tls(key).await.unwrap();
                let bob_directly: payee::Client = connection.peer();
                let payment = sprout(&a.purse).await.unwrap();
                deposit(&payment, 40, &a.purse).await.unwrap();
                let mut receive = bob_directly.receive_request();
                receive.get().set_payment(payment.clone());
                let refused = receive.send().promise.await.map(|_| ());
                let refused = refused.map_err(vat::Error::from);
                let held = balance(&payment).await.unwrap();
                deposit(&a.purse, held, &payment).await.unwrap();
                (refused, held, a.balance().await.unwrap())
            })
            .unwrap();
        refused_as_not_genuine(refused);
        assert_eq!(held, 40, "the payment kept its money");
        assert_eq!((recovered, bob.balance().unwrap()), (100, 100));
        alice.vat.stop().unwrap();
        bob.vat.stop().unwrap();
        bank.vat.stop().unwrap();
    }

    /// A mint of alice's own that answers with a purse it holds, after a
    /// pause: until then its answer is a promise.
    struct Slow(purse::Client);

    #[vat::object(mint)]
    impl Slow {
        fn make_purse(
            &mut self,
            _: mint::MakePurseParams,
            mut results: mint::MakePurseResults,
        ) -> vat::Reply {
            let purse = self.0.clone();
            vat::later(async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                results.get().set_purse(purse);
                Ok(())
            })
        }
    }

    #[test]
    fn a_source_still_a_promise_is_recognised_once_it_resolves() {
        let bank = Bank::open("bank", 100).unwrap();
        let alice = Customer::join("alice", &bank).unwrap();
        let (outcome, payment) = alice
            .with(|a| async move {
                let payment = sprout(&a.purse).await.unwrap();
                deposit(&payment, 25, &a.purse).await.unwrap();
                // The bank is handed a promise, which resolves to its own
                // purse once alice's slow mint answers.
                let slow: mint::Client = vat::spawn(Slow(payment.clone())).export();
                let promised = slow.make_purse_request().send().pipeline.get_purse();
                let moved = deposit(&a.purse, 10, &promised).await;
                (moved, balance(&payment).await.unwrap())
            })
            .unwrap();
        outcome.unwrap();
        assert_eq!((payment, alice.balance().unwrap()), (15, 85));
        alice.vat.stop().unwrap();
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
                let outcomes = futures::future::join_all(deposits).await;
                let mut balances = Vec::new();
                for target in &targets {
                    balances.push(balance(target).await.unwrap());
                }
                // A purse deposited into itself must hold the amount, and
                // keeps it.
                let into_itself = [10, 11].map(|n| deposit(&a.purse, n, &a.purse));
                let into_itself = futures::future::join_all(into_itself).await;
                let into_itself = into_itself.iter().map(Result::is_ok).collect::<Vec<_>>();
                (
                    outcomes,
                    balances,
                    (into_itself, a.balance().await.unwrap()),
                )
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
        assert_eq!(left, (vec![true, false], 10));
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
                        Ok::<_, vat::Error>(response.get()?.get_amount())
                    }
                });
                futures::future::join_all(receipts).await
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
                    futures::future::join_all(payments).await
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

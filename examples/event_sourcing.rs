//! Event sourcing on brooklet: a bank account whose state is never stored,
//! only the events that changed it. Each account's events go to one
//! partition of the `accounts` topic; the current balance is rebuilt by
//! replaying them. A command (deposit, withdraw) loads the account, checks
//! its business rule against that state and appends the resulting event
//! with `Log::append_if`, conditional on the partition still ending where
//! the load left it (optimistic concurrency). A writer that decided on an
//! older version is refused with `Error::UnexpectedEndOffset`, catches up
//! on the events it missed, decides again and retries.
//!
//! The run shows a stale session being refused, a withdrawal refused by the
//! business rule, and two threads depositing into one account at the same
//! time; then it closes the log, reopens it, replays every account and
//! checks the state is exactly what this run's commands should have
//! produced. It exits non-zero on any other outcome.
//!
//! Usage: `cargo run --release --example event_sourcing [DATA_DIR]`
//! (default `./event-sourcing-data`). The directory is left in place;
//! running again continues from the accounts already there.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::thread;

use brooklet::{Error, Fetch, Log, LogConfig, Record, TopicConfig, partition_for_key};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const TOPIC: &str = "accounts";
const PARTITIONS: u32 = 4;
/// The header naming an event's type; the value holds its payload.
const EVENT_TYPE_HEADER: &str = "event-type";
/// Attempts a command gets before giving up on a contended account.
const MAX_ATTEMPTS: u32 = 10_000;
/// Deposits each of the two concurrent threads makes.
const DEPOSITS_PER_THREAD: u64 = 1000;

fn main() -> ExitCode {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./event-sourcing-data".to_owned());
    match run(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("event_sourcing failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// What happened to an account. These are the only thing stored.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

impl Event {
    fn to_record(&self, account_id: &str) -> Record {
        let (kind, payload) = match self {
            Event::Opened { owner } => ("opened", owner.clone()),
            Event::Deposited { amount } => ("deposited", amount.to_string()),
            Event::Withdrawn { amount } => ("withdrawn", amount.to_string()),
        };
        Record::new(payload)
            .key(account_id)
            .header(EVENT_TYPE_HEADER, kind)
    }

    fn from_parts(kind: &[u8], payload: &[u8]) -> Result<Event> {
        let payload = std::str::from_utf8(payload)?;
        let amount = || payload.parse::<u64>();
        Ok(match kind {
            b"opened" => Event::Opened {
                owner: payload.to_owned(),
            },
            b"deposited" => Event::Deposited { amount: amount()? },
            b"withdrawn" => Event::Withdrawn { amount: amount()? },
            other => {
                return Err(
                    format!("unknown event type {:?}", String::from_utf8_lossy(other)).into(),
                );
            }
        })
    }
}

/// The state of one account, as far as its partition has been read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Account {
    id: String,
    partition: u32,
    owner: Option<String>,
    balance: u64,
    /// Events of this account applied so far.
    events: u64,
    /// The partition's end offset when it was last read: the version an
    /// append is conditional on.
    version: i64,
}

impl Account {
    /// Replays the account's partition from its start.
    fn load(log: &Log, id: &str) -> Result<Account> {
        let partition = partition_for_key(id.as_bytes(), PARTITIONS);
        let mut account = Account {
            id: id.to_owned(),
            partition,
            owner: None,
            balance: 0,
            events: 0,
            version: log.offsets(TOPIC, partition)?.log_start_offset,
        };
        account.catch_up(log)?;
        Ok(account)
    }

    /// Applies the events appended since `version`. Other accounts that
    /// hash to the same partition are skipped.
    fn catch_up(&mut self, log: &Log) -> Result<()> {
        let mut reader = log.reader(TOPIC, self.partition, self.version)?;
        let mut fetch = Fetch::new();
        while reader.next_into(&mut fetch)? {
            for record in fetch.records() {
                let record = record?;
                if record.key != Some(self.id.as_bytes()) {
                    continue;
                }
                let mut kind = None;
                for header in record.headers() {
                    let header = header?;
                    if header.key == EVENT_TYPE_HEADER.as_bytes() {
                        kind = header.value;
                    }
                }
                let kind = kind.ok_or("event without an event-type header")?;
                let event = Event::from_parts(kind, record.value.unwrap_or_default())?;
                self.apply(&event)?;
            }
        }
        self.version = reader.position();
        Ok(())
    }

    fn apply(&mut self, event: &Event) -> Result<()> {
        match event {
            Event::Opened { owner } => {
                if self.owner.is_some() {
                    return Err(format!("account {} opened twice", self.id).into());
                }
                self.owner = Some(owner.clone());
            }
            Event::Deposited { amount } => {
                self.balance = self
                    .balance
                    .checked_add(*amount)
                    .ok_or("balance overflow")?;
            }
            Event::Withdrawn { amount } => {
                self.balance = self
                    .balance
                    .checked_sub(*amount)
                    .ok_or("stored withdrawal exceeds the balance")?;
            }
        }
        self.events += 1;
        Ok(())
    }

    /// The business rules: what event a command produces on this state.
    fn decide(&self, command: &Command) -> std::result::Result<Event, String> {
        match (command, &self.owner) {
            (Command::Open { owner }, None) => Ok(Event::Opened {
                owner: owner.clone(),
            }),
            (Command::Open { .. }, Some(_)) => Err("account already open".to_owned()),
            (_, None) => Err("account not open".to_owned()),
            (Command::Deposit { amount }, Some(_)) => Ok(Event::Deposited { amount: *amount }),
            (Command::Withdraw { amount }, Some(_)) if *amount > self.balance => Err(format!(
                "insufficient funds: balance {}, withdrawal {amount}",
                self.balance
            )),
            (Command::Withdraw { amount }, Some(_)) => Ok(Event::Withdrawn { amount: *amount }),
        }
    }

    /// Appends `event` if the partition still ends at `version`, and
    /// applies it. Returns the conflict error unchanged otherwise.
    fn append(&mut self, log: &Log, event: &Event) -> brooklet::Result<i64> {
        let info = log.append_if(
            TOPIC,
            self.partition,
            self.version,
            &[event.to_record(&self.id)],
        )?;
        // The event was decided on this very state, so applying it can not
        // break a rule; the version moves past our own event.
        self.apply(event)
            .expect("an event decided on this state applies to it");
        self.version = info.last_offset + 1;
        Ok(info.base_offset)
    }
}

#[derive(Clone, Debug)]
enum Command {
    Open { owner: String },
    Deposit { amount: u64 },
    Withdraw { amount: u64 },
}

/// How a command ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Its event is stored at this offset, after this many refused tries.
    Appended { offset: i64, conflicts: u32 },
    /// The business rules refused it; nothing was stored.
    Rejected(String),
}

/// Runs a command on `account` (already loaded, possibly stale) until its
/// event is stored or the rules refuse it, catching up after each conflict.
fn execute(log: &Log, account: &mut Account, command: &Command) -> Result<Outcome> {
    execute_with(log, account, command, || {})
}

/// [`execute`], calling `work` between deciding and appending: a real
/// handler would validate, call other services, and so on, while other
/// sessions append.
fn execute_with(
    log: &Log,
    account: &mut Account,
    command: &Command,
    work: impl Fn(),
) -> Result<Outcome> {
    let mut conflicts = 0;
    loop {
        let event = match account.decide(command) {
            Ok(event) => event,
            Err(reason) => return Ok(Outcome::Rejected(reason)),
        };
        work();
        match account.append(log, &event) {
            Ok(offset) => return Ok(Outcome::Appended { offset, conflicts }),
            Err(Error::UnexpectedEndOffset { .. }) => {
                conflicts += 1;
                if conflicts >= MAX_ATTEMPTS {
                    return Err(format!(
                        "{command:?} on {} gave up after {conflicts} conflicts",
                        account.id
                    )
                    .into());
                }
                // Someone appended after our load: read what we missed and
                // decide again on the fresh state.
                account.catch_up(log)?;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

fn expect_appended(outcome: &Outcome, what: &str) -> Result<()> {
    match outcome {
        Outcome::Appended { .. } => Ok(()),
        Outcome::Rejected(reason) => Err(format!("{what} was rejected: {reason}").into()),
    }
}

fn describe(account: &Account) -> String {
    format!(
        "{} (partition {}, owner {}): balance {}, {} events, version {}",
        account.id,
        account.partition,
        account.owner.as_deref().unwrap_or("-"),
        account.balance,
        account.events,
        account.version
    )
}

fn run(dir: &str) -> Result<()> {
    println!("opening log in {dir}");
    let log = Log::open(dir, LogConfig::default())?;
    if log.topics().iter().any(|t| t == TOPIC) {
        println!("topic {TOPIC:?} exists from an earlier run");
    } else {
        log.create_topic(TOPIC, TopicConfig::default().partitions(PARTITIONS))?;
        println!("created topic {TOPIC:?} with {PARTITIONS} partitions");
    }

    // What this run expects to find at the end: the state at the start
    // plus the effect of each command it makes.
    let mut expected: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (id, owner) in [("alice", "Alice Liddell"), ("bob", "Bob Cratchit")] {
        let mut account = Account::load(&log, id)?;
        println!("replayed {}", describe(&account));
        if account.owner.is_none() {
            let outcome = execute(
                &log,
                &mut account,
                &Command::Open {
                    owner: owner.to_owned(),
                },
            )?;
            expect_appended(&outcome, "opening the account")?;
            println!("  opened {id}: {outcome:?}");
        }
        expected.insert(id, (account.balance, account.events));
    }

    // A plain deposit and withdrawal.
    let mut alice = Account::load(&log, "alice")?;
    for command in [
        Command::Deposit { amount: 100 },
        Command::Withdraw { amount: 30 },
    ] {
        let outcome = execute(&log, &mut alice, &command)?;
        expect_appended(&outcome, "a covered command")?;
        println!("  alice {command:?}: {outcome:?}");
    }
    let entry = expected.get_mut("alice").ok_or("alice is tracked")?;
    *entry = (entry.0 + 100 - 30, entry.1 + 2);

    // Two sessions load alice at the same version. The first deposits; the
    // second, deciding on the state it loaded, is refused, catches up and
    // retries.
    let mut teller = Account::load(&log, "alice")?;
    let mut atm = Account::load(&log, "alice")?;
    println!(
        "two sessions loaded alice at version {} (balance {})",
        teller.version, teller.balance
    );
    let outcome = execute(&log, &mut teller, &Command::Deposit { amount: 50 })?;
    expect_appended(&outcome, "the teller's deposit")?;
    println!("  teller deposits 50: {outcome:?}");
    let stale_version = atm.version;
    match atm.append(&log, &Event::Withdrawn { amount: 80 }) {
        Err(
            err @ Error::UnexpectedEndOffset {
                expected, actual, ..
            },
        ) => {
            println!("  atm withdraws 80 on the state it loaded: refused ({err})");
            if expected != stale_version || actual <= expected {
                return Err(format!("conflict reported {expected} -> {actual}").into());
            }
        }
        other => {
            return Err(format!("the stale append should conflict, got {other:?}").into());
        }
    }
    atm.catch_up(&log)?;
    println!(
        "  atm reloads: version {}, balance {}",
        atm.version, atm.balance
    );
    let outcome = execute(&log, &mut atm, &Command::Withdraw { amount: 80 })?;
    if outcome
        != (Outcome::Appended {
            offset: atm.version - 1,
            conflicts: 0,
        })
    {
        return Err(format!("the atm's retried withdrawal: {outcome:?}").into());
    }
    println!("  atm retries the withdrawal of 80: {outcome:?}");
    if atm != teller_after(&log, &teller)? {
        return Err("the two sessions disagree after catching up".into());
    }
    let entry = expected.get_mut("alice").ok_or("alice is tracked")?;
    *entry = (entry.0 + 50 - 80, entry.1 + 2);

    // A withdrawal the balance does not cover: refused by the rule, not by
    // the log, and nothing is stored.
    let before = log.offsets(TOPIC, atm.partition)?.log_end_offset;
    let too_much = atm.balance + 1;
    let outcome = execute(&log, &mut atm, &Command::Withdraw { amount: too_much })?;
    println!("  alice withdraws {too_much}: {outcome:?}");
    if !matches!(outcome, Outcome::Rejected(_))
        || log.offsets(TOPIC, atm.partition)?.log_end_offset != before
    {
        return Err("an uncovered withdrawal must be rejected and store nothing".into());
    }

    // Two threads deposit into bob at once, each from its own session;
    // every conflict is resolved by catching up and retrying.
    let start = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|t| {
            let log = log.clone();
            let start = Arc::clone(&start);
            thread::spawn(move || -> std::result::Result<u32, String> {
                start.wait();
                let mut session = Account::load(&log, "bob").map_err(|e| e.to_string())?;
                let mut conflicts = 0;
                for _ in 0..DEPOSITS_PER_THREAD {
                    let deposit = Command::Deposit { amount: 1 + t };
                    // Yielding stands in for the handler's work, so the
                    // other thread gets to append in between.
                    match execute_with(&log, &mut session, &deposit, thread::yield_now) {
                        Ok(Outcome::Appended { conflicts: c, .. }) => conflicts += c,
                        other => return Err(format!("bob deposit: {other:?}")),
                    }
                }
                Ok(conflicts)
            })
        })
        .collect();
    let mut conflicts = 0;
    for handle in handles {
        conflicts += handle
            .join()
            .map_err(|_| "a depositing thread panicked")??;
    }
    println!(
        "two threads made {} deposits into bob; {conflicts} appends were refused and retried",
        2 * DEPOSITS_PER_THREAD
    );
    let entry = expected.get_mut("bob").ok_or("bob is tracked")?;
    *entry = (
        entry.0 + DEPOSITS_PER_THREAD * (1 + 2),
        entry.1 + 2 * DEPOSITS_PER_THREAD,
    );

    // The state must survive a close and reopen, rebuilt from events alone.
    println!("closing and reopening the log");
    log.close()?;
    let log = Log::open(dir, LogConfig::default())?;
    for (id, (balance, events)) in &expected {
        let account = Account::load(&log, id)?;
        println!("replayed {}", describe(&account));
        if (account.balance, account.events) != (*balance, *events) {
            return Err(format!(
                "{id}: expected balance {balance} after {events} events, found balance {} after {}",
                account.balance, account.events
            )
            .into());
        }
    }
    log.close()?;
    println!("final state as expected; the events are in {dir}");
    Ok(())
}

/// The teller's session after catching up on everything since its append.
fn teller_after(log: &Log, teller: &Account) -> Result<Account> {
    let mut fresh = teller.clone();
    fresh.catch_up(log)?;
    Ok(fresh)
}

//! The `bank` workload: accounts `/root/Bank/a<i>` on different entity shards, clients
//! transferring gold between accounts of different shards as cross-shard transactions
//! (preconditions on both balances), each transfer also creating a receipt node under the
//! receiving account. While the nemesis kills servers (coordinators die mid-commit), and
//! after the heal: the total never changes, every acknowledged transfer's receipt is there,
//! every account is whole (read through the spine and its entity shard).

use std::cell::Cell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use treesync_core::shard::ShardMap;
use treesync_core::{Limits, NodePath, Value};
use treesync_net::ws_client::{field, WsClient, WsClientError};

use super::workload::OP_TIMEOUT;

pub const ACCOUNTS: u64 = 6;
pub const GOLD: i64 = 100;
/// `serve --shards` of a Jepsen cluster: the spine and three entity shards.
pub const SHARDS: u32 = 4;

fn account(i: u64) -> String {
    format!("/root/Bank/a{i}")
}

fn shard_of(path: &str) -> u32 {
    let map = ShardMap::new(SHARDS, treesync_core::shard::SHARD_DEPTH_DEFAULT).expect("map");
    map.shard_of(&NodePath::parse(path, &Limits::default()).expect("valid"))
        .0
}

fn s(text: &str) -> Value {
    Value::String(text.into())
}

fn dict(pairs: &[(&str, Value)]) -> Value {
    Value::Dictionary(pairs.iter().map(|(k, v)| (s(k), v.clone())).collect())
}

/// What the clients saw, shared between them.
#[derive(Default)]
pub struct Ledger {
    /// Receipts of acknowledged transfers (their paths).
    pub acked: Mutex<Vec<String>>,
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub unknown: AtomicU64,
}

/// Creates the world and its accounts (retrying through elections).
pub async fn setup(urls: &[String]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut server = 0usize;
    let mut creates = vec![("/root".to_owned(), "Bank".to_owned(), Vec::new())];
    for i in 0..ACCOUNTS {
        let props = vec![("gold".to_owned(), Value::Int(GOLD))];
        creates.push(("/root/Bank".into(), format!("a{i}"), props));
    }
    for (parent, name, props) in creates {
        loop {
            if Instant::now() > deadline {
                return Err(format!(
                    "the cluster did not take the bank's setup ({parent}/{name})"
                ));
            }
            let attempt = async {
                let mut c = WsClient::connect(&urls[server % urls.len()]).await?;
                match c.create(&parent, &name, "Node", props.clone()).await {
                    Err(WsClientError::Refused { code, .. }) if code == "name_taken" => Ok(0),
                    other => other,
                }
            };
            match actix_rt::time::timeout(Duration::from_secs(3), attempt).await {
                Ok(Ok(_)) => break,
                _ => server += 1,
            }
            // A pause between attempts while the cluster elects (polling it, not syncing).
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// One client's transfers until `stop`.
pub async fn client(index: u64, urls: Vec<String>, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let mut rng = treesync_core::rng::SplitMix64::new(0x6261_6e6b ^ index);
    let mut server = index as usize % urls.len();
    let seq = Rc::new(Cell::new(0u64));
    while !stop.load(Ordering::SeqCst) {
        let from = rng.next_u64() % ACCOUNTS;
        let Some(to) = (1..ACCOUNTS)
            .map(|d| (from + d) % ACCOUNTS)
            .find(|to| shard_of(&account(*to)) != shard_of(&account(from)))
        else {
            return;
        };
        seq.set(seq.get() + 1);
        let receipt = format!("r{index}_{}", seq.get());
        let amount = 1 + (rng.next_u64() % 20) as i64;
        let attempt = transfer(&urls[server], from, to, amount, &receipt);
        match actix_rt::time::timeout(OP_TIMEOUT, attempt).await {
            Ok(Ok(true)) => {
                ledger.ok.fetch_add(1, Ordering::SeqCst);
                let path = format!("{}/{receipt}", account(to));
                ledger.acked.lock().expect("ledger").push(path);
            }
            Ok(Ok(false)) => {
                ledger.fail.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Err(e)) if !e.may_have_applied() => {
                ledger.fail.fetch_add(1, Ordering::SeqCst);
                server = (server + 1) % urls.len();
                // Back off from a server that is down (a retry pace, not a synchronisation).
                actix_rt::time::sleep(Duration::from_millis(50)).await;
            }
            _ => {
                ledger.unknown.fetch_add(1, Ordering::SeqCst);
                server = (server + 1) % urls.len();
            }
        }
    }
}

/// Reads both balances, then moves `amount` with preconditions on them and a receipt.
/// `Ok(false)`: a precondition failed (someone else moved first; nothing changed).
async fn transfer(
    url: &str,
    from: u64,
    to: u64,
    amount: i64,
    receipt: &str,
) -> Result<bool, WsClientError> {
    let mut c = WsClient::connect(url).await?;
    let (a, b) = (account(from), account(to));
    let gold = |v: Value| match v {
        Value::Int(g) => g,
        _ => 0,
    };
    let (ga, gb) = (
        gold(c.get_prop(&a, "gold").await?),
        gold(c.get_prop(&b, "gold").await?),
    );
    let set = |path: &str, g: i64| {
        dict(&[
            ("op", s("set")),
            ("path", s(path)),
            ("props", dict(&[("gold", Value::Int(g))])),
        ])
    };
    let create = dict(&[
        ("op", s("create")),
        ("parent", s(&b)),
        ("name", s(receipt)),
        ("class", s("Node")),
    ]);
    let expect = |path: &str, g: i64| {
        dict(&[
            ("path", s(path)),
            ("prop", s("gold")),
            ("value", Value::Int(g)),
        ])
    };
    let ops = vec![set(&a, ga - amount), set(&b, gb + amount), create];
    match c.txn(ops, vec![expect(&a, ga), expect(&b, gb)]).await {
        Ok(_) => Ok(true),
        Err(WsClientError::Refused { code, .. }) if code == "precondition_failed" => Ok(false),
        Err(e) => Err(e),
    }
}

/// After the heal: the whole bank through any server. `Ok(verdict)`.
pub async fn check(urls: &[String], ledger: &Ledger) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    let mut server = 0usize;
    let tree = loop {
        if Instant::now() > deadline {
            return Err(format!("no server returned the bank: {last}"));
        }
        let read = async {
            let mut c = WsClient::connect(&urls[server % urls.len()]).await?;
            c.tree("/root/Bank").await
        };
        match actix_rt::time::timeout(Duration::from_secs(3), read).await {
            Ok(Ok(tree)) => break tree,
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
        server += 1;
        actix_rt::time::sleep(Duration::from_millis(200)).await; // polling the cluster
    };
    let mut total = 0;
    let mut receipts = BTreeSet::new();
    let children = match field(&tree, "children") {
        Some(Value::Array(c)) => c.clone(),
        _ => Vec::new(),
    };
    for node in &children {
        let name = match field(node, "name") {
            Some(Value::String(n)) => n.clone(),
            _ => continue,
        };
        match field(node, "props").and_then(|p| field(p, "gold")) {
            Some(Value::Int(g)) => total += g,
            other => return Ok(format!("INVALID: account {name} is not whole ({other:?})")),
        }
        if let Some(Value::Array(rs)) = field(node, "children") {
            for r in rs {
                if let Some(Value::String(rn)) = field(r, "name") {
                    receipts.insert(format!("/root/Bank/{name}/{rn}"));
                }
            }
        }
    }
    if children.len() as u64 != ACCOUNTS {
        return Ok(format!(
            "INVALID: {} accounts, not {ACCOUNTS}",
            children.len()
        ));
    }
    if total != GOLD * ACCOUNTS as i64 {
        return Ok(format!(
            "INVALID: the total is {total}, not {}",
            GOLD * ACCOUNTS as i64
        ));
    }
    let acked = ledger.acked.lock().expect("ledger").clone();
    if let Some(missing) = acked.iter().find(|r| !receipts.contains(*r)) {
        return Ok(format!(
            "INVALID: acknowledged transfer {missing} is not there"
        ));
    }
    Ok("VALID".into())
}

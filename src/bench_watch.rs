//! `treesync bench --workload subscribe --addr …`: write-to-delivery latency against a running
//! cluster, treesync or etcd, measured the same way for both: `--clients` subscribers watch one
//! subtree (treesync: a merged subscription of `/root/Bench<n>` through the gateways; etcd: a
//! watch of a key prefix through its JSON gateway, spread over the members) while one
//! closed-loop writer changes entity after entity for `--seconds`. Each delivery is timed from
//! just before its write was sent. The report's `writes` histogram holds those delivery
//! latencies and its rate is deliveries per second over all subscribers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::bench_load::{histogram, show_progress, LoadReport, LoadSpec, System};
use crate::etcd_http::EtcdHttp;

/// Keys (entities) the writer cycles through.
const KEYS: u64 = 32;

pub fn run(spec: &LoadSpec) -> Result<LoadReport, String> {
    let writes = match &spec.system {
        System::Treesync { gateways, .. } => {
            if gateways.is_empty() {
                return Err("subscribe runs through treesync's gateways: give --ws-addr".into());
            }
            actix_rt::System::new().block_on(crate::bench_subscribe::measure(
                gateways,
                spec.clients,
                spec.seconds,
            ))?
        }
        System::Etcd(members) => etcd(members, spec)?,
    };
    Ok(LoadReport {
        writes,
        reads: histogram(),
        // The writer's window (set-up and subscribing are outside it).
        elapsed: spec.seconds as f64,
        unsent: 0,
    })
}

/// The etcd side: watcher threads record (revision, arrival) for every event; the writer
/// records (revision, send time) for every put; latencies join the two on the revision.
fn etcd(members: &[SocketAddr], spec: &LoadSpec) -> Result<hdrhistogram::Histogram<u64>, String> {
    // A fresh prefix per run: events of an earlier run's keys are not this run's.
    let prefix = format!("w{}-{}/", std::process::id(), spec.clients);
    // The revision at which watchers stop (0 until the writer is done).
    let stop_at = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready) = mpsc::channel::<()>();
    let watchers: Vec<_> = (0..spec.clients)
        .map(|i| {
            let (addr, prefix, stop_at) =
                (members[i % members.len()], prefix.clone(), stop_at.clone());
            let ready = ready_tx.clone();
            std::thread::spawn(move || -> Result<Vec<(u64, Instant)>, String> {
                let mut watch = EtcdHttp::connect(addr)?.watch(&prefix)?;
                watch.next_revisions()?; // the "created" message: the watch is in place
                let _ = ready.send(()); // the writer waits for every watcher
                drop(ready);
                let mut seen = Vec::new();
                loop {
                    let revisions = watch.next_revisions()?;
                    let now = Instant::now();
                    seen.extend(revisions.iter().map(|r| (*r, now)));
                    let stop = stop_at.load(Ordering::Acquire);
                    if stop != 0 && revisions.iter().any(|r| *r >= stop) {
                        return Ok(seen);
                    }
                }
            })
        })
        .collect();
    drop(ready_tx);
    for _ in 0..spec.clients {
        if ready.recv().is_err() {
            break; // a watcher failed: its error comes out of the join below
        }
    }
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(spec.seconds);
    let writer = {
        let (addr, prefix, stop_at, done) =
            (members[0], prefix.clone(), stop_at.clone(), done.clone());
        let value_bytes = spec.value_bytes;
        std::thread::spawn(move || -> Result<HashMap<u64, Instant>, String> {
            let mut etcd = EtcdHttp::connect(addr)?;
            let mut sent = HashMap::new();
            let value = "x".repeat(value_bytes);
            let (mut i, mut last) = (0u64, 0u64);
            while Instant::now() < deadline {
                let at = Instant::now();
                last = etcd.put(&format!("{prefix}{}", i % KEYS), value.as_bytes())?;
                sent.insert(last, at);
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            // One more put after the stop revision is published: every watcher sees an
            // event at or past it, however its last message and the store interleaved.
            stop_at.store(last + 1, Ordering::Release);
            etcd.put(&format!("{prefix}end"), b"end")?;
            Ok(sent)
        })
    };
    show_progress(&done, start, deadline, "etcd subscribe writer");
    let sent = writer
        .join()
        .map_err(|_| "the writer thread panicked".to_owned())??;
    let mut latencies = histogram();
    for watcher in watchers {
        let seen = watcher
            .join()
            .map_err(|_| "a watcher thread panicked".to_owned())??;
        for (revision, arrived) in seen {
            if let Some(at) = sent.get(&revision) {
                latencies.saturating_record(arrived.duration_since(*at).as_micros() as u64);
            }
        }
    }
    Ok(latencies)
}

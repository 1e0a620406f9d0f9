//! The fault-injecting TCP proxy on the peer links: one entrance per directed link
//! (server i dials server j at `entrance(i, j)`, set with `serve --dial`), forwarding bytes
//! both ways to j's real peer port. Cutting a link closes its connections and refuses new
//! ones until it is joined again, which is what a network partition looks like to TCP.
//!
//! # Invariants
//! - While a link is cut, no byte passes it: new connections are closed on accept, and
//!   every connection open at the cut was shut down in both directions.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

struct Link {
    cut: AtomicBool,
    /// Both ends of every connection through the link, to shut down at a cut.
    open: Mutex<Vec<TcpStream>>,
}

impl Link {
    fn sever(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for stream in open.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Every directed peer link of a cluster.
pub struct Proxy {
    links: BTreeMap<(u64, u64), (SocketAddr, Arc<Link>)>,
}

impl Proxy {
    /// Opens an entrance for every ordered pair of servers in `peers` (id → peer address).
    pub fn start(peers: &BTreeMap<u64, SocketAddr>) -> Result<Proxy, String> {
        let mut links = BTreeMap::new();
        for &from in peers.keys() {
            for (&to, &target) in peers.iter().filter(|(to, _)| **to != from) {
                let listener = TcpListener::bind("127.0.0.1:0")
                    .map_err(|e| format!("proxy entrance for {from}->{to}: {e}"))?;
                let entrance = listener.local_addr().map_err(|e| e.to_string())?;
                let link = Arc::new(Link {
                    cut: AtomicBool::new(false),
                    open: Mutex::new(Vec::new()),
                });
                let accepting = link.clone();
                thread::Builder::new()
                    .name(format!("proxy-{from}-{to}"))
                    .spawn(move || accept(listener, target, accepting))
                    .map_err(|e| e.to_string())?;
                links.insert((from, to), (entrance, link));
            }
        }
        Ok(Proxy { links })
    }

    /// Where server `from` dials server `to`.
    pub fn entrance(&self, from: u64, to: u64) -> SocketAddr {
        self.links[&(from, to)].0
    }

    /// Cuts every link between a server of `side` and one outside it, both directions.
    pub fn isolate(&self, side: &[u64]) {
        for ((from, to), (_, link)) in &self.links {
            if side.contains(from) != side.contains(to) {
                link.cut.store(true, Ordering::SeqCst);
                link.sever();
            }
        }
    }

    /// Joins every link again.
    pub fn join_all(&self) {
        for (_, link) in self.links.values() {
            link.cut.store(false, Ordering::SeqCst);
        }
    }
}

fn accept(listener: TcpListener, target: SocketAddr, link: Arc<Link>) {
    for incoming in listener.incoming() {
        let Ok(inbound) = incoming else { continue };
        if link.cut.load(Ordering::SeqCst) {
            continue; // dropped: closed at once
        }
        let Ok(outbound) = TcpStream::connect(target) else {
            continue; // the server is down: the dialer sees a closed connection
        };
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let ends = (inbound.try_clone(), outbound.try_clone());
        let (Ok(in_copy), Ok(out_copy)) = ends else {
            continue;
        };
        {
            let mut open = link.open.lock().unwrap_or_else(|e| e.into_inner());
            // A cut between the check above and here: shut down at once.
            if link.cut.load(Ordering::SeqCst) {
                continue;
            }
            open.retain(|s| s.peer_addr().is_ok());
            open.push(in_copy);
            open.push(out_copy);
        }
        let (Ok(in_reader), Ok(out_reader)) = (inbound.try_clone(), outbound.try_clone()) else {
            continue;
        };
        let _ = thread::Builder::new().spawn(move || pump(in_reader, outbound));
        let _ = thread::Builder::new().spawn(move || pump(out_reader, inbound));
    }
}

/// Copies until either side closes, then closes both.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = vec![0u8; 64 * 1024];
    let _ = (|| -> io::Result<()> {
        loop {
            let n = from.read(&mut buffer)?;
            if n == 0 {
                return Ok(());
            }
            to.write_all(&buffer[..n])?;
        }
    })();
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

//! Faults the world injects: crashes (of one, a majority or all servers), restarts through
//! the shipped recovery, WAL corruption, clocks beyond the max offset.

use super::*;

/// Chance per step (per mille) that a consistent `tree` read of the world starts.
const READ_WORLD_PER_MILLE: u64 = 50;

impl World {
    /// Starts server `id` from its disks, as a process start replays its WALs; a corrupt
    /// WAL makes it refuse, and it stays down.
    pub(super) fn boot(&mut self, id: u64) {
        let truncate = self.options.inject == Some(Bug::TruncateCorruptMiddle);
        let peers: Vec<u64> = (1..=SERVERS).collect();
        let boots = self.server(id).boots + 1;
        let mut engines = Vec::new();
        for core in 0..self.cores {
            let config = self.engine_config(id, core, boots);
            let server = &mut self.servers[(id - 1) as usize];
            let mut recovery = match server.cores[core].wal.recover(truncate) {
                Ok(r) => r,
                Err(why) => {
                    server.refused = Some(format!("core {core}: {why}"));
                    self.refused_starts += 1;
                    return;
                }
            };
            if self.options.inject == Some(Bug::ForgetVote) {
                for log in recovery.shards.values_mut() {
                    if let Some(hs) = log.hard_state.as_mut() {
                        hs.vote = 0;
                    }
                }
            }
            let mut engine =
                Engine::new(config, |s| storage_of(&recovery, s, &peers), &self.logger);
            engine.record_steps(); // for the transaction checks (`txn_trace`)
            engine.record_applied(); // for the committed world (`committed`)
            for (shard, replica) in engine.replicas() {
                let view = replica.raft_view();
                self.observer.recovered(id, shard, view.term, view.vote);
            }
            engines.push(engine);
        }
        let server = self.server(id);
        server.boots = boots;
        server.up = true;
        for (core, engine) in engines.into_iter().enumerate() {
            server.cores[core].engine = Some(engine);
        }
        self.start_host(id);
        if let (Some(trace), Some(crashed)) = (
            self.trace.as_mut(),
            self.servers[(id - 1) as usize].crashed.take(),
        ) {
            let view = self.servers[(id - 1) as usize].cores[0]
                .engine
                .as_ref()
                .and_then(|e| e.replica(0))
                .expect("trace runs have shard 0")
                .raft_view();
            trace.restart(id, &crashed, &view);
        }
        // Each server mirrors each shard whole, and one subtree that nodes move into and out
        // of (`/root/n0`: renames and moves of the workload land on and leave it).
        for shard in 0..self.shards {
            for path in MIRRORED {
                let token = self.token(Route::Subscription);
                self.subs.insert(token, (id, shard));
                self.observer.subscribed(token);
                self.mirrors.subscribed(token, path);
                let input = Input::Subscribe(Subscription {
                    token,
                    shard,
                    path: path.into(),
                    from: None,
                    sub: token,
                    room: usize::MAX,
                });
                self.run(id, shard as usize % self.cores, input);
            }
        }
        self.subscribe_world(id, false);
    }

    /// Now and then, while clients write, a consistent `tree` read of the world on a live
    /// server: a reader, checked at the frontier that follows its snapshot.
    pub(super) fn read_world(&mut self, issue: bool) {
        if !issue || !self.reads_rng.chance(READ_WORLD_PER_MILLE) {
            return;
        }
        let up: Vec<u64> = (1..=SERVERS)
            .filter(|id| self.servers[(id - 1) as usize].up)
            .collect();
        if up.is_empty() {
            return;
        }
        let id = up[self.reads_rng.range(0, up.len() as u64 - 1) as usize];
        self.subscribe_world(id, true);
    }

    /// Server `id`'s world subscriber, or a `reader` (a consistent `tree` read of the
    /// world): one feed of `/root` per shard, merged (`cuts`).
    pub(super) fn subscribe_world(&mut self, id: u64, reader: bool) {
        let tokens: Vec<u64> = (0..self.shards)
            .map(|_| self.token(Route::Subscription))
            .collect();
        let world = self.token(Route::Subscription);
        let early = self.options.inject == Some(Bug::ReleaseBeforeFrontier);
        let map = treesync_core::shard::ShardMap::new(
            self.shards,
            treesync_core::shard::SHARD_DEPTH_DEFAULT,
        )
        .expect("the simulator's map is valid");
        self.cuts
            .subscribed(world, id, &map, &tokens, early, reader);
        for (shard, token) in tokens.into_iter().enumerate() {
            let input = Input::Subscribe(Subscription {
                token,
                shard: shard as u32,
                path: crate::cuts::WORLD_PATH.into(),
                from: None,
                sub: token,
                room: usize::MAX,
            });
            self.run(id, shard % self.cores, input);
        }
    }

    pub(super) fn crash(&mut self, id: u64) {
        let down_for = self.rng.range(5, 40);
        let now = self.now;
        let mut installed = 0;
        let server = &mut self.servers[(id - 1) as usize];
        server.crashed = server.cores[0]
            .engine
            .as_ref()
            .and_then(|e| e.replica(0))
            .map(|r| r.raft_view());
        for core in &mut server.cores {
            if let Some(engine) = core.engine.take() {
                installed += engine
                    .replicas()
                    .map(|(_, r)| r.snapshots_installed)
                    .sum::<u64>();
                self.side_adopted += engine
                    .replicas()
                    .map(|(_, r)| r.side_promise_counts().1)
                    .sum::<u64>();
            }
            core.wal.crash(&mut self.rng);
        }
        server.up = false;
        server.down_until = now + down_for;
        self.crash_host(id);
        // Its subscriptions end with it (a restart subscribes afresh).
        let ended: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, (server, _))| *server == id)
            .map(|(sub, _)| *sub)
            .collect();
        for sub in ended {
            self.subs.remove(&sub);
            self.mirrors.forget(sub);
        }
        self.cuts.server_crashed(id);
        self.crashes += 1;
        self.snapshots_installed += installed;
    }

    pub(super) fn faults(&mut self) {
        for id in 1..=SERVERS {
            let now = self.now;
            let s = self.server(id);
            if !s.up && s.refused.is_none() && now >= s.down_until {
                self.boot(id);
            }
        }
        if !self.faults_on {
            return;
        }
        let all_up = self.servers.iter().all(|s| s.up);
        if all_up && self.rng.chance(self.options.crash_per_mille) {
            self.crash_some();
        }
        if self.isolated.is_none_or(|(_, until)| self.now >= until) && self.rng.chance(3) {
            let (node, length) = (self.rng.range(1, SERVERS), self.rng.range(10, 80));
            self.isolated = Some((node, self.now + length));
        }
        if self.rng.chance(2) {
            // A clock jump, forwards or back, staying within the skew bound.
            let id = self.rng.range(1, SERVERS);
            let skew = self.rng.range(0, SKEW_MS_MAX);
            if self.bad_clock.is_none_or(|(bad, _, _)| bad != id) {
                self.server(id).skew_ms.set(skew);
            }
        }
        self.bad_clocks();
    }

    /// Now and then one server's clock runs `BAD_CLOCK_MS` ahead for a while: its peers
    /// drop its messages, and it must stop serving clients until the clock is fixed.
    pub(super) fn bad_clocks(&mut self) {
        match self.bad_clock {
            Some((id, until, normal)) if self.now >= until => {
                self.server(id).skew_ms.set(normal);
                self.bad_clock = None;
            }
            None if !self.options.trace && self.rng.chance(1) => {
                let (id, length) = (self.rng.range(1, SERVERS), self.rng.range(30, 120));
                let normal = self.server(id).skew_ms.get();
                self.server(id).skew_ms.set(normal + BAD_CLOCK_MS);
                self.bad_clock = Some((id, self.now + length, normal));
            }
            _ => {}
        }
    }

    /// Crashes one server (mostly), a majority, or all of them.
    pub(super) fn crash_some(&mut self) {
        let first = self.rng.range(1, SERVERS);
        if self.options.trace {
            // The spec's persisted state is the replica's only when nothing is unsynced.
            let idle = self.server(first).cores.iter().all(|c| c.wal.is_synced());
            if idle {
                self.crash(first);
            }
            return;
        }
        let count = match self.rng.range(0, 9) {
            0 => SERVERS,
            1 | 2 => SERVERS / 2 + 1,
            _ => 1,
        };
        let victims: Vec<u64> = (0..count).map(|i| (first - 1 + i) % SERVERS + 1).collect();
        for id in &victims {
            self.crash(*id);
        }
        if !self.corrupted_once && self.rng.chance(self.options.corrupt_per_mille) {
            let core = self.rng.range(0, self.cores as u64 - 1) as usize;
            let server = &mut self.servers[(first - 1) as usize];
            self.corrupted_once = server.cores[core].wal.corrupt_before_tail(&mut self.rng);
        }
    }
}

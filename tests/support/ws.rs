//! What the WebSocket tests of `treesync local` share: running a client on actix, and
//! building requests and locating entities as `treesync local`'s default layout does.

use std::future::Future;

use treesync_core::shard::ShardMap;
use treesync_core::{Limits, NodePath, Value};
use treesync_net::ws_client::WsClient;

pub fn run<F: Future<Output = ()>>(test: F) {
    actix_rt::System::new().block_on(test);
}

pub async fn connect(url: &str) -> WsClient {
    WsClient::connect(url).await.expect("connect")
}

pub fn s(text: &str) -> Value {
    Value::String(text.into())
}

pub fn dict(pairs: &[(&str, Value)]) -> Value {
    Value::Dictionary(pairs.iter().map(|(k, v)| (s(k), v.clone())).collect())
}

/// The shard of `path` in `treesync local`'s default layout (8 shards, roots at depth 3).
pub fn shard_of(path: &str) -> u32 {
    let map = ShardMap::new(8, 3).expect("the default layout of treesync local");
    map.shard_of(&NodePath::parse(path, &Limits::default()).expect("valid"))
        .0
}

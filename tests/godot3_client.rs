//! The real engine as a client: Debian's `godot3-server` runs, headless, a GDScript that uses
//! Godot 3's own `WebSocketClient` and `var2bytes`/`bytes2var` against `treesync local`
//! (`?godot=3`): it creates nodes, sets a Vector2 property, subscribes, and prints what it
//! receives. The test checks that output, and the tree through the Rust client.
//! Set TREESYNC_GODOT3 to use another engine binary.

mod support;

use std::process::Command;

use support::local::LocalCluster;
use treesync_core::Value;
use treesync_net::ws_client::WsClient;

const SCRIPT: &str = r#"extends SceneTree

# A treesync client in plain Godot 3: one Variant per WebSocket message.
var ws = WebSocketClient.new()
var chunks = PoolByteArray()
var started = 0
var set_acked = false
var set_seen = false

func _init():
    started = OS.get_ticks_msec()
    ws.connect("connection_established", self, "_connected")
    ws.connect("data_received", self, "_received")
    ws.connect("connection_error", self, "_failed")
    ws.connect("connection_closed", self, "_closed")
    if ws.connect_to_url("URL") != OK:
        print("CONNECT_FAILED")
        quit(1)

func _idle(_delta):
    ws.poll()
    if OS.get_ticks_msec() - started > 30000:
        print("TIMEOUT")
        quit(1)
    return false

func send(request):
    ws.get_peer(1).put_packet(var2bytes(request))

func _connected(_protocol):
    ws.get_peer(1).set_write_mode(WebSocketPeer.WRITE_MODE_BINARY)
    print("CONNECTED")
    send({"id": 1, "op": "create", "parent": "/root", "name": "Arena", "class": "Node2D"})

func _failed():
    print("CONNECTION_ERROR")
    quit(1)

func _closed(_clean):
    print("CLOSED")
    quit(1)

func _received():
    var message = bytes2var(ws.get_peer(1).get_packet())
    # Large messages arrive as chunks whose bytes concatenate to one Variant.
    if message.has("chunk"):
        chunks.append_array(message["chunk"])
        if message["part"] + 1 < message["parts"]:
            return
        message = bytes2var(chunks)
        chunks = PoolByteArray()
    if message.has("event"):  # pushes have an event; replies have the request's id
        pushed(message)
    else:
        replied(message)

func replied(reply):
    if not reply["ok"]:
        print("ERROR ", reply["error"])
        if reply["id"] == 6:
            print("DONE")
            quit(0)
        return
    match int(reply["id"]):
        1:
            print("CREATED Arena hlc>0 ", reply["hlc"] > 0)
            send({"id": 2, "op": "subscribe", "path": "/root/Arena"})
        2:
            print("SUBSCRIBED")
        3:
            send({"id": 4, "op": "set", "path": "/root/Arena/Player", "props": {"position": Vector2(10, 20)}})
        4:
            set_acked = true
            read_back()
        5:
            print("GET ", reply["value"])
            send({"id": 6, "op": "fly_to_the_moon"})

func pushed(push):
    match push["event"]:
        "snapshot":
            print("SNAPSHOT ", push["tree"]["name"], " ", push["tree"]["class"])
            send({"id": 3, "op": "create", "parent": "/root/Arena", "name": "Player", "class": "Sprite", "props": {"position": Vector2(1, 2)}})
        "change":
            for op in push["ops"]:
                if op["op"] == "create":
                    print("CHANGE create ", op["name"], " ", op["props"]["position"])
                elif op["op"] == "set":
                    print("CHANGE set position ", op["props"]["position"])
                    set_seen = true
                    read_back()

func read_back():
    if set_acked and set_seen:
        send({"id": 5, "op": "get", "path": "/root/Arena/Player", "prop": "position"})
"#;

fn godot_binary() -> String {
    std::env::var("TREESYNC_GODOT3").unwrap_or_else(|_| "godot3-server".into())
}

#[test]
fn a_godot3_gdscript_client_writes_subscribes_and_reads() {
    // One shard: the script mirrors a world, and until subscriptions span shards (issue 12,
    // consistent cuts) a subscription above the shard roots shows only the spine.
    let cluster = LocalCluster::start("godot3-client", &["--shards", "1"]);
    let url = format!("{}?godot=3", cluster.urls[1]);
    let dir = std::env::temp_dir().join(format!("treesync-gd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script = dir.join("client.gd");
    std::fs::write(&script, SCRIPT.replace("URL", &url)).expect("write script");
    let output = Command::new("timeout")
        .args(["60", &godot_binary(), "--no-window", "-s"])
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", godot_binary()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    for expected in [
        "CONNECTED",
        "CREATED Arena hlc>0 True",
        "SUBSCRIBED",
        "SNAPSHOT Arena Node2D",
        "CHANGE create Player (1, 2)",
        "CHANGE set position (10, 20)",
        "GET (10, 20)",
        "ERROR unknown_op",
        "DONE",
    ] {
        assert!(
            lines.contains(&expected),
            "the engine did not print {expected:?}; it printed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // The engine's writes are in the tree, as the Rust client reads it.
    actix_rt::System::new().block_on(async {
        let mut client = WsClient::connect(&cluster.urls[0]).await.expect("connect");
        let position = client
            .get_prop("/root/Arena/Player", "position")
            .await
            .expect("get");
        assert_eq!(position, Value::Vector2([10.0, 20.0]));
    });
    let _ = std::fs::remove_dir_all(&dir);
}

//! The CLI for humans: `tree`, `get`, `set`, `create`, `delete`, `watch` against a gateway
//! (`--addr`, default the local cluster). Values are in Godot's text syntax
//! (`Vector2(10, 20)`, `"text"`, `42`); every error is one line.

use std::process::ExitCode;

use treesync_core::{text, Value};
use treesync_net::ws_client::{field, WsClient, WsClientError};

/// Where `treesync local` serves clients.
pub const ADDR_DEFAULT: &str = "ws://127.0.0.1:7070/ws";

pub const COMMANDS: [&str; 7] = ["tree", "get", "set", "create", "delete", "watch", "status"];

/// Runs one client command; `Err` is the one-line message to print.
pub fn run(command: &str, args: &[String]) -> Result<ExitCode, String> {
    let mut addr = ADDR_DEFAULT.to_owned();
    let mut from = None;
    let mut positional = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs a value")?.clone(),
            "--from" if command == "watch" => {
                from = Some(crate::args::value::<i64>("--from", args.next())?);
            }
            _ => positional.push(arg.clone()),
        }
    }
    let system = actix_rt::System::new();
    system.block_on(async move {
        let mut client = WsClient::connect(&addr).await.map_err(|e| e.to_string())?;
        execute(&mut client, command, &positional, from)
            .await
            .map_err(|e| match e {
                CliError::Usage(text) => text,
                CliError::Client(e) => e.to_string(),
            })
    })
}

/// `status`: one line per shard, then how many shards each server leads.
fn print_status(reply: &Value) -> Result<(), CliError> {
    let status = field(reply, "status").ok_or_else(|| usage("a status reply without status"))?;
    let int = |v: &Value, k: &str| match field(v, k) {
        Some(Value::Int(n)) => *n,
        _ => -1,
    };
    if let Some(Value::Array(shards)) = field(status, "shards") {
        for shard in shards {
            let role = match field(shard, "role") {
                Some(Value::String(r)) => r.clone(),
                _ => "?".into(),
            };
            println!(
                "shard {}: leader {} (term {}, applied {}; this server: {role})",
                int(shard, "shard"),
                int(shard, "leader"),
                int(shard, "term"),
                int(shard, "applied"),
            );
        }
    }
    if let Some(Value::Dictionary(leaders)) = field(status, "leaders") {
        let counts: Vec<String> = leaders
            .iter()
            .map(|(server, n)| format!("server {}: {}", text::format(server), text::format(n)))
            .collect();
        println!("shards led: {}", counts.join(", "));
    }
    Ok(())
}

enum CliError {
    Usage(String),
    Client(WsClientError),
}

impl From<WsClientError> for CliError {
    fn from(e: WsClientError) -> CliError {
        CliError::Client(e)
    }
}

fn usage(text: &str) -> CliError {
    CliError::Usage(text.to_owned())
}

/// `PROP VALUE` pairs, values in Godot text syntax.
fn props(pairs: &[String]) -> Result<Vec<(String, Value)>, CliError> {
    if !pairs.len().is_multiple_of(2) {
        return Err(usage("properties come in pairs: PROP VALUE"));
    }
    pairs
        .chunks(2)
        .map(|pair| {
            let value = text::parse(&pair[1])
                .map_err(|e| CliError::Usage(format!("value of {:?}: {e}", pair[0])))?;
            Ok((pair[0].clone(), value))
        })
        .collect()
}

async fn execute(
    client: &mut WsClient,
    command: &str,
    args: &[String],
    from: Option<i64>,
) -> Result<ExitCode, CliError> {
    match (command, args) {
        ("tree", [path]) => print_tree(&client.tree(path).await?, 0),
        ("status", []) => print_status(&client.request("status", vec![]).await?)?,
        ("get", [path]) => print_node(&client.get(path).await?),
        ("get", [path, prop]) => println!("{}", text::format(&client.get_prop(path, prop).await?)),
        ("set", [path, rest @ ..]) if !rest.is_empty() => {
            let hlc = client.set(path, props(rest)?).await?;
            println!("ok (hlc {hlc})");
        }
        ("create", [parent, name, class, rest @ ..]) => {
            let hlc = client.create(parent, name, class, props(rest)?).await?;
            println!("ok (hlc {hlc})");
        }
        ("delete", [path]) => {
            let hlc = client.delete(path).await?;
            println!("ok (hlc {hlc})");
        }
        ("watch", [path]) => return watch(client, path, from).await,
        _ => {
            return Err(usage(match command {
                "tree" => "usage: treesync tree PATH [--addr URL]",
                "get" => "usage: treesync get PATH [PROP] [--addr URL]",
                "set" => "usage: treesync set PATH PROP VALUE [PROP VALUE ...] [--addr URL]",
                "create" => {
                    "usage: treesync create PARENT NAME CLASS [PROP VALUE ...] [--addr URL]"
                }
                "delete" => "usage: treesync delete PATH [--addr URL]",
                "status" => "usage: treesync status [--addr URL]",
                _ => "usage: treesync watch PATH [--from POSITION] [--addr URL]",
            }))
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn text_of(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(v) => text::format(v),
        None => "?".into(),
    }
}

fn print_props(node: &Value, indent: usize) {
    if let Some(Value::Dictionary(props)) = field(node, "props") {
        for (k, v) in props {
            println!(
                "{:indent$}  .{} = {}",
                "",
                text_of(Some(k)),
                text::format(v)
            );
        }
    }
}

fn print_tree(node: &Value, indent: usize) {
    println!(
        "{:indent$}{} ({})",
        "",
        text_of(field(node, "name")),
        text_of(field(node, "class"))
    );
    print_props(node, indent);
    if let Some(Value::Array(children)) = field(node, "children") {
        for child in children {
            print_tree(child, indent + 2);
        }
    }
}

fn print_node(node: &Value) {
    println!(
        "{} ({})",
        text_of(field(node, "name")),
        text_of(field(node, "class"))
    );
    print_props(node, 0);
    if let Some(Value::Array(children)) = field(node, "children") {
        let names: Vec<String> = children.iter().map(|c| text_of(Some(c))).collect();
        let names = if names.is_empty() {
            "(none)".to_owned()
        } else {
            names.join(", ")
        };
        println!("  children: {names}");
    }
}

/// Prints the snapshot, then every change as it commits, until interrupted.
async fn watch(client: &mut WsClient, path: &str, from: Option<i64>) -> Result<ExitCode, CliError> {
    client.subscribe(path, from).await?;
    loop {
        let push = client.next_push().await?;
        match field(&push, "event") {
            Some(Value::String(e)) if e == "snapshot" => {
                println!("snapshot at hlc {}:", text_of(field(&push, "hlc")));
                if let Some(tree) = field(&push, "tree") {
                    print_tree(tree, 2);
                }
            }
            Some(Value::String(e)) if e == "change" => {
                println!(
                    "change shard {} index {} hlc {}: {}",
                    text_of(field(&push, "shard")),
                    text_of(field(&push, "index")),
                    text_of(field(&push, "hlc")),
                    text_of(field(&push, "ops"))
                );
            }
            Some(Value::String(e)) if e == "resync" => {
                println!("resync: {}", text_of(field(&push, "reason")));
            }
            _ => {} // resolved timestamps: nothing to show a human
        }
    }
}

# world_mirror.gd: a read-only, live mirror of a treesync world in a Godot 4 scene.
#
# Guarantee: the mirror only ever shows the tree at a cut (the `hlc` of a `resolved`
# push), never half of a cross-shard transaction. A merged subscription (of a world or
# /root) pushes each transaction as one `change`; they are buffered and the whole buffer
# is applied in one go, in one frame, at each `resolved` (docs/protocol.md, "Subscriptions
# above the shard roots (merged)").
#
# mirror_root stands for remote_path's parent: "/root/World/Ann" is mirror_root/World/Ann.
extends Node

## An `emit` op of an applied change (signals are in the log, not in the tree).
signal remote_signal(path: String, signal_name: String, args: Array)

const SUBSCRIBE_ID := 1
const RECONNECT_DELAY_MS := 1000
# The server never sends a message over 60 KiB (larger ones come as chunks), so Godot's
# 64 KiB default holds one; 1 MiB lets a burst (a big snapshot's chunks) wait between two
# frames. Outbound: 1 MiB is the server's default request size limit (--max-message-bytes),
# the largest request it accepts; this node itself only sends a small subscribe.
const BUFFER_BYTES := 1 << 20

@export var url := "ws://127.0.0.1:7071/ws"
@export var remote_path := "/root/World"
@export var mirror_root: Node  # default: this node

## The hlc of the last `resolved` applied (-1: none yet): where a resubscribe resumes.
var position := -1

var _ws: WebSocketPeer
var _subscribe_sent := false
var _sub := -1  # the current subscription's id: pushes of an older one are ignored
var _pending: Array[Dictionary] = []  # `change` pushes waiting for the next `resolved`
var _chunks := {}  # the message's tag -> the bytes of a chunked message so far
var _retry_at_ms := 0


func _ready() -> void:
	if mirror_root == null:
		mirror_root = self
	_connect_gateway()


func _connect_gateway() -> void:
	_ws = WebSocketPeer.new()
	_ws.inbound_buffer_size = BUFFER_BYTES
	_ws.outbound_buffer_size = BUFFER_BYTES
	_subscribe_sent = false
	if _ws.connect_to_url(url) != OK:
		push_warning("treesync: cannot connect to %s" % url)
		_drop_connection()


func _process(_delta: float) -> void:
	if _ws == null:
		if Time.get_ticks_msec() >= _retry_at_ms:
			_connect_gateway()
		return
	_ws.poll()
	var state := _ws.get_ready_state()
	if state == WebSocketPeer.STATE_OPEN and not _subscribe_sent:
		var request := {"id": SUBSCRIBE_ID, "op": "subscribe", "path": remote_path}
		if position >= 0:  # resuming: no snapshot, the changes above `position`
			request["from"] = position
		_ws.send(var_to_bytes(request))
		_subscribe_sent = true
	while _ws.get_available_packet_count() > 0:
		_receive(_ws.get_packet())
	if state == WebSocketPeer.STATE_CLOSED:
		push_warning("treesync: closed (%d %s)" % [_ws.get_close_code(), _ws.get_close_reason()])
		_drop_connection()


# The mirror keeps showing the last cut meanwhile. Buffered changes are above `position`,
# so the resumed stream sends them again: drop them, or they would apply twice.
func _drop_connection() -> void:
	_ws = null
	_sub = -1
	_pending.clear()
	_chunks.clear()
	_retry_at_ms = Time.get_ticks_msec() + RECONNECT_DELAY_MS


func _receive(bytes: PackedByteArray) -> void:
	var message = bytes_to_var(bytes)
	if not (message is Dictionary):
		return
	if message.has("chunk"):
		# Parts 0..parts-1 concatenate to one message's encoding, tagged "id" (reply) or "sub"
		# (push). protocol.md does not say if chunked messages may interleave: one buffer a tag.
		var tag := "%s/%s" % [message.get("id"), message.get("sub")]
		var so_far: PackedByteArray = _chunks.get(tag, PackedByteArray())
		so_far.append_array(message["chunk"])
		if message["part"] + 1 < message["parts"]:
			_chunks[tag] = so_far
			return
		_chunks.erase(tag)
		message = bytes_to_var(so_far)
	if message.has("event"):
		_on_push(message)
	elif message.get("id") == SUBSCRIBE_ID:
		if not message.get("ok", false):  # e.g. `unavailable` in an election: reconnect, retry
			push_warning("treesync: subscribe: %s" % message.get("message"))
			_ws.close()
			return
		if not message.get("merged", false):  # one shard's feed: "from" would be a log index
			push_warning("treesync: %s is not a merged subscription" % remote_path)
		_sub = message["sub"]


func _on_push(push: Dictionary) -> void:
	if push.get("sub") != _sub:
		return
	match push["event"]:
		"snapshot":  # a cut, resync or not; buffered changes are in it or come again
			_pending.clear()
			_replace_mirror(push["tree"])
		"change":
			if push["hlc"] > position:  # none at or below a resolved hlc may come
				_pending.append(push)
		"resolved":
			for change in _pending:
				for op in change["ops"]:
					_apply(op)
			_pending.clear()
			position = push["hlc"]
		"overflow":  # the server resumes from our last `resolved`: the buffer comes again
			_pending.clear()


func _replace_mirror(tree) -> void:
	for child in mirror_root.get_children():
		_detach(child)
	if tree != null:  # null: no node at remote_path yet
		mirror_root.add_child(_build(tree))


# protocol.md shows a snapshot's tree as `{...}`; read here as the `tree` reply's shape
# {name, class, props, children: [subtrees]}.
func _build(data: Dictionary) -> Node:
	var node: Node = null
	if ClassDB.can_instantiate(data["class"]) and ClassDB.is_parent_class(data["class"], "Node"):
		node = ClassDB.instantiate(data["class"])
	else:  # e.g. a script's class_name, unknown to ClassDB
		node = Node.new()
		node.set_meta("treesync_class", data["class"])
	node.name = data["name"]
	_set_props(node, data["props"])
	for child in data.get("children", []):
		node.add_child(_build(child))
	return node


# Engine and script properties go through set(); set() ignores other names (e.g. "hp" on
# a Node2D), so those are kept as metadata. A null value removes the property.
func _set_props(node: Node, props: Dictionary) -> void:
	for key in props:
		var value = props[key]
		if key in node:
			if typeof(value) == TYPE_NIL:  # back to the engine default (Godot 4.3+)
				value = ClassDB.class_get_property_default_value(node.get_class(), key)
			node.set(key, value)
		elif typeof(value) == TYPE_NIL:
			node.remove_meta(key)
		else:
			node.set_meta(key, value)


# protocol.md does not say how a move into or out of the subtree is pushed; the gateway
# (core/src/engine/mirror.rs) sends a `delete`, or `create`s of the arrived subtree, so a
# move or rename here stays inside the mirror. Ops above it (a `set` on /root) are skipped.
func _apply(op: Dictionary) -> void:
	match op["op"]:
		"create":
			var parent := _parent_for(op["parent"] + "/" + op["name"])
			if parent != null:
				parent.add_child(
					_build({"name": op["name"], "class": op["class"], "props": op.get("props", {})})
				)
		"set":
			var node := _local(op["path"])
			if node != null:
				_set_props(node, op["props"])
		"delete":
			if _within(remote_path, op["path"]):  # the subscribed node or an ancestor
				_replace_mirror(null)
			else:
				_detach(_local(op["path"]))
		"rename":
			var node := _local(op["path"])
			if node != null:
				node.name = op["name"]
		"move":
			var node := _local(op["path"])
			var parent := _parent_for(op["parent"] + "/" + op["path"].get_file())
			if node != null and parent != null:
				node.get_parent().remove_child(node)  # not reparent(): it keeps global transforms
				parent.add_child(node)
				# Else last. mirror_root holds only the subscribed node, not its siblings.
				if op.has("index") and parent != mirror_root:
					parent.move_child(node, op["index"])
		"emit":
			remote_signal.emit(op["path"], op["signal"], op["args"])


# remove_child first: a queued node keeps its name until freed, and Godot would rename a
# node of the same name created in this batch.
func _detach(node: Node) -> void:
	if node != null:
		node.get_parent().remove_child(node)
		node.queue_free()


func _within(path: String, ancestor: String) -> bool:
	return path == ancestor or path.begins_with(ancestor + "/")


## The local node for a remote path in the subtree, or null.
func _local(path: String) -> Node:
	if not _within(path, remote_path):
		return null
	var base := remote_path.get_base_dir()  # "/root" for "/root/World", "/" for "/root"
	var prefix := base if base.ends_with("/") else base + "/"
	return mirror_root.get_node_or_null(NodePath(path.substr(prefix.length())))


## The local node to hold the node at remote `path`, or null outside the subtree.
func _parent_for(path: String) -> Node:
	if path == remote_path:
		return mirror_root
	return _local(path.get_base_dir()) if _within(path, remote_path) else null

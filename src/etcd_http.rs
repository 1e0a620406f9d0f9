//! A minimal etcd v3 client over its JSON gateway (HTTP/1.1 keep-alive on a plain
//! `TcpStream`), so `treesync bench --system etcd` drives etcd with the same load generator,
//! clock and histograms as treesync: the comparison differs only in the system measured.
//! Puts, linearizable ranges (etcd's default) and transactions of puts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

/// Largest reply body accepted (etcd's replies to these calls are a few hundred bytes).
const BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// A member that answers nothing for this long fails the request instead of hanging it.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One keep-alive connection to one etcd member.
pub struct EtcdHttp {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl EtcdHttp {
    pub fn connect(addr: SocketAddr) -> Result<EtcdHttp, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("etcd {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .and_then(|()| stream.set_read_timeout(Some(READ_TIMEOUT)))
            .map_err(|e| format!("etcd {addr}: {e}"))?;
        let writer = stream
            .try_clone()
            .map_err(|e| format!("etcd {addr}: {e}"))?;
        Ok(EtcdHttp {
            addr,
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// `put key value`; returns the store's revision after the put (the key's
    /// `mod_revision`, which a watcher sees on the event).
    pub fn put(&mut self, key: &str, value: &[u8]) -> Result<u64, String> {
        let body = format!(
            "{{\"key\":\"{}\",\"value\":\"{}\"}}",
            base64(key.as_bytes()),
            base64(value)
        );
        let reply = self.call("/v3/kv/put", &body)?;
        let reply: serde_json::Value = serde_json::from_slice(&reply)
            .map_err(|e| format!("etcd {}: a put reply that is not JSON: {e}", self.addr))?;
        revision(&reply["header"]["revision"]).ok_or_else(|| {
            format!(
                "etcd {}: a put reply without a revision: {reply}",
                self.addr
            )
        })
    }

    /// Turns this connection into a watch of every key starting with `prefix` (etcd's
    /// streaming `/v3/watch`); `EtcdWatch::next_revisions` reads its events.
    pub fn watch(mut self, prefix: &str) -> Result<EtcdWatch, String> {
        let mut end = prefix.as_bytes().to_vec();
        match end.last_mut() {
            Some(last) if *last < 0xff => *last += 1,
            _ => return Err(format!("etcd: cannot watch the prefix {prefix:?}")),
        }
        let body = format!(
            "{{\"create_request\":{{\"key\":\"{}\",\"range_end\":\"{}\"}}}}",
            base64(prefix.as_bytes()),
            base64(&end)
        );
        self.send("/v3/watch", &body)?;
        let (status, _, chunked) = self.head()?;
        if status != 200 || !chunked {
            return Err(format!(
                "etcd {}: watch answered HTTP {status} (chunked: {chunked})",
                self.addr
            ));
        }
        Ok(EtcdWatch {
            http: self,
            pending: Vec::new(),
        })
    }

    /// A linearizable `get key` (etcd's ranges are linearizable unless asked otherwise).
    pub fn get(&mut self, key: &str) -> Result<(), String> {
        let body = format!("{{\"key\":\"{}\"}}", base64(key.as_bytes()));
        self.call("/v3/kv/range", &body).map(drop)
    }

    /// One transaction putting every pair (atomic, one Raft entry).
    pub fn put_all(&mut self, pairs: &[(String, Vec<u8>)]) -> Result<(), String> {
        let puts: Vec<String> = pairs
            .iter()
            .map(|(key, value)| {
                format!(
                    "{{\"requestPut\":{{\"key\":\"{}\",\"value\":\"{}\"}}}}",
                    base64(key.as_bytes()),
                    base64(value)
                )
            })
            .collect();
        let body = format!("{{\"success\":[{}]}}", puts.join(","));
        self.call("/v3/kv/txn", &body).map(drop)
    }

    fn send(&mut self, path: &str, body: &str) -> Result<(), String> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let fail = |e: std::io::Error| format!("etcd {}: {e}", self.addr);
        self.writer.write_all(request.as_bytes()).map_err(fail)
    }

    fn call(&mut self, path: &str, body: &str) -> Result<Vec<u8>, String> {
        self.send(path, body)?;
        let (status, length, chunked) = self.head()?;
        let body = match (length, chunked) {
            (Some(n), _) if n > BODY_BYTES_MAX => {
                return Err(format!("etcd {}: a {n}-byte reply", self.addr))
            }
            (Some(n), _) => {
                let mut body = vec![0; n];
                self.reader
                    .read_exact(&mut body)
                    .map_err(|e| format!("etcd {}: {e}", self.addr))?;
                body
            }
            (None, true) => self.chunks()?,
            (None, false) => return Err(format!("etcd {}: a reply without a length", self.addr)),
        };
        if status != 200 {
            let text = String::from_utf8_lossy(&body);
            return Err(format!("etcd {}: HTTP {status}: {text}", self.addr));
        }
        Ok(body)
    }

    /// The status line and headers: (status, Content-Length, chunked).
    fn head(&mut self) -> Result<(u16, Option<usize>, bool), String> {
        let mut line = String::new();
        let mut read_line = |line: &mut String| -> Result<(), String> {
            line.clear();
            match self.reader.read_line(line) {
                Ok(0) => Err(format!("etcd {}: connection closed", self.addr)),
                Ok(_) => Ok(()),
                Err(e) => Err(format!("etcd {}: {e}", self.addr)),
            }
        };
        read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("etcd: bad status line {line:?}"))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                return Ok((status, length, chunked));
            }
            let Some((name, value)) = header.split_once(':') else {
                return Err(format!("etcd: bad header {header:?}"));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse()
                        .map_err(|_| format!("etcd: bad length {value:?}"))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
    }

    fn chunks(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        while self.chunk_into(&mut body)? {}
        Ok(body)
    }

    /// Appends the next chunk of a chunked body to `body`; false at the last (empty) chunk.
    fn chunk_into(&mut self, body: &mut Vec<u8>) -> Result<bool, String> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| format!("etcd {}: {e}", self.addr))?;
        // A chunk extension (`1a;name=value`) may follow the size.
        let digits = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(digits, 16)
            .ok()
            .filter(|size| body.len() + size <= BODY_BYTES_MAX)
            .ok_or_else(|| format!("etcd: bad or oversized chunk size {line:?}"))?;
        let mut chunk = vec![0; size + 2]; // the data and its CRLF (size is capped above)
        self.reader
            .read_exact(&mut chunk)
            .map_err(|e| format!("etcd {}: {e}", self.addr))?;
        body.extend_from_slice(&chunk[..size]);
        Ok(size > 0)
    }
}

/// A revision as etcd's JSON gateway writes it (a 64-bit integer as a decimal string).
fn revision(field: &serde_json::Value) -> Option<u64> {
    field.as_str()?.parse().ok()
}

/// A running watch (`EtcdHttp::watch`): the gateway streams one JSON message per line.
pub struct EtcdWatch {
    http: EtcdHttp,
    /// Bytes of a message not yet ended by its newline.
    pending: Vec<u8>,
}

impl EtcdWatch {
    /// Blocks for the next message and returns the `mod_revision` of each event in it
    /// (none for the watch's "created" message or a progress notification).
    pub fn next_revisions(&mut self) -> Result<Vec<u64>, String> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let message: serde_json::Value = serde_json::from_slice(&line).map_err(|e| {
                    format!(
                        "etcd {}: a watch message that is not JSON: {e}",
                        self.http.addr
                    )
                })?;
                let result = &message["result"];
                if result.is_null() {
                    return Err(format!(
                        "etcd {}: the watch failed: {message}",
                        self.http.addr
                    ));
                }
                let events = result["events"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                return events
                    .iter()
                    .map(|e| {
                        revision(&e["kv"]["mod_revision"])
                            .ok_or_else(|| format!("etcd: an event without a revision: {e}"))
                    })
                    .collect();
            }
            if !self.http.chunk_into(&mut self.pending)? {
                return Err(format!("etcd {}: the watch stream ended", self.http.addr));
            }
        }
    }
}

/// Standard base64 with padding (what etcd's JSON gateway takes for bytes).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let word = chunk
            .iter()
            .enumerate()
            .fold(0u32, |w, (i, b)| w | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(word >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{base64, EtcdHttp};
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-connection server that answers each request with the next canned reply.
    fn serve(replies: Vec<&'static str>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            for reply in replies {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request); // one small request per read on loopback
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        addr
    }

    #[test]
    fn replies_with_a_length_chunked_or_an_error_status_are_read_and_bad_ones_refused() {
        let addr = serve(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 27\r\n\r\n{\"header\":{\"revision\":\"7\"}}",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;x=y\r\n{\r\n1\r\n}\r\n0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\noops!",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
        ]);
        let mut etcd = EtcdHttp::connect(addr).expect("connect");
        assert_eq!(etcd.put("k", b"v"), Ok(7), "a reply with a length");
        let bare = etcd
            .put("k", b"v")
            .expect_err("a put reply without a revision");
        assert!(bare.contains("without a revision"), "{bare}");
        etcd.get("k")
            .expect("a chunked reply, one chunk with an extension");
        let refused = etcd.get("k").expect_err("HTTP 400");
        assert!(
            refused.contains("400") && refused.contains("oops!"),
            "{refused}"
        );
        let oversized = etcd.get("k").expect_err("an absurd chunk size");
        assert!(oversized.contains("chunk size"), "{oversized}");
    }

    #[test]
    fn a_watch_yields_the_revisions_of_each_message_split_across_chunks() {
        let created = "{\"result\":{\"header\":{\"revision\":\"3\"},\"created\":true}}\n";
        let two = "{\"result\":{\"events\":[{\"kv\":{\"mod_revision\":\"4\"}},{\"kv\":{\"mod_revision\":\"5\"}}]}}\n";
        let (a, b) = two.split_at(20);
        let failed = "{\"error\":{\"message\":\"compacted\"}}\n";
        let stream = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{created}\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}{failed}\r\n0\r\n\r\n",
            created.len(),
            a.len(),
            b.len() + failed.len()
        );
        let addr = serve(vec![Box::leak(stream.into_boxed_str())]);
        let mut watch = EtcdHttp::connect(addr)
            .expect("connect")
            .watch("w/")
            .expect("a chunked 200");
        assert_eq!(watch.next_revisions(), Ok(vec![]), "the created message");
        assert_eq!(
            watch.next_revisions(),
            Ok(vec![4, 5]),
            "one message in two chunks"
        );
        let error = watch.next_revisions().expect_err("an error message");
        assert!(error.contains("compacted"), "{error}");
        let ended = watch.next_revisions().expect_err("the last chunk");
        assert!(ended.contains("ended"), "{ended}");
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }
}

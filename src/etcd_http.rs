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

    /// `put key value`.
    pub fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let body = format!(
            "{{\"key\":\"{}\",\"value\":\"{}\"}}",
            base64(key.as_bytes()),
            base64(value)
        );
        self.call("/v3/kv/put", &body).map(drop)
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

    fn call(&mut self, path: &str, body: &str) -> Result<Vec<u8>, String> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let fail = |e: std::io::Error| format!("etcd {}: {e}", self.addr);
        self.writer.write_all(request.as_bytes()).map_err(fail)?;
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
        let mut line = String::new();
        loop {
            line.clear();
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
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&chunk[..size]);
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
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;x=y\r\n{\r\n1\r\n}\r\n0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\noops!",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
        ]);
        let mut etcd = EtcdHttp::connect(addr).expect("connect");
        etcd.put("k", b"v").expect("a reply with a length");
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

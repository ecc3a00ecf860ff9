//! The HTTP probe's client: one `GET` over a fresh connection, the status and at most the first bytes
//! of the body (Content-Length, chunked or until close), headers parsed with `httparse`.
//!
//! Written here rather than through reqwest and hyper: a probe needs none of a general client's
//! pooling, redirects, URL handling or connection tasks, and for a thousand containers that machinery
//! cost as much CPU as the kernel's own work for the connections (`lookout bench probes`).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Response headers larger than this are a failure, not a reason to keep reading.
const HEAD_CAP: usize = 16 * 1024;
/// A chunk-size line (size, extensions) longer than this is a failure.
const CHUNK_LINE_CAP: usize = 1024;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// At most the first `cap` bytes of the body.
    pub body: Vec<u8>,
}

/// Why a run failed; `status` is known when the headers arrived and the body did not.
#[derive(Debug)]
pub struct Failure {
    pub status: Option<u16>,
    pub why: String,
}

fn fail<T>(status: Option<u16>, why: impl Into<String>) -> Result<T, Failure> {
    Err(Failure { status, why: why.into() })
}

/// `GET path` from `addr` with `Connection: close`, reading at most `cap` bytes of the body; the rest
/// is left unread and the connection closed. Unbounded in time: the caller holds the timeout.
pub async fn get(addr: SocketAddr, path: &str, cap: usize) -> Result<Response, Failure> {
    let stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return fail(None, format!("connect: {e}")),
    };
    let mut c = Conn { stream, buf: Vec::with_capacity(4096), start: 0 };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: lookout-probe/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Err(e) = c.stream.write_all(request.as_bytes()).await {
        return fail(None, format!("sending the request: {e}"));
    }
    let (status, framing) = head(&mut c).await?;
    let body = match framing {
        Framing::Empty => Ok(Vec::new()),
        Framing::Length(n) => length_body(&mut c, n, cap).await,
        Framing::Close => close_body(&mut c, cap).await,
        Framing::Chunked => chunked_body(&mut c, cap).await,
    }
    .map_err(|why| Failure { status: Some(status), why })?;
    Ok(Response { status, body })
}

/// Received bytes not yet used: `buf[start..]`.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
}

impl Conn {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads more; false at the end of the stream.
    async fn more(&mut self) -> std::io::Result<bool> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(4096);
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    /// Reads more, or says why the body ends early.
    async fn more_body(&mut self) -> Result<(), String> {
        match self.more().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the connection closed inside the body".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

enum Framing {
    Empty,
    Length(u64),
    Chunked,
    Close,
}

/// The status line and headers, skipping informational (1xx) responses.
async fn head(c: &mut Conn) -> Result<(u16, Framing), Failure> {
    loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(c.data()) {
                Ok(httparse::Status::Complete(n)) => {
                    let code = resp.code.unwrap_or(0);
                    Some((n, code, framing(resp.headers, code)))
                }
                Ok(httparse::Status::Partial) => None,
                Err(e) => return fail(None, format!("not a valid HTTP response: {e}")),
            }
        };
        match parsed {
            Some((n, code, framing)) => {
                c.consume(n);
                if (100..200).contains(&code) && code != 101 {
                    continue;
                }
                return Ok((code, framing.or_else(|why| fail(Some(code), why))?));
            }
            None if c.data().len() > HEAD_CAP => return fail(None, "response headers over 16 KiB"),
            None => match c.more().await {
                Ok(true) => {}
                Ok(false) if c.data().is_empty() => return fail(None, "the connection closed without a response"),
                Ok(false) => return fail(None, "the connection closed inside the response headers"),
                Err(e) => return fail(None, format!("reading the response: {e}")),
            },
        }
    }
}

fn framing(headers: &[httparse::Header<'_>], code: u16) -> Result<Framing, String> {
    if code < 200 || code == 204 || code == 304 {
        return Ok(Framing::Empty);
    }
    let value = |name: &str| headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    if let Some(te) = value("transfer-encoding") {
        if String::from_utf8_lossy(te).to_ascii_lowercase().contains("chunked") {
            return Ok(Framing::Chunked);
        }
    }
    match value("content-length") {
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Framing::Length)
            .ok_or_else(|| format!("Content-Length {:?} is not a number", String::from_utf8_lossy(v))),
        None => Ok(Framing::Close),
    }
}

/// Moves up to `want` received bytes into `body`; returns how many.
fn take(c: &mut Conn, body: &mut Vec<u8>, want: usize) -> usize {
    let n = c.data().len().min(want);
    body.extend_from_slice(&c.data()[..n]);
    c.consume(n);
    n
}

async fn length_body(c: &mut Conn, len: u64, cap: usize) -> Result<Vec<u8>, String> {
    let want = len.min(cap as u64) as usize;
    let mut body = Vec::with_capacity(want);
    while body.len() < want {
        if c.data().is_empty() {
            c.more_body().await.map_err(|e| format!("{e} after {} of {len} bytes", body.len()))?;
        }
        let left = want - body.len();
        take(c, &mut body, left);
    }
    Ok(body)
}

async fn close_body(c: &mut Conn, cap: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let left = cap - body.len();
        take(c, &mut body, left);
        if body.len() >= cap || !c.more().await.map_err(|e| e.to_string())? {
            return Ok(body);
        }
    }
}

async fn chunked_body(c: &mut Conn, cap: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let (line, size) = loop {
            match httparse::parse_chunk_size(c.data()) {
                Ok(httparse::Status::Complete(found)) => break found,
                Ok(httparse::Status::Partial) if c.data().len() > CHUNK_LINE_CAP => {
                    return Err("a chunk size line over 1 KiB".into());
                }
                Ok(httparse::Status::Partial) => c.more_body().await?,
                Err(_) => return Err("a chunk size that is not hexadecimal".into()),
            }
        };
        c.consume(line);
        if size == 0 {
            // Trailers, if any, are not read: the body is whole.
            return Ok(body);
        }
        let mut left = size;
        while left > 0 && body.len() < cap {
            if c.data().is_empty() {
                c.more_body().await?;
            }
            let want = left.min((cap - body.len()) as u64) as usize;
            left -= take(c, &mut body, want) as u64;
        }
        if body.len() >= cap {
            return Ok(body);
        }
        while c.data().len() < 2 {
            c.more_body().await?;
        }
        if &c.data()[..2] != b"\r\n" {
            return Err("a chunk not ended by CRLF".into());
        }
        c.consume(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Serves `reply` written in `pieces` (split at these offsets, flushed apart) to one connection;
    /// returns the address and the request as received.
    fn serve(reply: Vec<u8>, pieces: Vec<usize>) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the request ended early");
                req.extend_from_slice(&buf[..n]);
            }
            let mut at = 0;
            for end in pieces.into_iter().chain([reply.len()]) {
                let _ = s.write_all(&reply[at..end]);
                let _ = s.flush();
                std::thread::sleep(std::time::Duration::from_millis(5));
                at = end;
            }
            req
        });
        (addr, h)
    }

    async fn get_reply(reply: &[u8], pieces: Vec<usize>, cap: usize) -> Result<Response, Failure> {
        let (addr, h) = serve(reply.to_vec(), pieces);
        let r = get(addr, "/healthz?x=1", cap).await;
        let req = String::from_utf8(h.join().unwrap()).unwrap();
        assert!(req.starts_with("GET /healthz?x=1 HTTP/1.1\r\n"), "{req}");
        assert!(req.contains(&format!("\r\nHost: {addr}\r\n")) && req.contains("\r\nConnection: close\r\n"), "{req}");
        r
    }

    #[tokio::test]
    async fn bodies_are_read_by_length_by_chunks_or_to_the_close_whatever_the_packets() {
        let by_length = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let r = get_reply(by_length, vec![3, 20, 39], 1024).await.unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));

        let chunked = b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nwiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: t\r\n\r\n";
        for split in [vec![], vec![50, 52, 60, 75], (1..chunked.len()).step_by(7).collect()] {
            let r = get_reply(chunked, split, 1024).await.unwrap();
            assert_eq!((r.status, &r.body[..]), (503, &b"wikipedia in\r\n\r\nchunks."[..]));
        }
        let r = get_reply(chunked, vec![], 6).await.unwrap();
        assert_eq!(r.body, b"wikipe", "the cap ends the body in the middle of a chunk");

        let to_close = b"HTTP/1.0 200 OK\r\nServer: busybox\r\n\r\nno length here";
        let r = get_reply(to_close, vec![10], 1024).await.unwrap();
        assert_eq!(r.body, b"no length here");
        let r = get_reply(to_close, vec![], 4).await.unwrap();
        assert_eq!(r.body, b"no l");

        let informational = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let r = get_reply(informational, vec![], 1024).await.unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
    }

    #[tokio::test]
    async fn broken_answers_say_what_is_wrong() {
        let why = |r: Result<Response, Failure>| r.map(|r| r.status).unwrap_err();
        let f = why(get_reply(b"SSH-2.0-OpenSSH_9.2\r\n", vec![], 1024).await);
        assert!(f.status.is_none() && f.why.starts_with("not a valid HTTP response"), "{f:?}");
        let f = why(get_reply(b"", vec![], 1024).await);
        assert_eq!(f.why, "the connection closed without a response");
        let f = why(get_reply(b"HTTP/1.1 200 OK\r\nContent-", vec![], 1024).await);
        assert_eq!(f.why, "the connection closed inside the response headers");
        let f = why(get_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", vec![], 1024).await);
        assert_eq!(
            (f.status, f.why.as_str()),
            (Some(200), "the connection closed inside the body after 3 of 10 bytes")
        );
        let f = why(get_reply(b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", vec![], 1024).await);
        assert!(f.why.contains("Content-Length \"ten\" is not a number"), "{f:?}");
        let f = why(get_reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", vec![], 1024).await);
        assert_eq!(f.why, "a chunk size that is not hexadecimal");
        let f = why(get_reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY", vec![], 1024).await);
        assert_eq!(f.why, "a chunk not ended by CRLF");
        let mut huge_head = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
        huge_head.extend(std::iter::repeat_n(b'x', 20_000));
        let f = why(get_reply(&huge_head, vec![], 1024).await);
        assert_eq!(f.why, "response headers over 16 KiB");
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let f = get(refused, "/", 10).await.unwrap_err();
        assert!(f.why.starts_with("connect: ") && f.why.contains("refused"), "{f:?}");
    }
}

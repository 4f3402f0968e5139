//! HTTP/1.1 response reading for the harness's raw-socket clients (the probe, the benchmark's
//! load clients, the loopback daemon's raw connection), on `httparse`: one parser for every
//! response head and chunked body, so no client splits on `\r\n` by hand. Raw sockets stay where
//! a test must control the bytes on the wire (abuse, limits, keep-alive counts); the fake servers
//! (`fake`) read requests through hyper.

use std::io::Read;

use anyhow::{bail, Context, Result};

/// Headers a response head may carry; more is a parse error.
const MAX_HEADERS: usize = 64;

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// The minor version: 1 for HTTP/1.1.
    pub version: u8,
    /// Header names (lowercase) and values (trimmed, lossy UTF-8).
    pub headers: Vec<(String, String)>,
    /// Length of the head in bytes, blank line included.
    pub len: usize,
}

impl Head {
    /// A header's value (`name` in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the body is chunked.
    pub fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    }

    /// The `Content-Length`, when present.
    pub fn content_length(&self) -> Result<Option<usize>> {
        self.header("content-length")
            .map(|v| v.parse().context("bad Content-Length"))
            .transpose()
    }
}

/// Parses the HTTP/1.x response head at the start of `raw`; `None` while it is incomplete.
pub fn parse_head(raw: &[u8]) -> Result<Option<Head>> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    let len = match response.parse(raw) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => bail!(
            "not an HTTP/1.1 response head ({e}): {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        ),
    };
    let status = response.code.context("no status")?;
    let headers = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect();
    Ok(Some(Head {
        status,
        version: response.version.context("no version")?,
        headers,
        len,
    }))
}

/// Where a chunked body starting at `raw` ends, and its bytes; `None` while incomplete.
pub fn parse_chunked(raw: &[u8]) -> Result<Option<(usize, Vec<u8>)>> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let (size_len, size) = match httparse::parse_chunk_size(&raw[at..]) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => bail!("bad chunk size"),
        };
        let size = usize::try_from(size).context("chunk too large")?;
        let data = at + size_len;
        // The chunk's data, then CRLF (for the last chunk: no trailers, just CRLF).
        let Some(end) = data.checked_add(size).and_then(|e| e.checked_add(2)) else {
            bail!("chunk too large");
        };
        if raw.len() < end {
            return Ok(None);
        }
        body.extend_from_slice(&raw[data..data + size]);
        at = end;
        if size == 0 {
            return Ok(Some((at, body)));
        }
    }
}

/// Decodes a chunked body as far as it is complete (a cut-off stream keeps what arrived).
pub fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(httparse::Status::Complete((size_len, size))) = httparse::parse_chunk_size(raw) {
        let Ok(size) = usize::try_from(size) else {
            break;
        };
        let rest = &raw[size_len..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        raw = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
    }
    out
}

/// A whole response read to the peer's close (`Connection: close`): (status, body as text), a
/// chunked body decoded as far as it is complete.
pub fn parse_closed(raw: &[u8]) -> Result<Option<(u16, String)>> {
    let Some(head) = parse_head(raw)? else {
        return Ok(None);
    };
    let rest = &raw[head.len..];
    let body = if head.chunked() {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Ok(Some((
        head.status,
        String::from_utf8_lossy(&body).into_owned(),
    )))
}

/// Reads one response from a keep-alive stream into `buf` (which keeps any bytes that follow it):
/// (status, body). Errors when the stream ends first.
pub fn read_response(stream: &mut impl Read, buf: &mut Vec<u8>) -> Result<(u16, Vec<u8>)> {
    let head = loop {
        if let Some(head) = parse_head(buf)? {
            break head;
        }
        fill(stream, buf).context("connection closed mid-request")?;
    };
    buf.drain(..head.len);
    let body = if head.chunked() {
        loop {
            if let Some((len, body)) = parse_chunked(buf)? {
                buf.drain(..len);
                break body;
            }
            fill(stream, buf).context("body")?;
        }
    } else {
        let n = head.content_length()?.unwrap_or(0);
        while buf.len() < n {
            fill(stream, buf).context("body")?;
        }
        buf.drain(..n).collect()
    };
    Ok((head.status, body))
}

fn fill(stream: &mut impl Read, buf: &mut Vec<u8>) -> Result<()> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk)?;
    if n == 0 {
        bail!("connection closed");
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

#[cfg(test)]
mod tests;

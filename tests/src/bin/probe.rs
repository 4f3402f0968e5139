//! `netclaw-probe`: a minimal HTTP/1.1 client the test harness runs inside network namespaces,
//! where it stands in for a remote device or a reverse proxy. It can choose its source address.
//!
//! `netclaw-probe [--bind IP] [-H 'Name: value']... [--data BODY] METHOD URL`
//! prints the status code on the first line and the response body after it.
//!
//! `netclaw-probe --slow N --for SECS IP:PORT` opens N connections that trickle a request head
//! (one byte a second; `--silent` sends nothing at all) and prints how many the server closed
//! within SECS and the longest time one stayed open.
//!
//! `netclaw-probe --flood N --for SECS [--every SECS] [--from IP,IP,...] IP:PORT` opens N
//! connections (spread over the `--from` source addresses) that each announce a 16 kB pairing
//! exchange body and send one byte of it every `--every` seconds (default 2); a connection the
//! server closes is opened again a second later, until SECS have passed. It prints one line:
//! `opened O refused R timed-out T max-open M` (R: answered 503, T: answered 408, M: the most
//! connections open at once).
//! `netclaw-probe --relay SOCKET` connects once to the Unix socket SOCKET and copies stdin to it
//! and its answers to stdout (as `socat STDIO UNIX-CONNECT:SOCKET` would): run under `setpriv`,
//! it gives a test one keep-alive connection whose peer credentials are another uid's.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netclaw-probe: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.first().map(String::as_str) == Some("--slow") {
        return slow(&all[1..]);
    }
    if all.first().map(String::as_str) == Some("--flood") {
        return flood(&all[1..]);
    }
    if all.first().map(String::as_str) == Some("--relay") {
        return relay(all.get(1).context("--relay SOCKET")?);
    }
    let mut args = all.into_iter();
    let mut bind: Option<IpAddr> = None;
    let mut headers = Vec::new();
    let mut data: Option<String> = None;
    let mut rest = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bind" => bind = Some(args.next().context("--bind IP")?.parse()?),
            "-H" => headers.push(args.next().context("-H 'Name: value'")?),
            "--data" => data = Some(args.next().context("--data BODY")?),
            _ => rest.push(a),
        }
    }
    let [method, url] = rest.as_slice() else {
        bail!("usage: netclaw-probe [--bind IP] [-H 'Name: value']... [--data BODY] METHOD URL");
    };
    let rest = url.strip_prefix("http://").context("only http:// URLs")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority.parse().context("URL host must be IP:port")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = runtime.block_on(request(
        addr,
        bind,
        method,
        authority,
        path,
        &headers,
        data.as_deref(),
    ))?;
    println!("{status}");
    print!("{body}");
    Ok(())
}

async fn request(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    method: &str,
    authority: &str,
    path: &str,
    headers: &[String],
    data: Option<&str>,
) -> Result<(u16, String)> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(ip) = bind {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let mut stream = tokio::time::timeout(std::time::Duration::from_secs(10), socket.connect(addr))
        .await
        .context("connect timed out")??;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    let body = data.unwrap_or("");
    if data.is_some() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut raw),
    )
    .await
    .context("response timed out")??;
    netclaw_tests::http::parse_closed(&raw)?.context("no response head")
}

/// Slow clients: how the server treats connections that never finish a request head.
fn slow(args: &[String]) -> Result<()> {
    let mut it = args.iter();
    let n: usize = it.next().context("--slow N")?.parse()?;
    let mut secs = 20u64;
    let mut silent = false;
    let mut addr = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--for" => secs = it.next().context("--for SECS")?.parse()?,
            "--silent" => silent = true,
            other => addr = Some(other.parse::<SocketAddr>()?),
        }
    }
    let addr = addr.context("IP:PORT")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        let deadline = std::time::Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for _ in 0..n {
            tasks.push(tokio::spawn(async move {
                let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                    return Some(std::time::Duration::ZERO);
                };
                let head = b"GET /api/health/ready HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
                let mut i = 0;
                let mut buf = [0u8; 256];
                loop {
                    if started.elapsed() >= deadline {
                        return None;
                    }
                    if !silent && i < head.len() {
                        if s.write_all(&head[i..=i]).await.is_err() {
                            return Some(started.elapsed());
                        }
                        i += 1;
                    }
                    match tokio::time::timeout(std::time::Duration::from_secs(1), s.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
                        // Anything the server sends (a 408, an alert) counts as being cut off once
                        // the connection closes; keep reading.
                        Ok(Ok(_)) | Err(_) => {}
                    }
                }
            }));
        }
        let mut closed = 0;
        let mut longest = std::time::Duration::ZERO;
        for t in tasks {
            if let Ok(Some(d)) = t.await {
                closed += 1;
                longest = longest.max(d);
            }
        }
        println!("closed {closed} of {n}, longest {:.1} s", longest.as_secs_f64());
    });
    Ok(())
}

/// Slow-body flood: many connections that announce a body and trickle it.
fn flood(args: &[String]) -> Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let mut it = args.iter();
    let n: usize = it.next().context("--flood N")?.parse()?;
    let mut secs = 15u64;
    let mut every = 2u64;
    let mut from: Vec<IpAddr> = Vec::new();
    let mut addr = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--for" => secs = it.next().context("--for SECS")?.parse()?,
            "--every" => every = it.next().context("--every SECS")?.parse()?,
            "--from" => {
                for ip in it.next().context("--from IP,IP,...")?.split(',') {
                    from.push(ip.parse().with_context(|| format!("--from {ip}"))?);
                }
            }
            other => addr = Some(other.parse::<SocketAddr>()?),
        }
    }
    let addr = addr.context("IP:PORT")?;
    #[derive(Default)]
    struct Counts {
        opened: AtomicUsize,
        refused: AtomicUsize,
        timed_out: AtomicUsize,
        open: AtomicUsize,
        max_open: AtomicUsize,
    }
    let counts = Arc::new(Counts::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for i in 0..n {
            let source = (!from.is_empty()).then(|| from[i % from.len()]);
            let counts = counts.clone();
            tasks.push(tokio::spawn(async move {
                // Spread the reconnections out a little.
                let pause = Duration::from_millis(1000 + (i as u64 % 10) * 100);
                while Instant::now() < deadline {
                    let socket = match addr {
                        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
                    };
                    let Ok(socket) = socket else { return };
                    if let Some(ip) = source {
                        if socket.bind(SocketAddr::new(ip, 0)).is_err() {
                            return;
                        }
                    }
                    let connect =
                        tokio::time::timeout(Duration::from_secs(5), socket.connect(addr));
                    let Ok(Ok(mut s)) = connect.await else {
                        tokio::time::sleep(pause).await;
                        continue;
                    };
                    counts.opened.fetch_add(1, Ordering::Relaxed);
                    let now_open = counts.open.fetch_add(1, Ordering::Relaxed) + 1;
                    counts.max_open.fetch_max(now_open, Ordering::Relaxed);
                    let head = format!(
                        "POST /api/pair/exchange HTTP/1.1\r\nHost: {addr}\r\n\
                         Content-Type: application/json\r\nContent-Length: 16384\r\n\r\n{{"
                    );
                    let mut answer = Vec::new();
                    if s.write_all(head.as_bytes()).await.is_ok() {
                        let mut buf = [0u8; 512];
                        while Instant::now() < deadline {
                            match tokio::time::timeout(Duration::from_secs(every), s.read(&mut buf))
                                .await
                            {
                                Ok(Ok(0)) | Ok(Err(_)) => break,
                                Ok(Ok(k)) => answer.extend_from_slice(&buf[..k.min(64)]),
                                Err(_) => {
                                    if s.write_all(b" ").await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    counts.open.fetch_sub(1, Ordering::Relaxed);
                    if answer.starts_with(b"HTTP/1.1 503") {
                        counts.refused.fetch_add(1, Ordering::Relaxed);
                    } else if answer.starts_with(b"HTTP/1.1 408") {
                        counts.timed_out.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(s);
                    if Instant::now() < deadline {
                        tokio::time::sleep(pause).await;
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    println!(
        "opened {} refused {} timed-out {} max-open {}",
        counts.opened.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.timed_out.load(Ordering::Relaxed),
        counts.max_open.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Copies stdin to the socket and the socket to stdout (flushed after every read) until either
/// side ends.
fn relay(socket: &str) -> Result<()> {
    use std::io::{Read, Write};
    let stream = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("connecting to {socket}"))?;
    let mut writer = stream.try_clone()?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut writer);
        let _ = writer.shutdown(std::net::Shutdown::Write);
    });
    let mut reader = stream;
    let mut out = std::io::stdout().lock();
    let mut buf = [0u8; 8192];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}

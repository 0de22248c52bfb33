//! The local server's connection limits (docs/configuration.md): the header-read timeout,
//! the idle timeout of kept-alive connections, and the cap on open connections, seen from a
//! raw TCP client.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use user_service_tests::TestApp;

const REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";

/// Reads one HTTP response (head and `Content-Length` body); returns its status, or `None`
/// if the server closed the connection first.
async fn read_response(stream: &mut TcpStream) -> Option<u16> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while received.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                received.extend_from_slice(&chunk[..n]);
            }
            return head.get(9..12).and_then(|s| s.parse().ok());
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        received.extend_from_slice(&chunk[..n]);
    }
}

/// Waits until the server closes `stream` (a read returns end of file or an error), at most
/// `within`; returns when it did, or `None`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Instant> {
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.addr).await.expect("connect")
}

/// A client that sends its request line and then a header every 300 ms never completes its
/// head: it is disconnected at the header-read timeout, however steadily it trickles.
#[tokio::test]
async fn a_client_trickling_its_headers_is_disconnected_at_the_header_read_timeout() {
    let app = TestApp::builder()
        .env("HTTP_HEADER_READ_TIMEOUT_SECONDS", 1)
        .env("HTTP_IDLE_TIMEOUT_SECONDS", 30)
        .spawn()
        .await;
    let mut stream = connect(&app).await;
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
        .await
        .expect("request line");
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if writer
                .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut chunk = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the trickling connection is closed within 10 s");
    trickle.abort();
    let after = closed - started;
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(3),
        "closed after {after:?}, expected about the 1 s header-read timeout"
    );
}

/// A kept-alive connection is closed the idle timeout after its last response, and only
/// then: the (shorter) header-read timeout does not cut an idle wait short.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = TestApp::builder()
        .env("HTTP_HEADER_READ_TIMEOUT_SECONDS", 1)
        .env("HTTP_IDLE_TIMEOUT_SECONDS", 3)
        .spawn()
        .await;
    let mut stream = connect(&app).await;
    stream.write_all(REQUEST).await.expect("request");
    assert_eq!(read_response(&mut stream).await, Some(200));
    // Idle past the header-read timeout, within the idle timeout: still served.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream.write_all(REQUEST).await.expect("second request");
    assert_eq!(
        read_response(&mut stream).await,
        Some(200),
        "an idle wait shorter than the idle timeout keeps the connection"
    );
    let answered = Instant::now();
    let closed = closed_within(&mut stream, Duration::from_secs(10))
        .await
        .expect("the idle connection is closed within 10 s");
    let after = closed - answered;
    assert!(
        after >= Duration::from_millis(2800) && after < Duration::from_secs(5),
        "closed {after:?} after the last response, expected about the 3 s idle timeout"
    );
}

/// With `HTTP_MAX_CONNECTIONS=2`, a third connection is not served while two are open, the
/// two still are, and the third is served once one of them closes.
#[tokio::test]
async fn past_the_connection_cap_a_client_waits_until_a_connection_closes() {
    let app = TestApp::builder()
        .env("HTTP_MAX_CONNECTIONS", 2)
        .spawn()
        .await;
    let mut first = connect(&app).await;
    let mut second = connect(&app).await;
    for stream in [&mut first, &mut second] {
        stream.write_all(REQUEST).await.expect("request");
        assert_eq!(read_response(stream).await, Some(200));
    }
    // The kernel completes the handshake (the backlog), but the server does not accept it.
    let mut third = connect(&app).await;
    third.write_all(REQUEST).await.expect("request");
    let mut chunk = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(700), third.read(&mut chunk))
            .await
            .is_err(),
        "a connection past the cap is not served"
    );
    second.write_all(REQUEST).await.expect("request");
    assert_eq!(
        read_response(&mut second).await,
        Some(200),
        "the connections within the cap are still served"
    );
    drop(first);
    let served = tokio::time::timeout(Duration::from_secs(5), read_response(&mut third))
        .await
        .expect("served once a connection closed");
    assert_eq!(served, Some(200));
}

//! The agent's HTTP endpoint against hostile clients: slow ones, huge ones, many ones.
//! No root needed: the endpoint is served in-process on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_agent::http::{self, Http};
use weir_agent::metrics::Metrics;
use weir_nft::apply::NftCli;

fn serve(serve_drops: bool) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let state = Arc::new(Http::new(
        Arc::new(Metrics::default()),
        // Never listed in these tests: /metrics is not asked for.
        NftCli {
            netns: Some("weir-no-such-netns".into()),
        },
        Arc::new(Mutex::new(Default::default())),
        serve_drops,
    ));
    let addr = http::serve(listener, state, stop.clone()).unwrap();
    (addr, stop)
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn a_slow_client_neither_blocks_healthz_nor_stays_forever() {
    let (addr, _stop) = serve(false);
    let mut slow = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    let slow_thread = std::thread::spawn(move || {
        // A byte every 1.5 s: the request head never completes.
        for b in b"GET /healthz HTTP/1.1\r\n" {
            if slow.write_all(&[*b]).is_err() {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(1500));
            let mut buf = [0u8; 64];
            slow.set_read_timeout(Some(Duration::from_millis(1)))
                .unwrap();
            if matches!(slow.read(&mut buf), Ok(0)) {
                return started.elapsed();
            }
        }
        panic!("the slow client was never cut off");
    });
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(get(addr, "/healthz").0, 200);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(400));
    }
    let cut_after = slow_thread.join().unwrap();
    assert!(
        cut_after < http::HEADER_TIMEOUT + Duration::from_secs(3),
        "cut after {cut_after:?}"
    );
}

#[test]
fn a_huge_request_line_is_refused_not_buffered() {
    let (addr, _stop) = serve(false);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"GET /").unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0usize;
    // The server answers (431/400) and closes long before 64 MiB: a write fails.
    while sent < 64 << 20 {
        if s.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    assert!(sent < 64 << 20, "64 MiB of request line accepted");
    assert_eq!(get(addr, "/healthz").0, 200);
}

#[test]
fn drops_are_off_unless_enabled_and_only_get_is_served() {
    let (addr, _stop) = serve(false);
    let (status, body) = get(addr, "/drops");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("--serve-drops"));
    let (status, body) = get(addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not synced yet"), "{body}");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 405"), "{text}");

    let (addr, _stop) = serve(true);
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /drops HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Streams are bounded: a fifth is refused while four are open.
    let mut open = vec![s];
    for _ in 0..http::MAX_DROP_STREAMS - 1 {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET /drops HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        open.push(s);
    }
    assert_eq!(get(addr, "/drops").0, 503);
    // Many idle connections do not take /healthz down.
    let idle: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(addr).unwrap()).collect();
    assert_eq!(get(addr, "/healthz").0, 200);
    drop(idle);
}

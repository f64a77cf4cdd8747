//! The API relay against a stand-in gateway port (an echo server): it listens only while
//! serving, relays bytes both ways and counts them, resets connections past the cap, and
//! cuts every relayed connection when the gateway stops serving or a new session begins.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ibwarden::relay::{self, RelayOptions, RelayStats, Serving};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(10);

async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

/// Waits until `f` holds on the stats (they change when the relay acts).
async fn until(stats: &RelayStats, what: &str, f: impl Fn(&RelayStats) -> bool) {
    tokio::time::timeout(WAIT, async {
        while !f(stats) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}: {stats:?}"));
}

async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.expect("write");
    let mut got = vec![0u8; msg.len()];
    tokio::time::timeout(WAIT, s.read_exact(&mut got))
        .await
        .expect("echo in time")
        .expect("echo");
    got
}

/// What the client sees next: Ok(0) is a FIN, Err a reset.
async fn next_read(s: &mut TcpStream) -> std::io::Result<usize> {
    let mut b = [0u8; 16];
    tokio::time::timeout(WAIT, s.read(&mut b))
        .await
        .expect("a close, not silence")
}

#[tokio::test]
async fn listens_while_serving_caps_counts_and_cuts_at_a_new_session() {
    let target = echo_server().await;
    let listen = free_addr();
    let (tx, rx) = watch::channel(Serving::default());
    let stats = Arc::new(RelayStats::default());
    let opts = RelayOptions {
        listen,
        allow: vec!["127.0.0.1/32".parse().expect("cidr")],
        max_connections: 2,
        target,
    };
    tokio::spawn(relay::run(opts, rx, stats.clone()));

    // Not serving: nothing listens.
    let e = TcpStream::connect(listen).await.expect_err("refused");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);

    tx.send_replace(Serving {
        ready: true,
        epoch: 1,
    });
    until(&stats, "listening", |s| {
        s.listening.load(Ordering::SeqCst) == 1
    })
    .await;
    let mut a = TcpStream::connect(listen).await.expect("a");
    let mut b = TcpStream::connect(listen).await.expect("b");
    assert_eq!(round_trip(&mut a, b"reqIds").await, b"reqIds");
    assert_eq!(
        round_trip(&mut b, b"reqAccountSummary").await,
        b"reqAccountSummary"
    );
    until(&stats, "two relayed", |s| {
        s.accepted.load(Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(stats.open.load(Ordering::SeqCst), 2);
    // Counted after each write, so the last count may trail the echo by a moment.
    until(&stats, "bytes both ways", |s| {
        s.bytes_to_gateway.load(Ordering::SeqCst) == 6 + 17
            && s.bytes_to_clients.load(Ordering::SeqCst) == 6 + 17
    })
    .await;

    // A third is past the cap: reset, and never reaches the gateway.
    let mut c = TcpStream::connect(listen)
        .await
        .expect("c connects (the kernel accepts)");
    let r = next_read(&mut c).await;
    assert!(matches!(r, Ok(0) | Err(_)), "the third is closed: {r:?}");
    until(&stats, "refused at the cap", |s| {
        s.refused_limit.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(stats.accepted.load(Ordering::SeqCst), 2);

    // A new session (a restart too quick to publish "not ready" in between): both cut.
    tx.send_replace(Serving {
        ready: true,
        epoch: 2,
    });
    for s in [&mut a, &mut b] {
        let r = next_read(s).await;
        assert!(matches!(r, Ok(0)), "a clean close (FIN), got {r:?}");
    }
    until(&stats, "both cut", |s| s.cut.load(Ordering::SeqCst) == 2).await;
    until(&stats, "none open", |s| s.open.load(Ordering::SeqCst) == 0).await;
    // And it serves the new session.
    until(&stats, "listening again", |s| {
        s.listening.load(Ordering::SeqCst) == 1
    })
    .await;
    let mut d = TcpStream::connect(listen).await.expect("d");
    assert_eq!(round_trip(&mut d, b"again").await, b"again");

    // Not serving: the client is cut and new connects are refused.
    tx.send_replace(Serving {
        ready: false,
        epoch: 2,
    });
    assert!(matches!(next_read(&mut d).await, Ok(0)));
    until(&stats, "closed", |s| {
        s.listening.load(Ordering::SeqCst) == 0
    })
    .await;
    let e = TcpStream::connect(listen).await.expect_err("refused again");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn a_source_outside_the_allow_list_is_reset_before_the_gateway_sees_it() {
    let target = echo_server().await;
    let listen = free_addr();
    let (_tx, rx) = watch::channel(Serving {
        ready: true,
        epoch: 1,
    });
    let stats = Arc::new(RelayStats::default());
    let opts = RelayOptions {
        listen,
        allow: vec!["127.0.0.1/32".parse().expect("cidr")],
        max_connections: 8,
        target,
    };
    tokio::spawn(relay::run(opts, rx, stats.clone()));
    until(&stats, "listening", |s| {
        s.listening.load(Ordering::SeqCst) == 1
    })
    .await;
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind 127.0.0.2");
    let mut s = sock.connect(listen).await.expect("connect");
    let _ = s.write_all(b"API\0").await;
    let r = next_read(&mut s).await;
    assert!(r.is_err() || matches!(r, Ok(0)), "{r:?}");
    until(&stats, "refused", |s| {
        s.refused_source.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(stats.accepted.load(Ordering::SeqCst), 0);
    assert_eq!(stats.bytes_to_gateway.load(Ordering::SeqCst), 0);
}

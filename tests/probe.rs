//! The TWS API probe against small fake gateways on 127.0.0.1:0, plus property tests of the
//! frame decoder. Each fake server is a scripted tokio task that also records what the
//! probe sent, so the wire format is checked from the server's side. One test runs the
//! probe against the gateway simulator's API server (an independent implementation, in
//! Java) after a real login over X11.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ibwarden::core::types::ProbeOutcome;
use ibwarden::probe::{
    decode_frames, encode_frame, handshake_request, probe, probe_report, FrameError, MAX_FRAME_LEN,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Reads one length-prefixed frame the way a gateway would, split into fields.
async fn read_frame(s: &mut TcpStream) -> Vec<String> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.expect("frame length");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.expect("frame body");
    let body = body.strip_suffix(&[0]).unwrap_or(&body);
    body.split(|b| *b == 0)
        .map(|f| String::from_utf8(f.to_vec()).expect("ascii"))
        .collect()
}

/// Reads `API\0` + the framed version range; returns the range text.
async fn read_handshake(s: &mut TcpStream) -> String {
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).await.expect("prefix");
    assert_eq!(&prefix, b"API\0");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.expect("len");
    let mut v = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut v).await.expect("version");
    String::from_utf8(v).expect("ascii")
}

async fn send(s: &mut TcpStream, fields: &[&str]) {
    s.write_all(&encode_frame(fields)).await.expect("write");
}

/// Binds a fake gateway that serves one connection with `script`; returns its address and
/// a handle resolving to what the script recorded.
async fn fake<F, Fut>(script: F) -> (SocketAddr, JoinHandle<Vec<Vec<String>>>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Vec<Vec<String>>> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        script(stream).await
    });
    (addr, handle)
}

#[derive(Clone, Copy)]
enum Order {
    AccountsFirst,
    IdFirst,
}

/// A healthy gateway at `version`; `extra` notices (code list) go after 15/9.
async fn healthy(
    mut s: TcpStream,
    version: u32,
    order: Order,
    notices: &[&str],
) -> Vec<Vec<String>> {
    let mut seen = vec![vec![read_handshake(&mut s).await]];
    send(&mut s, &[&version.to_string(), "20261124 06:38:37 UTC"]).await;
    seen.push(read_frame(&mut s).await);
    let accounts = ["15", "1", "DU1234567,DU7654321,"];
    let next_id = ["9", "1", "1"];
    match order {
        Order::AccountsFirst => {
            send(&mut s, &accounts).await;
            send(&mut s, &next_id).await;
        }
        Order::IdFirst => {
            send(&mut s, &next_id).await;
            send(&mut s, &accounts).await;
        }
    }
    for code in notices {
        if version >= 194 {
            send(&mut s, &["4", "-1", code, "notice", "", "1795502315185"]).await;
        } else {
            send(&mut s, &["4", "2", "-1", code, "notice", ""]).await;
        }
    }
    seen.push(read_frame(&mut s).await);
    send(&mut s, &["49", "1", "1795502105"]).await;
    seen
}

fn assert_up(outcome: &ProbeOutcome, want_link_lost: bool) {
    assert_up_at(outcome, 176, want_link_lost)
}

fn assert_up_at(outcome: &ProbeOutcome, version: u32, want_link_lost: bool) {
    match outcome {
        ProbeOutcome::Up {
            server_version,
            accounts,
            link_lost,
        } => {
            assert_eq!(*server_version, version);
            assert_eq!(accounts, &["DU1234567", "DU7654321"]);
            assert_eq!(*link_lost, want_link_lost);
        }
        other => panic!("expected Up, got {other:?}"),
    }
}

#[tokio::test]
async fn up_with_accounts_first() {
    let (addr, server) = fake(|s| healthy(s, 176, Order::AccountsFirst, &["2104", "2106"])).await;
    let report = probe_report(addr, 999, TIMEOUT).await;
    assert_up(&report.outcome, false);
    assert_eq!(report.current_time, Some(1_795_502_105));
    let codes: Vec<i32> = report.notices.iter().map(|n| n.code).collect();
    assert_eq!(codes, [2104, 2106]);
    let seen = server.await.expect("server");
    assert_eq!(seen[0], ["v100..176"]);
    // START_API with the empty optional-capabilities field (server ≥ 72).
    assert_eq!(seen[1], ["71", "2", "999", ""]);
    assert_eq!(seen[2], ["49", "1"]);
}

#[tokio::test]
async fn up_with_next_valid_id_first() {
    let (addr, server) = fake(|s| healthy(s, 176, Order::IdFirst, &[])).await;
    assert_up(&probe(addr, 7, TIMEOUT).await, false);
    server.await.expect("server");
}

#[tokio::test]
async fn link_lost_when_1100_has_no_later_restore() {
    let (addr, server) = fake(|s| healthy(s, 176, Order::AccountsFirst, &["2104", "1100"])).await;
    assert_up(&probe(addr, 999, TIMEOUT).await, true);
    server.await.expect("server");
}

#[tokio::test]
async fn link_restored_by_a_later_1102() {
    let (addr, server) = fake(|s| healthy(s, 176, Order::IdFirst, &["1100", "1102"])).await;
    assert_up(&probe(addr, 999, TIMEOUT).await, false);
    server.await.expect("server");
}

#[tokio::test]
async fn error_layout_of_server_version_194_and_above() {
    // At 200 the notice has no version field; read with the old layout, the code would be
    // "notice" and the 1100 would be missed. A gateway should not answer above our 176,
    // but the text protocol is still readable, so the probe goes on (and warns).
    let (addr, server) = fake(|s| healthy(s, 200, Order::AccountsFirst, &["2104", "1100"])).await;
    let report = probe_report(addr, 999, TIMEOUT).await;
    assert_up_at(&report.outcome, 200, true);
    let codes: Vec<i32> = report.notices.iter().map(|n| n.code).collect();
    assert_eq!(codes, [2104, 1100]);
    server.await.expect("server");
}

#[tokio::test]
async fn binary_protocol_versions_are_down() {
    let (addr, server) = fake(|mut s| async move {
        read_handshake(&mut s).await;
        send(&mut s, &["213", "20261124 06:38:37 UTC"]).await;
        vec![]
    })
    .await;
    let outcome = probe(addr, 999, TIMEOUT).await;
    assert!(
        matches!(&outcome, ProbeOutcome::Down { reason } if reason.contains("server version 213")),
        "{outcome:?}"
    );
    server.await.expect("server");
}

#[tokio::test]
async fn old_server_version_uses_the_short_error_layout() {
    let (addr, server) = fake(|mut s| async move {
        read_handshake(&mut s).await;
        send(&mut s, &["157", "20261124 06:38:37 UTC"]).await;
        read_frame(&mut s).await;
        send(&mut s, &["4", "2", "-1", "1100", "lost"]).await;
        send(&mut s, &["15", "1", "DU1"]).await;
        send(&mut s, &["9", "1", "1"]).await;
        read_frame(&mut s).await;
        send(&mut s, &["49", "1", "1"]).await;
        vec![]
    })
    .await;
    let outcome = probe(addr, 1, TIMEOUT).await;
    assert_eq!(
        outcome,
        ProbeOutcome::Up {
            server_version: 157,
            accounts: vec!["DU1".into()],
            link_lost: true
        }
    );
    server.await.expect("server");
}

#[tokio::test]
async fn duplicate_client_id_is_down_client_id_in_use() {
    let (addr, server) = fake(|mut s| async move {
        read_handshake(&mut s).await;
        send(&mut s, &["176", "20261124 06:38:37 UTC"]).await;
        let start = read_frame(&mut s).await;
        send(
            &mut s,
            &[
                "4",
                "2",
                "-1",
                "326",
                "Unable to connect as the client id is already in use.",
                "",
            ],
        )
        .await;
        vec![start]
    })
    .await;
    let outcome = probe(addr, 999, TIMEOUT).await;
    match &outcome {
        ProbeOutcome::Down { reason } => {
            assert!(reason.starts_with("client id in use"), "{reason}");
            assert!(reason.contains("999"), "{reason}");
        }
        other => panic!("expected Down, got {other:?}"),
    }
    server.await.expect("server");
}

#[tokio::test]
async fn accept_but_silent_is_down_within_the_timeout() {
    let timeout = Duration::from_millis(300);
    // The listener never accepts: the kernel backlog completes the TCP handshake alone,
    // exactly like a wedged gateway.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let started = Instant::now();
    let outcome = probe(addr, 999, timeout).await;
    let elapsed = started.elapsed();
    match &outcome {
        ProbeOutcome::Down { reason } => {
            assert!(reason.starts_with("no handshake reply within"), "{reason}")
        }
        other => panic!("expected Down, got {other:?}"),
    }
    assert!(elapsed >= timeout, "returned early: {elapsed:?}");
    assert!(
        elapsed < timeout + Duration::from_secs(2),
        "took {elapsed:?}"
    );
    drop(listener);
}

#[tokio::test]
async fn silent_after_start_api_names_the_missing_messages() {
    let (addr, server) = fake(|mut s| async move {
        read_handshake(&mut s).await;
        send(&mut s, &["176", "20261124 06:38:37 UTC"]).await;
        read_frame(&mut s).await;
        // Managed accounts only; nextValidId never comes (heshiming/ibga#24).
        send(&mut s, &["15", "1", "DU1"]).await;
        // Keep the connection open until the probe gives up and closes it.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        vec![]
    })
    .await;
    let outcome = probe(addr, 999, Duration::from_millis(300)).await;
    match &outcome {
        ProbeOutcome::Down { reason } => {
            assert!(reason.starts_with("no next valid id within"), "{reason}")
        }
        other => panic!("expected Down, got {other:?}"),
    }
    server.await.expect("server");
}

#[tokio::test]
async fn connection_refused_is_down() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let outcome = probe(addr, 999, TIMEOUT).await;
    match &outcome {
        ProbeOutcome::Down { reason } => {
            assert!(reason.contains("refused"), "{reason}")
        }
        other => panic!("expected Down, got {other:?}"),
    }
}

#[tokio::test]
async fn closed_on_handshake_is_down() {
    let (addr, server) = fake(|mut s| async move {
        read_handshake(&mut s).await;
        vec![]
    })
    .await;
    let outcome = probe(addr, 999, TIMEOUT).await;
    assert_eq!(
        outcome,
        ProbeOutcome::Down {
            reason: "gateway closed the connection before the handshake reply".into()
        }
    );
    server.await.expect("server");
}

#[tokio::test]
async fn redirect_is_down_with_the_target() {
    let (addr, server) = fake(|mut s| async move {
        read_handshake(&mut s).await;
        send(&mut s, &["-1", "10.0.0.1:4002"]).await;
        vec![]
    })
    .await;
    let outcome = probe(addr, 999, TIMEOUT).await;
    match &outcome {
        ProbeOutcome::Down { reason } => {
            assert!(
                reason.contains("redirected") && reason.contains("10.0.0.1:4002"),
                "{reason}"
            )
        }
        other => panic!("expected Down, got {other:?}"),
    }
    server.await.expect("server");
}

#[tokio::test]
async fn garbage_bytes_are_down_not_a_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..20 {
        let junk: Vec<u8> = (0..rng.below(300) + 1).map(|_| rng.next() as u8).collect();
        let (addr, server) = fake(move |mut s| async move {
            read_handshake(&mut s).await;
            let _ = s.write_all(&junk).await;
            vec![]
        })
        .await;
        let outcome = probe(addr, 999, Duration::from_secs(2)).await;
        assert!(
            matches!(outcome, ProbeOutcome::Down { .. }),
            "round {round}: {outcome:?}"
        );
        server.await.expect("server");
    }
}

#[tokio::test]
async fn absurd_length_is_down() {
    let (addr, server) = fake(|mut s| async move {
        read_handshake(&mut s).await;
        let _ = s
            .write_all(&[0xff, 0xff, 0xff, 0xf0, b'1', b'7', b'6', 0])
            .await;
        // Hold the socket: the probe must give up on the length, not wait for the body.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        vec![]
    })
    .await;
    let started = Instant::now();
    let outcome = probe(addr, 999, TIMEOUT).await;
    match &outcome {
        ProbeOutcome::Down { reason } => {
            assert!(reason.contains("exceeds the limit"), "{reason}")
        }
        other => panic!("expected Down, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    server.await.expect("server");
}

#[tokio::test]
async fn empty_accounts_list_is_down() {
    let (addr, server) = fake(|mut s| async move {
        read_handshake(&mut s).await;
        send(&mut s, &["176", "t"]).await;
        read_frame(&mut s).await;
        send(&mut s, &["9", "1", "1"]).await;
        send(&mut s, &["15", "1", ""]).await;
        vec![]
    })
    .await;
    let outcome = probe(addr, 999, TIMEOUT).await;
    assert!(
        matches!(&outcome, ProbeOutcome::Down { reason } if reason.contains("empty managed accounts")),
        "{outcome:?}"
    );
    server.await.expect("server");
}

// ---- property tests of the decoder --------------------------------------------------

/// A tiny deterministic generator; good enough to explore byte patterns without a crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn decode_frames_never_panics_on_random_bytes() {
    let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
    for _ in 0..20_000 {
        let len = rng.below(64) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Bias some buffers towards plausible small length prefixes so that the
        // "complete frame" paths are exercised, not only the "too long" one.
        if len >= 4 && rng.below(2) == 0 {
            buf[0] = 0;
            buf[1] = 0;
            buf[2] = 0;
            buf[3] = (rng.below(len as u64)) as u8;
        }
        match decode_frames(&buf) {
            Ok((frames, used)) => {
                assert!(used <= buf.len());
                // Whatever remains is not a complete frame.
                let rest = &buf[used..];
                if rest.len() >= 4 {
                    let announced = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                    assert!(announced as usize > rest.len() - 4);
                }
                assert!(frames.len() <= buf.len() / 4);
            }
            Err(FrameError::TooLong { len, max }) => {
                assert!(len as usize > max);
                assert_eq!(max, MAX_FRAME_LEN);
            }
        }
    }
}

#[test]
fn decode_frames_reassembles_frames_split_at_any_point() {
    let mut rng = XorShift(0x0123_4567_89AB_CDEF);
    for _ in 0..2_000 {
        let count = rng.below(5) as usize + 1;
        let mut expected = Vec::new();
        let mut wire = Vec::new();
        for _ in 0..count {
            let fields: Vec<String> = (0..rng.below(4) + 1)
                .map(|_| {
                    (0..rng.below(8))
                        .map(|_| char::from(b'!' + rng.below(90) as u8))
                        .collect()
                })
                .collect();
            wire.extend(encode_frame(&fields));
            expected.push(fields);
        }
        // Feed the stream in random chunks, keeping the unconsumed tail like the probe does.
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let mut pos = 0;
        while pos < wire.len() {
            let step = (rng.below(7) as usize + 1).min(wire.len() - pos);
            buf.extend_from_slice(&wire[pos..pos + step]);
            pos += step;
            let (frames, used) = decode_frames(&buf).expect("well-formed");
            buf.drain(..used);
            got.extend(frames.into_iter().map(|f| f.fields));
        }
        assert!(buf.is_empty());
        assert_eq!(got, expected);
    }
}

// ---- against the gateway simulator ------------------------------------------------------

#[tokio::test]
async fn probe_against_the_simulator_api_server() {
    let mut s = common::Session::start(&common::Scenario::new());
    s.login_live();
    let mut rec = s.install.record();
    rec.wait_ev("api_listen", common::STEP_TIMEOUT);
    let addr: SocketAddr = ([127, 0, 0, 1], s.install.api_port).into();

    let report = probe_report(addr, 999, TIMEOUT).await;
    assert_eq!(
        report.outcome,
        ProbeOutcome::Up {
            server_version: 176,
            accounts: vec!["U1234567".into()],
            link_lost: false
        }
    );
    let codes: Vec<i32> = report.notices.iter().map(|n| n.code).collect();
    assert_eq!(codes, [2104, 2106, 2158]);
    let start = rec.wait_ev("api_start", common::STEP_TIMEOUT);
    assert_eq!(start["client_id"], 999);

    // IB link down: a fresh connection is told 1100 after START_API.
    s.install.control("link_loss");
    rec.wait_ev("link_lost", common::STEP_TIMEOUT);
    let outcome = probe(addr, 999, TIMEOUT).await;
    assert!(
        matches!(
            outcome,
            ProbeOutcome::Up {
                link_lost: true,
                ..
            }
        ),
        "{outcome:?}"
    );
    s.install.control("link_restore");
    rec.wait_ev("link_restored", common::STEP_TIMEOUT);
    let outcome = probe(addr, 999, TIMEOUT).await;
    assert!(
        matches!(
            outcome,
            ProbeOutcome::Up {
                link_lost: false,
                ..
            }
        ),
        "{outcome:?}"
    );

    // Another client holds id 7: the probe with id 7 is refused with 326.
    let mut other = TcpStream::connect(addr).await.expect("connect");
    other
        .write_all(&handshake_request())
        .await
        .expect("handshake");
    let mut ack = [0u8; 4];
    other.read_exact(&mut ack).await.expect("ack length");
    other
        .write_all(&encode_frame(&["71", "2", "7", ""]))
        .await
        .expect("start api");
    rec.wait_for("client 7 started", common::STEP_TIMEOUT, |v| {
        common::is_ev(v, "api_start") && v["client_id"] == 7
    });
    let outcome = probe(addr, 7, TIMEOUT).await;
    assert!(
        matches!(&outcome, ProbeOutcome::Down { reason } if reason.starts_with("client id in use")),
        "{outcome:?}"
    );
    drop(other);

    // A hung gateway still accepts TCP but never answers the handshake.
    s.install.control("hang");
    let outcome = probe(addr, 999, Duration::from_millis(500)).await;
    assert!(
        matches!(&outcome, ProbeOutcome::Down { reason } if reason.starts_with("no handshake reply")),
        "{outcome:?}"
    );
}

//! The API relay (`[relay]`): lets API clients on other hosts (other containers, other pods)
//! reach the gateway, which itself accepts loopback clients only unless its own TrustedIPs
//! setting is changed. Peers run socat for this; the relay is built in instead, so that it
//! knows what socat cannot:
//!
//! - **Only while ready.** The listening socket exists only while the last API probe passed
//!   (`Serving::ready`). Before that, a client's connect is refused by the kernel
//!   (`ECONNREFUSED`), which every API client treats as "try again later". A half-logged-in
//!   gateway is never handed to trading code.
//! - **Clean cuts.** When the gateway stops serving (a restart, the nightly reset, a crash),
//!   every relayed connection is closed with a FIN at once, so clients see a disconnect
//!   instead of a connection that silently stops answering.
//! - **An allow-list.** A client whose source address is outside `allow` is reset (RST)
//!   right after the accept, before one byte reaches the gateway.
//! - **Bounded.** At most `max_connections` relayed connections; past it, newcomers are
//!   reset. Counters and bytes are in `/metrics` ([`RelayStats`]).
//!
//! The relay copies bytes and nothing else: it never parses, logs or keeps the API traffic.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Whether the gateway serves, as the driver publishes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Serving {
    /// The last API probe passed.
    pub ready: bool,
    /// How many times it became ready so far: a change means a new gateway session, even
    /// when a not-ready moment in between was too short to be seen.
    pub epoch: u64,
}

/// An address block: `10.0.0.0/8`, `::1/128`, or a bare address (a block of one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// True when `ip` lies in the block. IPv4 clients of a dual-stack (`[::]`) listener
    /// arrive as IPv4-mapped IPv6 addresses and match IPv4 blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address block like \"10.0.0.0/8\""))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        let cidr = Cidr { net, prefix };
        // `10.1.2.3/8` is most likely a typo for a host or for `10.0.0.0/8`: refuse it
        // rather than guess.
        let canonical = match net {
            IpAddr::V4(n) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(n) & mask).into())
            }
            IpAddr::V6(n) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(n) & mask).into())
            }
        };
        if canonical != net {
            return Err(format!(
                "{s:?} has host bits set: did you mean \"{canonical}/{prefix}\"?"
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// What the relay does, from `[relay]`.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Client source addresses allowed.
    pub allow: Vec<Cidr>,
    /// Relayed connections open at once.
    pub max_connections: u32,
    /// The gateway's API port (on loopback).
    pub target: SocketAddr,
}

/// Counters shown in `/metrics`. Updated as bytes flow, not when a connection ends.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// 1 while the relay listens (the gateway serves), else 0.
    pub listening: AtomicU64,
    /// Relayed connections open now.
    pub open: AtomicU64,
    /// Connections relayed to the gateway.
    pub accepted: AtomicU64,
    /// Connections reset because the source is not in `allow`.
    pub refused_source: AtomicU64,
    /// Connections reset because `max_connections` were open.
    pub refused_limit: AtomicU64,
    /// Connections closed because the gateway's API port did not answer.
    pub upstream_failed: AtomicU64,
    /// Connections closed because the gateway stopped serving (restart, reset, crash).
    pub cut: AtomicU64,
    /// Bytes from clients to the gateway.
    pub bytes_to_gateway: AtomicU64,
    /// Bytes from the gateway to clients.
    pub bytes_to_clients: AtomicU64,
}

/// How long the gateway's API port gets to accept a relayed connection.
const UPSTREAM_CONNECT: Duration = Duration::from_secs(5);
/// Pause after a failed bind or accept before the next try.
const RETRY: Duration = Duration::from_secs(1);
/// Copy buffer per direction and connection.
const CHUNK: usize = 16 * 1024;

/// Runs the relay until the task is dropped: listens while `serving` says ready, relays,
/// and cuts every relayed connection when it stops being ready or a new session begins.
pub async fn run(
    opts: RelayOptions,
    mut serving: watch::Receiver<Serving>,
    stats: Arc<RelayStats>,
) {
    let opts = Arc::new(opts);
    // A port held by something else is retried every second; said once, not every second.
    let mut bind_failing = false;
    loop {
        // Wait for a serving gateway.
        let session = {
            let s = serving.wait_for(|s| s.ready).await;
            match s {
                Ok(s) => *s,
                Err(_) => return, // the driver is gone
            }
        };
        let listener = match bind(opts.listen) {
            Ok(l) => {
                bind_failing = false;
                l
            }
            Err(e) => {
                if !bind_failing {
                    warn!(listen = %opts.listen, error = %e, "API relay cannot listen; retrying every second");
                }
                bind_failing = true;
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    r = serving.changed() => if r.is_err() { return; },
                }
                continue;
            }
        };
        stats.listening.store(1, Ordering::SeqCst);
        info!(listen = %opts.listen, target = %opts.target, "API relay listening");
        let cut = CancellationToken::new();
        loop {
            tokio::select! {
                r = serving.changed() => {
                    let now = *serving.borrow_and_update();
                    if r.is_err() || !now.ready || now.epoch != session.epoch {
                        break;
                    }
                }
                r = listener.accept() => match r {
                    Ok((client, peer)) => admit(client, peer, &opts, &stats, &cut),
                    Err(e) => {
                        warn!(error = %e, "API relay: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        // Not serving any more: stop accepting first, then cut who is connected.
        drop(listener);
        stats.listening.store(0, Ordering::SeqCst);
        let open = stats.open.load(Ordering::SeqCst);
        cut.cancel();
        info!(
            cut = open,
            "API relay closed: the gateway stopped serving; relayed clients disconnected"
        );
        if serving.has_changed().is_err() {
            return;
        }
    }
}

/// A listener with `SO_REUSEADDR`, so the port can be bound again at once after a cut
/// (closed connections linger in TIME_WAIT).
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

fn admit(
    client: TcpStream,
    peer: SocketAddr,
    opts: &Arc<RelayOptions>,
    stats: &Arc<RelayStats>,
    cut: &CancellationToken,
) {
    if !opts.allow.iter().any(|c| c.contains(peer.ip())) {
        stats.refused_source.fetch_add(1, Ordering::SeqCst);
        debug!(%peer, "API relay: source not in relay.allow; reset");
        reset(client);
        return;
    }
    // Count before spawning, so a burst cannot overshoot the limit.
    let open = stats.open.fetch_add(1, Ordering::SeqCst);
    if open >= u64::from(opts.max_connections) {
        stats.open.fetch_sub(1, Ordering::SeqCst);
        stats.refused_limit.fetch_add(1, Ordering::SeqCst);
        debug!(%peer, "API relay: relay.max_connections open; reset");
        reset(client);
        return;
    }
    let opts = opts.clone();
    let stats = stats.clone();
    let cut = cut.clone();
    tokio::spawn(async move {
        let _ = client.set_nodelay(true);
        tokio::select! {
            r = relay(client, &opts, &stats) => match r {
                Ok(()) => debug!(%peer, "API relay: connection ended"),
                Err(e) => debug!(%peer, error = %e, "API relay: connection ended"),
            },
            _ = cut.cancelled() => {
                stats.cut.fetch_add(1, Ordering::SeqCst);
                debug!(%peer, "API relay: connection cut (the gateway stopped serving)");
            }
        }
        // Both sockets are dropped here: a FIN each way.
        stats.open.fetch_sub(1, Ordering::SeqCst);
    });
}

/// Closes with an RST (linger 0): the client learns at once, and no state lingers.
fn reset(client: TcpStream) {
    if let Ok(std) = client.into_std() {
        let fd = std::os::fd::AsFd::as_fd(&std);
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        let _ = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::Linger, &linger);
    }
}

async fn relay(client: TcpStream, opts: &RelayOptions, stats: &RelayStats) -> io::Result<()> {
    let upstream =
        match tokio::time::timeout(UPSTREAM_CONNECT, TcpStream::connect(opts.target)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                stats.upstream_failed.fetch_add(1, Ordering::SeqCst);
                return Err(e);
            }
            Err(_) => {
                stats.upstream_failed.fetch_add(1, Ordering::SeqCst);
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the gateway's API port did not accept in time",
                ));
            }
        };
    stats.accepted.fetch_add(1, Ordering::SeqCst);
    let _ = upstream.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let up = pump(&mut cr, &mut uw, &stats.bytes_to_gateway);
    let down = pump(&mut ur, &mut cw, &stats.bytes_to_clients);
    // The first side to finish ends the connection: the API is a conversation, and a
    // half-open relay would only hide a disconnect from one of the two.
    tokio::select! {
        r = up => r,
        r = down => r,
    }
}

async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    counter: &AtomicU64,
) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn blocks_parse_and_match() {
        let c: Cidr = "10.0.0.0/8".parse().expect("parses");
        assert!(c.contains(ip("10.200.3.4")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.1.1")), "v4-mapped v6 peers");
        let one: Cidr = "192.168.1.7".parse().expect("bare address");
        assert_eq!(one.to_string(), "192.168.1.7/32");
        assert!(one.contains(ip("192.168.1.7")));
        assert!(!one.contains(ip("192.168.1.8")));
        let all: Cidr = "0.0.0.0/0".parse().expect("everything");
        assert!(all.contains(ip("8.8.8.8")));
        assert!(
            !all.contains(ip("2001:db8::1")),
            "a v4 block never matches v6"
        );
        let v6: Cidr = "fd00::/8".parse().expect("ula");
        assert!(v6.contains(ip("fd12:3456::1")));
        assert!(!v6.contains(ip("fe80::1")));
    }

    #[test]
    fn bad_blocks_say_what_is_wrong() {
        let e = "10.1.2.3/8".parse::<Cidr>().expect_err("host bits");
        assert!(e.contains("did you mean \"10.0.0.0/8\""), "{e}");
        let e = "10.0.0.0/33".parse::<Cidr>().expect_err("prefix");
        assert!(e.contains("0 to 32"), "{e}");
        let e = "ten/8".parse::<Cidr>().expect_err("address");
        assert!(e.contains("not an address block"), "{e}");
    }
}

//! The TWS API handshake probe: the only signal ibwarden trusts to say "the gateway is ready".
//!
//! A probe opens one short-lived connection to the gateway's API port and walks the same
//! steps every API client does:
//!
//! 1. TCP connect (bounded by the deadline);
//! 2. `API\0` + framed `v100..176`; the gateway answers `<serverVersion>\0<time>\0`;
//! 3. START_API `71\0 2\0 <clientId>\0 \0`; the gateway pushes managedAccounts (15) and
//!    nextValidId (9) in either order, plus error/notice messages (4);
//! 4. reqCurrentTime `49\0 1\0`, answered by 49, proves the API dispatcher is not wedged.
//!
//! A port that accepts TCP but never answers is *down*: the kernel completes the accept on
//! its own. Asking for at most version 176 keeps the conversation on the text protocol
//! (ids as ASCII fields, §1.4), which every gateway still serves; if a gateway ever answers
//! above 200 or hangs up on that request, the text protocol has been dropped and we warn.
//!
//! [`probe`] is one such exchange on a fresh connection; the core asks for one per
//! `Action::Probe`. IB link notices (1100 lost, 1101/1102 restored) received during the
//! exchange set `link_lost` in the outcome.
//!
//! The frame decoder [`decode_frames`] is a pure function so it can be property-tested on
//! arbitrary bytes: it never panics and refuses absurd lengths.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tracing::{debug, info, warn};

pub use crate::core::types::ProbeOutcome;

/// Lowest server version we accept: 100 introduced length-prefixed messages.
pub const MIN_CLIENT_VERSION: u32 = 100;
/// Highest version we ask for. At most 200 keeps the text protocol; 176 is what the
/// reference probe was tested with (≥ 166 gives error messages a fixed layout).
pub const MAX_CLIENT_VERSION: u32 = 176;
/// Largest frame accepted, the same limit the official C++/Java clients use (`MAX_MSG_LEN`).
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// The last server version of the plain text protocol.
const LAST_TEXT_VERSION: u32 = 200;

/// Server version from which error messages drop their version field.
const ERROR_TIME: u32 = 194;
/// START_API carries the optional-capabilities field only from this server version on.
const OPTIONAL_CAPABILITIES: u32 = 72;

/// Incoming message ids used by the probe.
const MSG_ERROR: i32 = 4;
const MSG_NEXT_VALID_ID: i32 = 9;
const MSG_MANAGED_ACCOUNTS: i32 = 15;
const MSG_CURRENT_TIME: i32 = 49;

/// Notice codes that matter for readiness.
const CODE_CLIENT_ID_IN_USE: i32 = 326;
const CODE_LINK_LOST: i32 = 1100;
const CODE_LINK_RESTORED_DATA_LOST: i32 = 1101;
const CODE_LINK_RESTORED: i32 = 1102;

/// One length-prefixed message: its payload split into NUL-terminated ASCII fields.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Payload fields without their terminating NULs. Invalid UTF-8 is replaced, never
    /// rejected: the probe only reads ids and numbers, and a notice text is only logged.
    pub fields: Vec<String>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.fields).finish()
    }
}

impl Frame {
    /// Field `i` parsed as an integer, if present and numeric.
    fn int(&self, i: usize) -> Option<i64> {
        self.fields.get(i).and_then(|s| s.trim().parse().ok())
    }

    fn text(&self, i: usize) -> &str {
        self.fields.get(i).map(String::as_str).unwrap_or("")
    }
}

/// Why a byte stream cannot be decoded into frames. Recovery is impossible: the stream has
/// lost its framing, so the connection must be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than [`MAX_FRAME_LEN`] bytes.
    #[error("frame length {len} exceeds the limit of {max} bytes")]
    TooLong {
        /// Announced length.
        len: u32,
        /// The limit.
        max: usize,
    },
}

/// Decodes every complete frame at the start of `buf`.
///
/// Returns the frames and how many bytes they used; the rest (a partial frame) stays for
/// the next call. Never panics, whatever `buf` holds.
pub fn decode_frames(buf: &[u8]) -> Result<(Vec<Frame>, usize), FrameError> {
    let mut frames = Vec::new();
    let mut pos = 0usize;
    while let Some(header) = buf.get(pos..pos + 4) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if len as usize > MAX_FRAME_LEN {
            return Err(FrameError::TooLong {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        let start = pos + 4;
        let Some(payload) = buf.get(start..start + len as usize) else {
            break;
        };
        frames.push(Frame {
            fields: split_fields(payload),
        });
        pos = start + len as usize;
    }
    Ok((frames, pos))
}

/// Splits a payload on NUL. The payload normally ends with a NUL, which would leave an
/// empty last element; every client drops it, and so do we.
fn split_fields(payload: &[u8]) -> Vec<String> {
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    if body.is_empty() && payload.is_empty() {
        return Vec::new();
    }
    body.split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

/// Encodes one message: u32 big-endian length, then each field followed by a NUL.
///
/// Public so tests (and fake servers) speak exactly the probe's framing.
pub fn encode_frame<S: AsRef<str>>(fields: &[S]) -> Vec<u8> {
    let payload_len: usize = fields.iter().map(|f| f.as_ref().len() + 1).sum();
    let mut out = Vec::with_capacity(4 + payload_len);
    // The probe only encodes short, fixed messages, far below u32::MAX.
    out.extend_from_slice(&(payload_len as u32).to_be_bytes());
    for f in fields {
        out.extend_from_slice(f.as_ref().as_bytes());
        out.push(0);
    }
    out
}

/// The connect request: `API\0` (no length), then the framed version range.
pub fn handshake_request() -> Vec<u8> {
    let version = format!("v{MIN_CLIENT_VERSION}..{MAX_CLIENT_VERSION}");
    let mut out = b"API\0".to_vec();
    out.extend_from_slice(&(version.len() as u32).to_be_bytes());
    out.extend_from_slice(version.as_bytes());
    out
}

/// One error/notice message (id 4) decoded for the negotiated server version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Request id; -1 when not tied to a request.
    pub req_id: i64,
    /// Error or notice code (2104, 1100, 326, ...).
    pub code: i32,
    /// Text as sent by the gateway.
    pub message: String,
}

/// Decodes message 4 with the layout of `server_version`:
/// `< 166`: `4, 2, reqId, code, msg`; `166–193`: same plus advancedOrderRejectJson;
/// `≥ 194`: the version field is dropped: `4, reqId, code, msg, json, errorTime`.
fn decode_notice(frame: &Frame, server_version: u32) -> Option<Notice> {
    // The trailing advancedOrderRejectJson field (≥ 166) needs no handling: we stop at msg.
    let first = if server_version >= ERROR_TIME { 1 } else { 2 };
    Some(Notice {
        req_id: frame.int(first)?,
        code: i32::try_from(frame.int(first + 1)?).ok()?,
        message: frame.text(first + 2).to_owned(),
    })
}

/// Everything one probe learnt, for callers that want more than [`ProbeOutcome`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    /// The verdict.
    pub outcome: ProbeOutcome,
    /// Every error/notice message received, in order.
    pub notices: Vec<Notice>,
    /// The gateway's clock (unix seconds) from the currentTime reply, if it came.
    pub current_time: Option<i64>,
}

/// Runs one probe against `addr` with `client_id`; the whole exchange must finish within
/// `timeout`. Never panics and never hangs past the deadline.
pub async fn probe(addr: SocketAddr, client_id: i32, timeout: Duration) -> ProbeOutcome {
    probe_report(addr, client_id, timeout).await.outcome
}

/// Like [`probe`], returning the notices and the gateway time as well.
pub async fn probe_report(addr: SocketAddr, client_id: i32, timeout: Duration) -> ProbeReport {
    let deadline = Instant::now() + timeout;
    let mut session = Session::new(addr, client_id, timeout);
    let outcome = match session.run(deadline).await {
        Ok(outcome) => outcome,
        Err(reason) => ProbeOutcome::Down { reason },
    };
    match &outcome {
        ProbeOutcome::Up {
            server_version,
            link_lost,
            ..
        } => debug!(%addr, server_version, link_lost, "api probe up"),
        ProbeOutcome::Down { reason } => debug!(%addr, %reason, "api probe down"),
    }
    ProbeReport {
        outcome,
        notices: session.notices,
        current_time: session.current_time,
    }
}

/// The state of one probe connection. Errors are the `Down` reason text.
struct Session {
    addr: SocketAddr,
    client_id: i32,
    notices: Vec<Notice>,
    current_time: Option<i64>,
    server_version: u32,
    link_lost: bool,
    timeout: Duration,
}

/// Last negotiated version, so a change is logged at info once instead of on every probe.
static LAST_SERVER_VERSION: AtomicU32 = AtomicU32::new(0);

impl Session {
    fn new(addr: SocketAddr, client_id: i32, timeout: Duration) -> Session {
        Session {
            addr,
            client_id,
            notices: Vec::new(),
            current_time: None,
            server_version: 0,
            link_lost: false,
            timeout,
        }
    }

    /// One complete probe: start, one currentTime round trip, orderly close.
    async fn run(&mut self, deadline: Instant) -> Result<ProbeOutcome, String> {
        let (mut conn, accounts) = self.start(deadline).await?;
        self.request_current_time(&mut conn).await?;
        // Half-close so the gateway sees an orderly disconnect; bounded by the deadline.
        let _ = timeout_at(deadline, conn.stream.shutdown()).await;
        Ok(ProbeOutcome::Up {
            server_version: self.server_version,
            accounts,
            link_lost: self.link_lost,
        })
    }

    /// Connect, handshake, START_API, then wait for managed accounts and next valid id.
    async fn start(&mut self, deadline: Instant) -> Result<(Conn, Vec<String>), String> {
        let (addr, timeout) = (self.addr, self.timeout);
        let stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Err(format!("connect to {addr} timed out after {timeout:?}")),
            Ok(Err(e)) => return Err(format!("connect to {addr} failed: {e}")),
            Ok(Ok(s)) => s,
        };
        // Every message is written with one write() call, but also disable Nagle: a split
        // write cost ~43 ms per request in the reference tests.
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            stream,
            buf: Vec::with_capacity(4096),
            pending: std::collections::VecDeque::new(),
            deadline,
        };

        conn.write(&handshake_request())
            .await
            .map_err(|e| format!("sending the handshake failed: {e}"))?;
        let ack = match conn.next_frame().await {
            Ok(f) => f,
            Err(ReadError::Timeout) => {
                return Err(format!("no handshake reply within {timeout:?}"));
            }
            Err(ReadError::Closed) => {
                // Possibly the gateway no longer accepts text-protocol clients.
                warn!(
                    %addr,
                    requested = %format!("v{MIN_CLIENT_VERSION}..{MAX_CLIENT_VERSION}"),
                    "gateway closed the connection on the api handshake"
                );
                return Err("gateway closed the connection before the handshake reply".into());
            }
            Err(e) => return Err(format!("reading the handshake reply failed: {e}")),
        };
        self.server_version = self.check_ack(&ack, addr)?;

        let mut start_api = vec!["71".to_owned(), "2".to_owned(), self.client_id.to_string()];
        if self.server_version >= OPTIONAL_CAPABILITIES {
            start_api.push(String::new());
        }
        conn.write(&encode_frame(&start_api))
            .await
            .map_err(|e| format!("sending START_API failed: {e}"))?;

        let mut accounts: Option<Vec<String>> = None;
        let mut next_valid_id: Option<i64> = None;
        while accounts.is_none() || next_valid_id.is_none() {
            let frame = match conn.next_frame().await {
                Ok(f) => f,
                Err(e) => {
                    let missing = match (&accounts, &next_valid_id) {
                        (None, None) => "managed accounts and next valid id",
                        (None, Some(_)) => "managed accounts",
                        _ => "next valid id",
                    };
                    return Err(match e {
                        ReadError::Timeout => format!("no {missing} within {timeout:?}"),
                        ReadError::Closed => format!(
                            "gateway closed the connection before sending {missing}{}",
                            self.codes_suffix()
                        ),
                        e => format!("reading after START_API failed: {e}"),
                    });
                }
            };
            match frame.int(0) {
                Some(id) if id == i64::from(MSG_MANAGED_ACCOUNTS) => {
                    accounts = Some(
                        frame
                            .text(2)
                            .split(',')
                            .map(str::trim)
                            .filter(|a| !a.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    );
                }
                Some(id) if id == i64::from(MSG_NEXT_VALID_ID) => {
                    next_valid_id = Some(frame.int(2).unwrap_or(0));
                }
                _ => self.on_other(&frame)?,
            }
        }
        let accounts = accounts.unwrap_or_default();
        if accounts.is_empty() {
            // ib_async refuses this too; a logged-in gateway has one.
            return Err("gateway sent an empty managed accounts list".into());
        }
        Ok((conn, accounts))
    }

    /// reqCurrentTime and wait for the answer (until `conn.deadline`), handling notices.
    async fn request_current_time(&mut self, conn: &mut Conn) -> Result<i64, String> {
        let timeout = self.timeout;
        conn.write(&encode_frame(&["49", "1"]))
            .await
            .map_err(|e| format!("sending reqCurrentTime failed: {e}"))?;
        loop {
            let frame = match conn.next_frame().await {
                Ok(f) => f,
                Err(ReadError::Timeout) => {
                    return Err(format!("no current time reply within {timeout:?}"));
                }
                Err(ReadError::Closed) => {
                    return Err(format!(
                        "gateway closed the connection before the current time reply{}",
                        self.codes_suffix()
                    ));
                }
                Err(e) => return Err(format!("reading the current time reply failed: {e}")),
            };
            match frame.int(0) {
                Some(id) if id == i64::from(MSG_CURRENT_TIME) => {
                    let time = frame.int(2).unwrap_or(0);
                    self.current_time = Some(time);
                    return Ok(time);
                }
                _ => self.on_other(&frame)?,
            }
        }
    }

    /// Any message other than the one being waited for: notices are recorded, the rest
    /// (late replies, unsolicited data) is ignored.
    fn on_other(&mut self, frame: &Frame) -> Result<(), String> {
        match frame.int(0) {
            Some(id) if id == i64::from(MSG_ERROR) => self.on_notice(frame),
            _ => {
                debug!(fields = ?frame, "api probe ignored a message");
                Ok(())
            }
        }
    }

    /// Validates the connect ack and returns the negotiated server version.
    fn check_ack(&self, ack: &Frame, addr: SocketAddr) -> Result<u32, String> {
        let Some(version) = ack.int(0) else {
            return Err(format!(
                "handshake reply is not a server version: {:?}",
                truncate(ack.text(0), 40)
            ));
        };
        if version < 0 {
            // A negative version means "reconnect to host:port" (C++ processConnectAck).
            return Err(format!(
                "gateway redirected the connection to {:?}; redirects are not followed",
                truncate(ack.text(1), 80)
            ));
        }
        if version > i64::from(LAST_TEXT_VERSION) {
            // From 201 on, message ids are binary and more and more messages are protobuf
            //: we cannot read them, and the gateway ignored our maximum.
            warn!(
                %addr,
                server_version = version,
                "gateway answered above version 200: the text protocol may be gone"
            );
            return Err(format!(
                "gateway negotiated server version {version}, above the text protocol (200)"
            ));
        }
        let version = u32::try_from(version).unwrap_or(0);
        if version < MIN_CLIENT_VERSION {
            return Err(format!(
                "gateway negotiated server version {version}, below the minimum {MIN_CLIENT_VERSION}"
            ));
        }
        if version > MAX_CLIENT_VERSION {
            // Still text, and the error layouts up to 200 are known: go on, but say so.
            warn!(
                %addr,
                server_version = version,
                requested_max = MAX_CLIENT_VERSION,
                "gateway ignored the requested maximum api version"
            );
        }
        if LAST_SERVER_VERSION.swap(version, Ordering::Relaxed) != version {
            info!(%addr, server_version = version, connection_time = %truncate(ack.text(1), 60), "api server version negotiated");
        }
        Ok(version)
    }

    /// Records a notice; a duplicate client id ends the probe (the gateway closes anyway).
    fn on_notice(&mut self, frame: &Frame) -> Result<(), String> {
        let Some(notice) = decode_notice(frame, self.server_version) else {
            debug!(fields = ?frame, "api probe got an undecodable error message");
            return Ok(());
        };
        debug!(code = notice.code, req_id = notice.req_id, message = %notice.message, "api notice");
        match notice.code {
            CODE_LINK_LOST => self.link_lost = true,
            CODE_LINK_RESTORED_DATA_LOST | CODE_LINK_RESTORED => self.link_lost = false,
            _ => {}
        }
        let code = notice.code;
        self.notices.push(notice);
        if code == CODE_CLIENT_ID_IN_USE {
            return Err(format!(
                "client id in use: {} (error {CODE_CLIENT_ID_IN_USE})",
                self.client_id
            ));
        }
        Ok(())
    }

    fn codes_suffix(&self) -> String {
        if self.notices.is_empty() {
            String::new()
        } else {
            let codes: Vec<String> = self.notices.iter().map(|n| n.code.to_string()).collect();
            format!(" (codes {})", codes.join(","))
        }
    }
}

/// Cuts untrusted text for a reason string; it comes from the network.
fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("deadline passed")]
    Timeout,
    #[error("connection closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] FrameError),
}

/// A connection with a read buffer; every operation is bounded by the probe deadline.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    pending: std::collections::VecDeque<Frame>,
    deadline: Instant,
}

impl Conn {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), ReadError> {
        match timeout_at(self.deadline, self.stream.write_all(bytes)).await {
            Err(_) => Err(ReadError::Timeout),
            Ok(r) => Ok(r?),
        }
    }

    async fn next_frame(&mut self) -> Result<Frame, ReadError> {
        loop {
            if let Some(f) = self.pending.pop_front() {
                return Ok(f);
            }
            let (frames, used) = decode_frames(&self.buf)?;
            self.buf.drain(..used);
            if !frames.is_empty() {
                self.pending.extend(frames);
                continue;
            }
            let mut chunk = [0u8; 4096];
            let n = match timeout_at(self.deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(ReadError::Timeout),
                Ok(r) => r?,
            };
            if n == 0 {
                return Err(ReadError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_round_trips() {
        let mut bytes = encode_frame(&["15", "1", "DU1,DU2,"]);
        bytes.extend(encode_frame(&["9", "1", "1"]));
        bytes.extend_from_slice(&[0, 0, 0, 9, b'4']); // a partial frame stays
        let (frames, used) = decode_frames(&bytes).expect("valid");
        assert_eq!(used, bytes.len() - 5);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].fields, ["15", "1", "DU1,DU2,"]);
        assert_eq!(frames[1].fields, ["9", "1", "1"]);
    }

    #[test]
    fn handshake_bytes_match_the_reference_dump() {
        let expected: &[u8] = b"API\0\x00\x00\x00\x09v100..176";
        assert_eq!(handshake_request(), expected);
    }

    #[test]
    fn too_long_is_rejected_and_exact_limit_is_partial() {
        let big = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes();
        assert!(matches!(
            decode_frames(&big),
            Err(FrameError::TooLong { .. })
        ));
        let limit = (MAX_FRAME_LEN as u32).to_be_bytes();
        assert_eq!(decode_frames(&limit), Ok((vec![], 0)));
    }

    #[test]
    fn empty_payload_has_no_fields() {
        let (frames, used) = decode_frames(&[0, 0, 0, 0]).expect("valid");
        assert_eq!(used, 4);
        assert!(frames[0].fields.is_empty());
    }

    #[test]
    fn notice_layouts_by_version() {
        let old = Frame {
            fields: vec![
                "4".into(),
                "2".into(),
                "-1".into(),
                "2104".into(),
                "ok".into(),
            ],
        };
        let mid = Frame {
            fields: vec![
                "4".into(),
                "2".into(),
                "-1".into(),
                "1100".into(),
                "lost".into(),
                "".into(),
            ],
        };
        let new = Frame {
            fields: vec![
                "4".into(),
                "-1".into(),
                "1102".into(),
                "back".into(),
                "".into(),
                "1795502315185".into(),
            ],
        };
        let n = decode_notice(&old, 157).expect("decodes");
        assert_eq!((n.req_id, n.code, n.message.as_str()), (-1, 2104, "ok"));
        let n = decode_notice(&mid, 176).expect("decodes");
        assert_eq!((n.req_id, n.code, n.message.as_str()), (-1, 1100, "lost"));
        let n = decode_notice(&new, 200).expect("decodes");
        assert_eq!((n.req_id, n.code, n.message.as_str()), (-1, 1102, "back"));
        // The 194+ frame read with the old layout would mis-decode: the layouts differ.
        assert_ne!(decode_notice(&new, 176).map(|n| n.code), Some(1102));
    }
}

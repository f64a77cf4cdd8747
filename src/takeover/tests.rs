//! Unit tests of the parent module.

use super::*;
use tokio::io::duplex;

#[test]
fn passwords_are_eight_unambiguous_characters_and_differ() {
    let a = one_time_password().expect("pw");
    let b = one_time_password().expect("pw");
    for p in [&a, &b] {
        assert_eq!(p.expose().len(), PASSWORD_LEN);
        assert!(p.expose().bytes().all(|c| ALPHABET.contains(&c)));
    }
    assert_ne!(a.expose(), b.expose());
    assert_eq!(format!("{a:?}"), "[redacted]");
}

#[test]
fn argv_has_no_tcp_listener_and_no_password() {
    let d = DisplayTarget::existing(":7", Some(PathBuf::from("/x/Xauthority")));
    let args: Vec<String> = x11vnc_args(
        &d,
        Path::new("/s/takeover/vnc.sock"),
        Path::new("/s/takeover/passwd"),
        &TakeoverOptions::default(),
    )
    .into_iter()
    .map(|a| a.to_string_lossy().into_owned())
    .collect();
    let joined = args.join(" ");
    for want in [
        "-display :7",
        "-auth /x/Xauthority",
        "-unixsock /s/takeover/vnc.sock",
        "-rfbport 0",
        "-rfbportv6 -1",
        "-noipv6",
        "-passwdfile rm:/s/takeover/passwd",
        "-timeout 600",
    ] {
        assert!(joined.contains(want), "{want} in {joined}");
    }
    assert!(!joined.contains("-passwd "), "never the password itself");
}

#[test]
fn prepare_dir_is_private_and_clears_old_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("takeover");
    fs::create_dir(&d).expect("mkdir");
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(d.join("passwd"), "old\n").expect("write");
    prepare_dir(&d).expect("prepare");
    let mode = fs::metadata(&d).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(!d.join("passwd").exists());
}

/// Runs the relay between two in-memory pipes; `server` and `client` script the peers.
async fn relay(
    server_script: Vec<u8>,
    client_script: Vec<u8>,
) -> (io::Result<Handshake>, Vec<u8>, Vec<u8>) {
    let (mut c_near, mut c_far) = duplex(4096);
    let (mut s_near, mut s_far) = duplex(4096);
    c_far
        .write_all(&client_script)
        .await
        .expect("client script");
    s_far
        .write_all(&server_script)
        .await
        .expect("server script");
    // End of each script: the relay then sees end-of-file, as from a closed socket.
    c_far.shutdown().await.expect("shutdown");
    s_far.shutdown().await.expect("shutdown");
    let res = relay_handshake(&mut c_near, &mut s_near).await;
    drop(c_near);
    drop(s_near);
    let mut to_client = Vec::new();
    let mut to_server = Vec::new();
    c_far.read_to_end(&mut to_client).await.expect("read");
    s_far.read_to_end(&mut to_server).await.expect("read");
    (res, to_client, to_server)
}

fn v(minor: u8) -> Vec<u8> {
    format!("RFB 003.00{minor}\n").into_bytes()
}

#[tokio::test]
async fn rfb38_ok_is_authenticated_and_bytes_pass_unchanged() {
    let mut server = v(8);
    server.extend([1, 2]);
    server.extend([7u8; 16]);
    server.extend([0, 0, 0, 0]);
    let mut client = v(8);
    client.push(2);
    client.extend([9u8; 16]);
    let (res, to_client, to_server) = relay(server.clone(), client.clone()).await;
    assert_eq!(res.expect("relay"), Handshake::Authenticated);
    assert_eq!(to_client, server);
    assert_eq!(to_server, client);
}

#[tokio::test]
async fn rfb38_failure_forwards_the_reason() {
    let mut server = v(8);
    server.extend([1, 2]);
    server.extend([7u8; 16]);
    server.extend([0, 0, 0, 1, 0, 0, 0, 3]);
    server.extend(b"bad");
    let mut client = v(8);
    client.push(2);
    client.extend([9u8; 16]);
    let (res, to_client, _) = relay(server.clone(), client).await;
    assert_eq!(res.expect("relay"), Handshake::WrongPassword);
    assert_eq!(to_client, server);
}

#[tokio::test]
async fn rfb33_ok_and_failure() {
    let mut server = v(3);
    server.extend([0, 0, 0, 2]);
    server.extend([7u8; 16]);
    server.extend([0, 0, 0, 0]);
    let mut client = v(3);
    client.extend([9u8; 16]);
    let (res, _, _) = relay(server.clone(), client.clone()).await;
    assert_eq!(res.expect("relay"), Handshake::Authenticated);
    let n = server.len();
    server[n - 1] = 1;
    let (res, _, _) = relay(server, client).await;
    assert_eq!(res.expect("relay"), Handshake::WrongPassword);
}

#[tokio::test]
async fn security_type_none_is_never_passed_through() {
    let mut server = v(8);
    server.extend([2, 1, 2]);
    let mut client = v(8);
    client.push(1);
    let (res, _, _) = relay(server, client).await;
    assert_eq!(
        res.expect("relay"),
        Handshake::Other("not VNC authentication")
    );
}

#[tokio::test]
async fn a_type_not_offered_is_refused_and_early_close_is_an_error() {
    let mut server = v(8);
    server.extend([1, 2]);
    let mut client = v(8);
    client.push(5);
    let (res, _, _) = relay(server, client).await;
    assert_eq!(
        res.expect("relay"),
        Handshake::Other("the viewer chose a type not offered")
    );
    let (res, _, _) = relay(v(8), Vec::new()).await;
    assert!(res.is_err());
}

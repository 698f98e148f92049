// The hex fixtures are written as a little-endian machine (x86, arm64) prints them.

use super::*;

fn v4(a: &str) -> IpAddr {
    a.parse().unwrap()
}

#[test]
fn ipv4_listen_and_established() {
    let l = parse_inet_line(
        Proto::Tcp,
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5001 1 0000000000000000 100 0 0 10 0",
    )
    .unwrap();
    assert_eq!((l.local, l.local_port), (v4("127.0.0.1"), 8080));
    assert_eq!((l.remote, l.remote_port), (v4("0.0.0.0"), 0));
    assert_eq!(l.state_name(), "LISTEN");
    assert_eq!((l.uid, l.inode), (1000, 5001));

    let e = parse_inet_line(
        Proto::Tcp,
        "   1: 0F02000A:C350 2E01A8C0:01BB 01 00000000:00000000 02:000A7D2C 00000000     0        0 5002 2 0000000000000000 20 4 30 10 -1",
    )
    .unwrap();
    assert_eq!((e.local, e.local_port), (v4("10.0.2.15"), 50000));
    assert_eq!((e.remote, e.remote_port), (v4("192.168.1.46"), 443));
    assert_eq!(e.state_name(), "ESTABLISHED");
}

#[test]
fn ipv6_words_are_native_endian() {
    let s = parse_inet_line(
        Proto::Tcp6,
        "   0: 00000000000000000000000001000000:0016 B80D0120000000000000000005000000:D431 01 00000000:00000000 00:00000000 00000000     0        0 6001 1 0000000000000000 20 4 1 10 -1",
    )
    .unwrap();
    assert_eq!(s.local.to_string(), "::1");
    assert_eq!(s.local_port, 22);
    assert_eq!(s.remote.to_string(), "2001:db8::5");
    assert_eq!(s.remote_port, 54321);

    let mapped = parse_inet_line(
        Proto::Tcp6,
        "   1: 0000000000000000FFFF00000F02000A:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6002 1",
    )
    .unwrap();
    assert_eq!(mapped.local.to_string(), "::ffff:10.0.2.15");
}

#[test]
fn state_names_depend_on_the_protocol() {
    let sock = |proto, state| InetSocket {
        proto,
        local: v4("0.0.0.0"),
        local_port: 0,
        remote: v4("0.0.0.0"),
        remote_port: 0,
        state,
        uid: 0,
        inode: 0,
    };
    assert_eq!(sock(Proto::Udp, 7).state_name(), "UNCONN");
    assert_eq!(sock(Proto::Udp6, 1).state_name(), "ESTABLISHED");
    assert_eq!(sock(Proto::Tcp, 7).state_name(), "CLOSE");
    assert_eq!(sock(Proto::Tcp6, 6).state_name(), "TIME_WAIT");
    assert_eq!(sock(Proto::Udp, 0x0A).state_name(), "UNKNOWN_0A");
}

#[test]
fn malformed_ip_lines_are_rejected() {
    let rest = " 0A 00000000:00000000 00:00000000 00000000     0        0 1 1";
    for bad in [
        "",
        "garbage",
        "   0: 0100007F:1F90",
        // Not hex, or a sign that from_str_radix would take.
        &format!("   0: ZZ00007F:1F90 00000000:0000{rest}"),
        &format!("   0: +100007F:1F90 00000000:0000{rest}"),
        // An IPv6 address in the IPv4 table, a port of five digits, no port.
        &format!("   0: 00000000000000000000000001000000:0016 00000000:0000{rest}"),
        &format!("   0: 0100007F:11F90 00000000:0000{rest}"),
        &format!("   0: 0100007F 00000000:0000{rest}"),
        // No slot number, and a non-numeric inode.
        &format!("0100007F:1F90 00000000:0000{rest}"),
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 x",
    ] {
        assert_eq!(parse_inet_line(Proto::Tcp, bad), None, "{bad}");
    }
}

#[test]
fn unix_lines() {
    let listen =
        parse_unix_line("0000000000000000: 00000002 00000000 00010000 0001 01  8001 /run/app.sock")
            .unwrap();
    assert_eq!(listen.path.as_deref(), Some("/run/app.sock"));
    assert_eq!(listen.state_name(), "LISTEN");
    assert_eq!(listen.type_name(), "stream");
    assert_eq!(listen.address_kind(), "path");
    assert_eq!(listen.inode, 8001);

    let unnamed =
        parse_unix_line("0000000000000000: 00000003 00000000 00000000 0001 03  8002").unwrap();
    assert_eq!(unnamed.path, None);
    assert_eq!(unnamed.state_name(), "ESTABLISHED");
    assert_eq!(unnamed.address_kind(), "unnamed");

    let spaced = parse_unix_line(
        "0000000000000000: 00000002 00000000 00000000 0005 01 123456 /run/with space.sock",
    )
    .unwrap();
    assert_eq!(spaced.path.as_deref(), Some("/run/with space.sock"));
    assert_eq!(spaced.type_name(), "seqpacket");
    assert_eq!(spaced.state_name(), "UNCONN");

    let abs = parse_unix_line(
        "0000000000000000: 00000002 00000000 00000000 0002 01  8003 @/tmp/.X11-unix/X0",
    )
    .unwrap();
    assert_eq!(abs.address_kind(), "abstract");
    assert_eq!(abs.type_name(), "dgram");

    for bad in [
        "",
        "garbage",
        "0000000000000000: 00000002 00000000 00010000 0001 01",
        "0000000000000000 00000002 00000000 00010000 0001 01 8001",
        "0000000000000000: 00000002 00000000 0001000G 0001 01 8001",
        "0000000000000000: 00000002 00000000 00010000 0001 01 -1",
    ] {
        assert_eq!(parse_unix_line(bad), None, "{bad}");
    }
}

#[test]
fn headers() {
    assert!(is_header(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
    ));
    assert!(is_header(
        "Num       RefCount Protocol Flags    Type St Inode Path"
    ));
    assert!(!is_header("   0: 0100007F:1F90 00000000:0000 0A"));
}

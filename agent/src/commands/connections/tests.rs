// Fixture tables are written as a little-endian machine (x86, arm64) prints them.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::{MAX_SOCKETS, scan};
use crate::commands::testutil::run;
use crate::commands::{CommandContext, CommandError};
use crate::model::Status;
use crate::sys::procfs::ProcRoot;
use crate::sys::users::Names;

const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5001 1 0000000000000000 100 0 0 10 0
   1: 0F02000A:C350 2E01A8C0:01BB 01 00000000:00000000 02:000A7D2C 00000000     0        0 5002 2 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:D431 06 00000000:00000000 03:00000D6F 00000000     0        0 0 3 0000000000000000
";

const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6001 1 0000000000000000 100 0 0 10 0
";

const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 7001 2 0000000000000000 0
  200: 0F02000A:A1B2 08080808:0035 01 00000000:00000000 00:00000000 00000000  4242        0 7002 2 0000000000000000 0
";

const UNIX: &str = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01  8001 /run/app.sock
0000000000000000: 00000003 00000000 00000000 0001 03  8002
0000000000000000: 00000002 00000000 00000000 0002 01  8003 @/tmp/.X11-unix/X0
";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A process with `comm` and fd links `fds` (number, target).
fn process(root: &Path, pid: u32, comm: &str, fds: &[(u32, &str)]) {
    let dir = root.join(pid.to_string());
    write(&dir.join("comm"), &format!("{comm}\n"));
    std::fs::create_dir_all(dir.join("fd")).unwrap();
    for (n, target) in fds {
        symlink(target, dir.join("fd").join(n.to_string())).unwrap();
    }
}

/// The fixture tree: four tables (udp6 missing) and processes sharing, duplicating and hiding
/// sockets.
fn fixture(root: &Path) {
    write(&root.join("net/tcp"), TCP);
    write(&root.join("net/tcp6"), TCP6);
    write(&root.join("net/udp"), UDP);
    write(&root.join("net/unix"), UNIX);
    process(
        root,
        100,
        "nginx",
        &[
            (3, "socket:[5001]"),
            (4, "socket:[8001]"),
            (5, "/dev/null"),
            (6, "pipe:[999]"),
            // A socket that is in no table (another namespace): ignored.
            (7, "socket:[424242]"),
        ],
    );
    process(root, 200, "nginx worker", &[(3, "socket:[5001]")]);
    // The same socket on two fds: one pid entry.
    process(
        root,
        300,
        "curl",
        &[
            (0, "socket:[5002]"),
            (1, "socket:[5002]"),
            (2, "socket:[7002]"),
        ],
    );
    // Open files that cannot be listed: its fd "directory" is a file.
    write(&root.join("400/comm"), "secretd\n");
    write(&root.join("400/fd"), "");
    // Vanished mid-scan: the directory is there, its files are not.
    std::fs::create_dir_all(root.join("500")).unwrap();
}

fn ctx() -> CommandContext {
    CommandContext::new("/", Duration::from_secs(10))
}

fn names() -> Names {
    Names::parse(
        "root:x:0:0::/root:/bin/sh\nwww:x:1000:1000::/:/bin/sh\n",
        "",
    )
}

fn scan_fixture(root: &Path) -> Value {
    scan(&ctx(), &ProcRoot::new(root), &names(), MAX_SOCKETS)
        .unwrap()
        .value
}

#[test]
fn fixture_tables_decode_and_map_owners() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    let out = scan_fixture(tmp.path());

    let expected = json!([
        {"protocol": "tcp", "state": "LISTEN", "local_address": "127.0.0.1", "local_port": 8080,
         "remote_address": "0.0.0.0", "remote_port": 0, "inode": 5001, "uid": 1000, "user": "www",
         "pid": 100, "process": "nginx", "pids": [100, 200]},
        {"protocol": "tcp", "state": "TIME_WAIT", "local_address": "127.0.0.1", "local_port": 8080,
         "remote_address": "127.0.0.1", "remote_port": 54321, "inode": 0, "uid": 0, "user": "root",
         "pid": null, "process": null, "pids": []},
        {"protocol": "tcp", "state": "ESTABLISHED", "local_address": "10.0.2.15", "local_port": 50000,
         "remote_address": "192.168.1.46", "remote_port": 443, "inode": 5002, "uid": 0, "user": "root",
         "pid": 300, "process": "curl", "pids": [300]},
        {"protocol": "tcp6", "state": "LISTEN", "local_address": "::1", "local_port": 22,
         "remote_address": "::", "remote_port": 0, "inode": 6001, "uid": 0, "user": "root",
         "pid": null, "process": null, "pids": []},
        {"protocol": "udp", "state": "UNCONN", "local_address": "0.0.0.0", "local_port": 68,
         "remote_address": "0.0.0.0", "remote_port": 0, "inode": 7001, "uid": 0, "user": "root",
         "pid": null, "process": null, "pids": []},
        {"protocol": "udp", "state": "ESTABLISHED", "local_address": "10.0.2.15", "local_port": 41394,
         "remote_address": "8.8.8.8", "remote_port": 53, "inode": 7002, "uid": 4242, "user": "4242",
         "pid": 300, "process": "curl", "pids": [300]},
    ]);
    assert_eq!(out["connections"], expected, "{out:#}");

    let unix = json!([
        {"type": "stream", "state": "LISTEN", "path": "/run/app.sock", "address_kind": "path",
         "inode": 8001, "pid": 100, "process": "nginx", "pids": [100]},
        {"type": "dgram", "state": "UNCONN", "path": "@/tmp/.X11-unix/X0", "address_kind": "abstract",
         "inode": 8003, "pid": null, "process": null, "pids": []},
        {"type": "stream", "state": "ESTABLISHED", "path": null, "address_kind": "unnamed",
         "inode": 8002, "pid": null, "process": null, "pids": []},
    ]);
    assert_eq!(out["unix"], unix, "{out:#}");
    assert_eq!(out["truncated"], false);
    assert_eq!(out["more"], 0);

    let errors: Vec<&str> = out["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].contains("net/udp6' is missing"), "{errors:#?}");
    // 6001, 7001, 8002, 8003 have inodes and no owner; the TIME_WAIT socket has no inode.
    assert!(
        errors[1].starts_with(
            "could not list the open files of 1 process (cannot list the open files of '"
        ) && errors[1].contains("/400/fd'")
            && errors[1]
                .ends_with("; 4 sockets could not be mapped to a process and show no owner"),
        "{errors:#?}"
    );
}

#[test]
fn malformed_lines_are_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fixture(root);
    let tcp = format!(
        "{TCP}garbage\n   3: ZZ00007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1\n\n   4: 0100007F:1F90\n   5: 00000000000000000000000001000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 9\n"
    );
    write(&root.join("net/tcp"), &tcp);
    let mut unix = UNIX.as_bytes().to_vec();
    unix.extend_from_slice(b"\xff\xfe not a socket\n");
    // A path that is not UTF-8 is kept, lossily.
    unix.extend_from_slice(
        b"0000000000000000: 00000002 00000000 00000000 0001 01 8009 /tmp/\xff.sock\n",
    );
    std::fs::write(root.join("net/unix"), unix).unwrap();

    let out = scan_fixture(root);
    assert_eq!(out["connections"].as_array().unwrap().len(), 6, "{out:#}");
    assert_eq!(out["unix"].as_array().unwrap().len(), 4, "{out:#}");
    let lossy = out["unix"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["inode"] == 8009)
        .unwrap();
    assert_eq!(lossy["path"], "/tmp/\u{fffd}.sock");
    let errors = out["errors"].as_array().unwrap();
    let tcp_error = errors
        .iter()
        .filter_map(Value::as_str)
        .find(|e| e.contains("net/tcp'"))
        .unwrap();
    assert!(
        tcp_error.starts_with("skipped 4 malformed lines of '")
            && tcp_error.ends_with("(first, line 5: 'garbage')"),
        "{tcp_error}"
    );
    let unix_error = errors
        .iter()
        .filter_map(Value::as_str)
        .find(|e| e.contains("net/unix'"))
        .unwrap();
    assert!(
        unix_error.starts_with("skipped 1 malformed line of '"),
        "{unix_error}"
    );
}

#[test]
fn lists_are_capped_and_the_rest_counted() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    let out = scan(&ctx(), &ProcRoot::new(tmp.path()), &names(), 2)
        .unwrap()
        .value;
    // tcp keeps 2 of 3; the tables after it keep 2 each.
    assert_eq!(out["connections"].as_array().unwrap().len(), 2 + 1 + 2);
    assert_eq!(out["unix"].as_array().unwrap().len(), 2);
    assert_eq!(out["truncated"], true);
    assert_eq!(out["more"], 2);
    let errors = out["errors"].to_string();
    assert!(
        errors.contains("1 more tcp/udp sockets not listed: the limit is 2 per list"),
        "{errors}"
    );
    assert!(
        errors.contains("1 more unix sockets not listed"),
        "{errors}"
    );
}

#[test]
fn no_tables_at_all_is_a_failure_that_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let err = scan(&ctx(), &ProcRoot::new(tmp.path()), &names(), MAX_SOCKETS).unwrap_err();
    let CommandError::Failed(msg) = err else {
        panic!("{err:?}")
    };
    assert!(
        msg.starts_with("cannot read any socket table under '"),
        "{msg}"
    );
    assert!(msg.ends_with("is procfs mounted?"), "{msg}");
}

#[test]
fn a_cancelled_scan_returns_what_it_read() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    let ctx = ctx();
    ctx.cancel();
    let err = scan(&ctx, &ProcRoot::new(tmp.path()), &names(), MAX_SOCKETS).unwrap_err();
    let CommandError::Interrupted { partial: Some(p) } = err else {
        panic!("{err:?}")
    };
    // Stopped after the first table, before owners were looked up.
    assert_eq!(p["connections"].as_array().unwrap().len(), 3, "{p:#}");
    assert_eq!(p["connections"][0]["pid"], Value::Null);
}

fn own_comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim_end()
        .to_owned()
}

#[tokio::test]
async fn live_lists_this_process_sockets() {
    use std::net::{TcpListener, TcpStream, UdpSocket};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client_port = client.local_addr().unwrap().port();
    let (_server, _) = listener.accept().unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("live.sock");
    let _unix = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();

    let o = run("connections", "/", &[]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    let me = std::process::id();
    let comm = own_comm();
    let find = |proto: &str, port: u16, state: &str| {
        out["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["protocol"] == proto && c["local_port"] == port && c["state"] == state)
            .cloned()
            .unwrap_or_else(|| panic!("no {proto} {port} {state} in {out:#}"))
    };
    let listen = find("tcp", port, "LISTEN");
    assert_eq!(listen["local_address"], "127.0.0.1");
    assert_eq!(listen["pid"], me);
    assert_eq!(listen["process"], comm.as_str());
    assert!(listen["pids"].as_array().unwrap().contains(&json!(me)));

    let established = find("tcp", client_port, "ESTABLISHED");
    assert_eq!(established["remote_address"], "127.0.0.1");
    assert_eq!(established["remote_port"], port);
    assert_eq!(established["pid"], me);

    let udp = find("udp", udp_port, "UNCONN");
    assert_eq!(udp["pid"], me);

    let unix = out["unix"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["path"] == sock_path.to_str().unwrap())
        .unwrap_or_else(|| panic!("no unix socket {sock_path:?}"));
    assert_eq!(unix["state"], "LISTEN");
    assert_eq!(unix["type"], "stream");
    assert_eq!(unix["pid"], me);
    assert_eq!(unix["process"], comm.as_str());
}

#[tokio::test]
async fn rejects_parameters() {
    let o = run("connections", "/", &["-all"]).await;
    assert_eq!(o.status, Status::InvalidArguments);
    assert!(o.error.contains("usage: connections"), "{}", o.error);
}

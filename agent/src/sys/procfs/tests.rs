use super::*;

#[test]
fn stat_with_awkward_comm() {
    let line = "4242 (my (evil) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 3 0 98765 1000 200 18446744073709551615";
    let s = parse_stat(line).unwrap();
    assert_eq!(s.comm, "my (evil) prog");
    assert_eq!(s.state, 'S');
    assert_eq!(s.ppid, 1);
    assert_eq!((s.utime, s.stime), (150, 25));
    assert_eq!(s.num_threads, 3);
    assert_eq!(s.starttime, 98765);
    assert_eq!(parse_stat("garbage"), None);
}

#[test]
fn status_fields() {
    let s = parse_status("Name:\tbash\nUid:\t1000\t1000\t1000\t1000\nVmRSS:\t    2048 kB\n");
    assert_eq!(s.uid, Some(1000));
    assert_eq!(s.rss_bytes, Some(2048 * 1024));
    // Kernel threads have no VmRSS line.
    assert_eq!(parse_status("Uid:\t0\t0\t0\t0\n").rss_bytes, None);
}

#[test]
fn cmdline_splits_on_nul() {
    assert_eq!(
        parse_cmdline(b"/bin/sh\0-c\0echo hi\0"),
        ["/bin/sh", "-c", "echo hi"]
    );
    assert!(parse_cmdline(b"").is_empty());
    assert_eq!(parse_cmdline(b"a\xff\0"), ["a\u{fffd}"]);
}

#[test]
fn auxv_lookup() {
    let mut v = Vec::new();
    for (k, val) in [(6usize, 4096usize), (17, 100), (0, 0)] {
        v.extend_from_slice(&k.to_ne_bytes());
        v.extend_from_slice(&val.to_ne_bytes());
    }
    assert_eq!(auxv_value(&v, 17), Some(100));
    assert_eq!(auxv_value(&v, 99), None);
}

#[test]
fn live_root_reads() {
    let root = ProcRoot::default();
    assert!(root.boot_time().unwrap() > 1_000_000_000);
    assert!(root.clock_ticks() > 0);
    assert!(root.pids().unwrap().contains(&std::process::id()));
}

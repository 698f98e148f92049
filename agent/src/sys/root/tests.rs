use std::os::unix::fs::symlink;
use std::path::Path;

use super::*;

#[test]
fn absolute_symlinks_stay_inside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    std::fs::create_dir_all(base.join("usr/lib/systemd/system")).unwrap();
    std::fs::write(base.join("usr/lib/systemd/system/a.service"), "[Unit]\n").unwrap();
    // Merged /usr, with an absolute link as some images have it.
    symlink("/usr/lib", base.join("lib")).unwrap();
    std::fs::create_dir_all(base.join("etc/systemd/system")).unwrap();
    symlink(
        "/lib/systemd/system/a.service",
        base.join("etc/systemd/system/b.service"),
    )
    .unwrap();
    symlink("../../../../../../../../etc", base.join("escape")).unwrap();

    let root = SystemRoot::new(base);
    assert!(!root.is_live());
    assert_eq!(
        root.resolve(Path::new("/etc/systemd/system/b.service"))
            .unwrap(),
        base.join("usr/lib/systemd/system/a.service")
    );
    assert_eq!(
        root.read_text(Path::new("/lib/systemd/system/a.service"), 100)
            .unwrap(),
        "[Unit]\n"
    );
    // `..` cannot climb out of the root, lexically or through a link.
    assert_eq!(root.host(Path::new("/../../etc")), base.join("etc"));
    assert_eq!(
        root.resolve(Path::new("/escape/systemd")).unwrap(),
        base.join("etc/systemd")
    );
    // lstat and readlink see the link itself.
    assert!(
        root.symlink_metadata(Path::new("/etc/systemd/system/b.service"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        root.read_link(Path::new("/etc/systemd/system/b.service"))
            .unwrap(),
        Path::new("/lib/systemd/system/a.service")
    );
    // Missing components resolve lexically and fail on read as "not found".
    let e = root.read(Path::new("/nope/../etc/x"), 100).unwrap_err();
    assert!(is_missing(&e), "{e}");
}

#[test]
fn symlink_loops_and_fifos_are_errors_not_hangs() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    symlink("/a", base.join("b")).unwrap();
    symlink("/b", base.join("a")).unwrap();
    crate::commands::testutil::mkfifo(&base.join("fifo"));
    std::fs::write(base.join("big"), vec![b'x'; 200]).unwrap();
    let root = SystemRoot::new(base);
    assert!(root.read(Path::new("/a"), 100).is_err());
    let e = root.read(Path::new("/fifo"), 100).unwrap_err();
    assert!(e.to_string().contains("fifo"), "{e}");
    let e = root.read(Path::new("/big"), 100).unwrap_err();
    assert!(e.to_string().contains("200 bytes"), "{e}");
}

#[test]
fn accounts_come_from_the_roots_passwd() {
    let tmp = tempfile::tempdir().unwrap();
    let root = SystemRoot::new(tmp.path());
    assert_eq!(root.accounts().unwrap(), Vec::new());
    std::fs::create_dir(tmp.path().join("etc")).unwrap();
    std::fs::write(
        tmp.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\n# c\nbroken:x\nalice:x:1000:1000:Alice:/home/alice:/bin/zsh\n",
    )
    .unwrap();
    let accounts = root.accounts().unwrap();
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[1].name, "alice");
    assert_eq!(accounts[1].uid, 1000);
    assert_eq!(accounts[1].home, Path::new("/home/alice"));
    assert_eq!(accounts[1].shell, "/bin/zsh");
    assert_eq!(root.names().user(1000), Some("alice"));
    assert!(SystemRoot::live().is_live());
}

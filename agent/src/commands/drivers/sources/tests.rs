use super::*;

#[test]
fn proc_modules_lines() {
    let m = parse_proc_modules_line(
        "nf_nat 57344 2 xt_MASQUERADE,nft_chain_nat, Live 0xffffffffc0b2d000",
    )
    .unwrap();
    assert_eq!(
        m,
        Module {
            name: "nf_nat".into(),
            size: Some(57344),
            refcount: Some(2),
            used_by: vec!["xt_MASQUERADE".into(), "nft_chain_nat".into()],
            state: Some("Live".into()),
            builtin: false,
            taint: None,
        }
    );
    let tainted = parse_proc_modules_line(
        "vboxdrv 565248 2 vboxnetadp,vboxnetflt, Live 0x0000000000000000 (OE)",
    )
    .unwrap();
    assert_eq!(tainted.taint.as_deref(), Some("OE"));
    // A kernel that cannot unload modules, and a module without an exit function.
    let fixed = parse_proc_modules_line("ext4 737280 - - Live 0x0").unwrap();
    assert_eq!((fixed.refcount, fixed.used_by.len()), (None, 0));
    let permanent = parse_proc_modules_line("ip_tables 32768 0 [permanent], Loading 0x0").unwrap();
    assert!(permanent.used_by.is_empty());
    assert_eq!(permanent.state.as_deref(), Some("Loading"));
    // The address is optional here: older kernels and some fixtures leave it out.
    assert!(parse_proc_modules_line("loop 32768 0 - Unloading").is_some());

    for bad in [
        "",
        "garbage",
        "garbage line here",
        "nf_nat x 2 - Live 0x0",
        "nf_nat 57344 two - Live 0x0",
        "nf_nat 57344 2 - ",
        "nf_nat 57344 2 a/b, Live 0x0",
        "nf/nat 57344 2 - Live 0x0",
        "nf_nat 57344 2 - 0x0",
    ] {
        assert_eq!(parse_proc_modules_line(bad), None, "{bad}");
    }
}

#[test]
fn module_names_from_files() {
    assert_eq!(
        module_name("kernel/net/netfilter/nf_nat.ko.zst").as_deref(),
        Some("nf_nat")
    );
    assert_eq!(
        module_name("updates/dkms/vbox-drv.ko").as_deref(),
        Some("vbox_drv")
    );
    assert_eq!(module_name("/abs/x.ko.xz").as_deref(), Some("x"));
    assert_eq!(module_name("kernel/readme.txt"), None);
    assert_eq!(module_name(".ko"), None);
}

#[test]
fn modules_dep_lines() {
    let dep = parse_modules_dep(
        "kernel/net/netfilter/nf_nat.ko.zst: kernel/net/netfilter/nf_conntrack.ko.zst kernel/lib/libcrc32c.ko\n\
         kernel/fs/fuse/fuse.ko:\n\
         \n\
         not a dep line\n\
         kernel/x.ko: not-a-module\n\
         other/fuse.ko:\n",
    );
    let nat = &dep.by_name["nf_nat"];
    assert_eq!(nat.file, "kernel/net/netfilter/nf_nat.ko.zst");
    assert_eq!(nat.depends, ["nf_conntrack", "libcrc32c"]);
    assert_eq!(dep.by_name["fuse"].file, "kernel/fs/fuse/fuse.ko");
    assert!(dep.by_name["fuse"].depends.is_empty());
    assert_eq!(dep.malformed, 2);
    assert_eq!(
        dep.first_malformed.as_deref(),
        Some("line 4: 'not a dep line'")
    );
}

#[test]
fn sys_module_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("nf_nat/holders/xt_MASQUERADE")).unwrap();
    std::fs::create_dir_all(d.join("nf_nat/holders/nft_chain_nat")).unwrap();
    std::fs::write(d.join("nf_nat/initstate"), "live\n").unwrap();
    std::fs::write(d.join("nf_nat/refcnt"), "2\n").unwrap();
    std::fs::write(d.join("nf_nat/coresize"), "57344\n").unwrap();
    std::fs::write(d.join("nf_nat/taint"), "\n").unwrap();
    let mut errors = FileErrors::default();
    let m = read_sys_module(&d.join("nf_nat"), "nf_nat", &mut errors);
    assert_eq!(
        m,
        Module {
            name: "nf_nat".into(),
            size: Some(57344),
            refcount: Some(2),
            used_by: vec!["nft_chain_nat".into(), "xt_MASQUERADE".into()],
            state: Some("Live".into()),
            builtin: false,
            taint: None,
        }
    );

    std::fs::create_dir_all(d.join("vt/parameters")).unwrap();
    let vt = read_sys_module(&d.join("vt"), "vt", &mut errors);
    assert!(vt.builtin);
    assert_eq!((vt.state, vt.refcount, vt.size), (None, None, None));
    assert_eq!(errors.count, 0);

    std::fs::create_dir_all(d.join("odd")).unwrap();
    std::fs::write(d.join("odd/initstate"), "going\n").unwrap();
    std::fs::write(d.join("odd/refcnt"), "many\n").unwrap();
    std::fs::write(d.join("odd/taint"), "OE\n").unwrap();
    // A holders "directory" that cannot be listed.
    std::fs::write(d.join("odd/holders"), "").unwrap();
    let odd = read_sys_module(&d.join("odd"), "odd", &mut errors);
    assert_eq!(odd.state.as_deref(), Some("Unloading"));
    assert_eq!(odd.refcount, None);
    assert!(!odd.builtin);
    assert_eq!(odd.taint.as_deref(), Some("OE"));
    assert_eq!(errors.count, 2);
    assert!(
        errors
            .first
            .as_deref()
            .unwrap()
            .ends_with("odd/refcnt' holds 'many', not a number"),
        "{errors:?}"
    );
}

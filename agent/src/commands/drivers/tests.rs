use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::{MAX_MODULES, Roots, scan};
use crate::commands::CommandContext;
use crate::commands::testutil::run;
use crate::model::Status;
use crate::sys::procfs::ProcRoot;

const PROC_MODULES: &str = "\
nf_nat 57344 2 xt_MASQUERADE,nft_chain_nat, Live 0xffffffffc0b2d000
xt_MASQUERADE 16384 1 - Live 0xffffffffc0b28000
nft_chain_nat 16384 0 - Loading 0x0000000000000000
vboxdrv 565248 2 vboxnetadp,vboxnetflt, Live 0xffffffffc0a00000 (OE)
garbage line
nolock 16384 - - Unloading 0x0
";

const MODULES_DEP: &str = "\
kernel/net/netfilter/nf_nat.ko.zst: kernel/net/netfilter/nf_conntrack.ko.zst kernel/lib/libcrc32c.ko
kernel/net/netfilter/xt_MASQUERADE.ko: kernel/net/netfilter/nf_nat.ko.zst
updates/dkms/vboxdrv.ko:
nolock.ko:
not a dep line
";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn roots(base: &Path) -> Roots {
    Roots {
        proc: ProcRoot::new(base.join("proc")),
        sys: base.join("sys"),
        lib_modules: base.join("lib/modules"),
    }
}

fn scan_at(base: &Path, max: usize) -> Value {
    let ctx = CommandContext::new("/", Duration::from_secs(10));
    scan(&ctx, &roots(base), max).unwrap().value
}

fn release_and_dep(base: &Path) {
    write(&base.join("proc/sys/kernel/osrelease"), "6.1.0-test\n");
    write(
        &base.join("lib/modules/6.1.0-test/modules.dep"),
        MODULES_DEP,
    );
}

/// A /sys/module tree: two loadable modules, one loading, and a built-in one.
fn sys_tree(base: &Path) {
    let m = base.join("sys/module");
    write(&m.join("nf_nat/initstate"), "live\n");
    write(&m.join("nf_nat/refcnt"), "1\n");
    write(&m.join("nf_nat/coresize"), "57344\n");
    write(&m.join("nf_nat/taint"), "\n");
    std::fs::create_dir_all(m.join("nf_nat/holders/xt_MASQUERADE")).unwrap();
    write(&m.join("xt_MASQUERADE/initstate"), "live\n");
    write(&m.join("xt_MASQUERADE/refcnt"), "0\n");
    write(&m.join("xt_MASQUERADE/coresize"), "16384\n");
    std::fs::create_dir_all(m.join("xt_MASQUERADE/holders")).unwrap();
    write(&m.join("unknown_mod/initstate"), "coming\n");
    write(&m.join("unknown_mod/refcnt"), "0\n");
    write(&m.join("vt/parameters/default_utf8"), "1\n");
    // Not a module directory.
    write(&m.join("stray-file"), "");
}

#[test]
fn proc_modules_with_files_and_dependencies() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    write(&base.join("proc/modules"), PROC_MODULES);
    release_and_dep(base);
    // /sys/module is there too, and ignored when /proc/modules can be read.
    sys_tree(base);
    let out = scan_at(base, MAX_MODULES);
    let lib = base.join("lib/modules/6.1.0-test");
    let path = |rel: &str| lib.join(rel).display().to_string();

    assert_eq!(out["source"], "/proc/modules");
    assert_eq!(out["kernel_release"], "6.1.0-test");
    assert_eq!(
        out["modules"],
        json!([
            {"name": "nf_nat", "size": 57344, "refcount": 2,
             "used_by": ["xt_MASQUERADE", "nft_chain_nat"], "depends_on": ["nf_conntrack", "libcrc32c"],
             "state": "Live", "builtin": false, "taint": null,
             "path": path("kernel/net/netfilter/nf_nat.ko.zst")},
            {"name": "nft_chain_nat", "size": 16384, "refcount": 0, "used_by": [], "depends_on": null,
             "state": "Loading", "builtin": false, "taint": null, "path": null},
            {"name": "nolock", "size": 16384, "refcount": null, "used_by": [], "depends_on": [],
             "state": "Unloading", "builtin": false, "taint": null, "path": path("nolock.ko")},
            {"name": "vboxdrv", "size": 565248, "refcount": 2, "used_by": ["vboxnetadp", "vboxnetflt"],
             "depends_on": [], "state": "Live", "builtin": false, "taint": "OE",
             "path": path("updates/dkms/vboxdrv.ko")},
            {"name": "xt_MASQUERADE", "size": 16384, "refcount": 1, "used_by": [],
             "depends_on": ["nf_nat"], "state": "Live", "builtin": false, "taint": null,
             "path": path("kernel/net/netfilter/xt_MASQUERADE.ko")},
        ]),
        "{out:#}"
    );
    assert_eq!(out["truncated"], false);
    let errors = out["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let e0 = errors[0].as_str().unwrap();
    assert!(
        e0.starts_with("skipped 1 malformed line of '")
            && e0.ends_with("proc/modules' (first, line 5: 'garbage line')"),
        "{e0}"
    );
    let e1 = errors[1].as_str().unwrap();
    assert!(
        e1.starts_with("skipped 1 malformed line of '")
            && e1.ends_with("modules.dep' (first, line 5: 'not a dep line')"),
        "{e1}"
    );
}

#[test]
fn sys_module_when_proc_modules_is_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    release_and_dep(base);
    sys_tree(base);
    let out = scan_at(base, MAX_MODULES);
    let lib = base.join("lib/modules/6.1.0-test");

    assert_eq!(out["source"], "/sys/module");
    assert_eq!(
        out["modules"],
        json!([
            {"name": "nf_nat", "size": 57344, "refcount": 1, "used_by": ["xt_MASQUERADE"],
             "depends_on": ["nf_conntrack", "libcrc32c"], "state": "Live", "builtin": false,
             "taint": null, "path": lib.join("kernel/net/netfilter/nf_nat.ko.zst").display().to_string()},
            {"name": "unknown_mod", "size": null, "refcount": 0, "used_by": [], "depends_on": null,
             "state": "Loading", "builtin": false, "taint": null, "path": null},
            {"name": "vt", "size": null, "refcount": null, "used_by": [], "depends_on": null,
             "state": null, "builtin": true, "taint": null, "path": null},
            {"name": "xt_MASQUERADE", "size": 16384, "refcount": 0, "used_by": [],
             "depends_on": ["nf_nat"], "state": "Live", "builtin": false, "taint": null,
             "path": lib.join("kernel/net/netfilter/xt_MASQUERADE.ko").display().to_string()},
        ]),
        "{out:#}"
    );
    // Only the modules.dep line is malformed.
    assert_eq!(out["errors"].as_array().unwrap().len(), 1, "{out:#}");
}

#[test]
fn builtin_only_needs_no_modules_dep_and_caps_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    for name in ["a", "b", "c"] {
        std::fs::create_dir_all(base.join("sys/module").join(name).join("parameters")).unwrap();
    }
    let out = scan_at(base, 2);
    assert_eq!(out["source"], "/sys/module");
    assert_eq!(out["kernel_release"], Value::Null);
    let names: Vec<&str> = out["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(out["truncated"], true);
    assert_eq!(out["more"], 1);
    assert_eq!(
        out["errors"],
        json!(["1 more modules not listed: the limit is 2"])
    );
}

#[test]
fn missing_modules_dep_and_release_are_said() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    write(&base.join("proc/modules"), "loop 32768 0 - Live 0x0\n");
    let out = scan_at(base, MAX_MODULES);
    assert_eq!(out["modules"][0]["path"], Value::Null);
    assert!(
        out["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("kernel release unknown"),
        "{out:#}"
    );
    write(&base.join("proc/sys/kernel/osrelease"), "6.1.0-test\n");
    let out = scan_at(base, MAX_MODULES);
    let e = out["errors"][0].as_str().unwrap();
    assert!(
        e.ends_with(
            "6.1.0-test/modules.dep' does not exist: module files and dependencies are not shown"
        ),
        "{e}"
    );
}

#[test]
fn neither_source_is_an_empty_list_with_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    let out = scan_at(tmp.path(), MAX_MODULES);
    assert_eq!(out["source"], Value::Null);
    assert_eq!(out["modules"], json!([]));
    let e = out["errors"][0].as_str().unwrap();
    assert!(e.starts_with("no module list: neither '"), "{e}");
    assert_eq!(out["errors"].as_array().unwrap().len(), 1);
}

#[test]
fn unreadable_proc_modules_falls_back_to_sys() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    sys_tree(base);
    // A directory where the file should be: it exists but cannot be read as text.
    std::fs::create_dir_all(base.join("proc/modules")).unwrap();
    let out = scan_at(base, MAX_MODULES);
    assert_eq!(out["source"], "/sys/module");
    assert_eq!(out["modules"].as_array().unwrap().len(), 4);
    let e = out["errors"][0].as_str().unwrap();
    assert!(
        e.starts_with("cannot read '") && e.ends_with("; listing /sys/module instead"),
        "{e}"
    );
}

#[test]
fn cancelled_scan_returns_what_it_read() {
    let tmp = tempfile::tempdir().unwrap();
    sys_tree(tmp.path());
    let ctx = CommandContext::new("/", Duration::from_secs(10));
    ctx.cancel();
    let err = scan(&ctx, &roots(tmp.path()), MAX_MODULES).unwrap_err();
    let crate::commands::CommandError::Interrupted { partial: Some(p) } = err else {
        panic!("{err:?}")
    };
    assert_eq!(p["source"], "/sys/module");
    assert_eq!(p["modules"], json!([]));
}

#[tokio::test]
async fn live_lists_this_machines_modules() {
    let o = run("drivers", "/", &[]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    let modules = out["modules"].as_array().unwrap();
    if Path::new("/proc/modules").exists() {
        assert_eq!(out["source"], "/proc/modules", "{out:#}");
        let lines = std::fs::read_to_string("/proc/modules").unwrap();
        assert_eq!(modules.len(), lines.lines().count(), "{out:#}");
    } else {
        assert_eq!(out["source"], "/sys/module", "{out:#}");
        let dirs = std::fs::read_dir("/sys/module").unwrap().count();
        assert_eq!(modules.len(), dirs, "{out:#}");
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(out["kernel_release"], release.trim());
    let names: Vec<&str> = modules
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
}

#[tokio::test]
async fn rejects_parameters() {
    let o = run("drivers", "/", &["x"]).await;
    assert_eq!(o.status, Status::InvalidArguments);
    assert!(o.error.contains("usage: drivers"), "{}", o.error);
}

use std::time::Duration;

use pki::{Ca, CaRole};

use super::*;

struct Pair {
    _dir: tempfile::TempDir,
    key: PathBuf,
    cert: PathBuf,
}

impl Pair {
    /// A directory holding `agent.key` and `agent.pem` saying "old", and the given `.next` files
    /// saying "new".
    fn with_next(key_next: bool, cert_next: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("agent.key"), dir.path().join("agent.pem"));
        fs::write(&key, "old key").unwrap();
        fs::write(&cert, "old cert").unwrap();
        if key_next {
            fs::write(next(&key), "new key").unwrap();
        }
        if cert_next {
            fs::write(next(&cert), "new cert").unwrap();
        }
        Self {
            _dir: dir,
            key,
            cert,
        }
    }

    fn read(&self) -> (String, String) {
        (
            fs::read_to_string(&self.key).unwrap(),
            fs::read_to_string(&self.cert).unwrap(),
        )
    }

    fn no_next(&self) -> bool {
        !next(&self.key).exists() && !next(&self.cert).exists()
    }
}

#[test]
fn both_next_files_are_put_in_place() {
    let pair = Pair::with_next(true, true);
    finish_pending(&pair.key, &pair.cert).unwrap();
    assert_eq!(pair.read(), ("new key".into(), "new cert".into()));
    assert!(pair.no_next());
}

#[test]
fn a_certificate_whose_key_was_already_renamed_follows_it() {
    // The crash came between the two renames: the key is the new one already.
    let pair = Pair::with_next(false, true);
    fs::write(&pair.key, "new key").unwrap();
    finish_pending(&pair.key, &pair.cert).unwrap();
    assert_eq!(pair.read(), ("new key".into(), "new cert".into()));
    assert!(pair.no_next());
}

#[test]
fn a_key_without_its_certificate_is_discarded() {
    let pair = Pair::with_next(true, false);
    finish_pending(&pair.key, &pair.cert).unwrap();
    assert_eq!(pair.read(), ("old key".into(), "old cert".into()));
    assert!(pair.no_next());
}

#[test]
fn nothing_pending_changes_nothing() {
    let pair = Pair::with_next(false, false);
    finish_pending(&pair.key, &pair.cert).unwrap();
    assert_eq!(pair.read(), ("old key".into(), "old cert".into()));
}

#[test]
fn replace_leaves_the_new_pair_and_an_owner_only_key() {
    use std::os::unix::fs::PermissionsExt;
    let pair = Pair::with_next(false, false);
    replace(&pair.key, &pair.cert, "new key", "new cert").unwrap();
    assert_eq!(pair.read(), ("new key".into(), "new cert".into()));
    assert!(pair.no_next());
    let mode = fs::metadata(&pair.key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn an_issued_certificate_must_certify_the_key_and_name_the_device() {
    let ca = Ca::generate(CaRole::Agents).unwrap();
    let request = pki::new_request("web-07").unwrap();
    let issued = ca
        .sign_agent_request(&request.csr_der, "demo", "web-07", Duration::from_secs(600))
        .unwrap();
    let now = issued.expires_at_ms - 600_000;
    let validity = check_issued(&issued.cert_pem, &request.key_pem, "demo", "web-07", now).unwrap();
    assert_eq!(validity.not_after_ms / 1000, issued.expires_at_ms / 1000);

    let other_key = pki::new_request("web-07").unwrap().key_pem;
    let why = check_issued(&issued.cert_pem, &other_key, "demo", "web-07", now).unwrap_err();
    assert!(why.contains("another key"), "{why}");
    let why = check_issued(&issued.cert_pem, &request.key_pem, "demo", "web-08", now).unwrap_err();
    assert!(
        why.contains("lr-agent://demo/web-07, not lr-agent://demo/web-08"),
        "{why}"
    );
    let why = check_issued(
        &issued.cert_pem,
        &request.key_pem,
        "demo",
        "web-07",
        issued.expires_at_ms + 1000,
    )
    .unwrap_err();
    assert!(why.contains("expired at"), "{why}");
}

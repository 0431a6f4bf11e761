//! Exit codes, `--api` checking, `token create` and `uninstall` without a daemon.

use super::error::*;
use super::ops;
use crate::auth::{hash_token, Role, Tokens};

#[test]
fn every_failure_maps_to_its_documented_exit_code() {
    let refused = |status| CliError::Refused {
        status,
        message: String::new(),
    };
    for (status, code) in [(401, 4), (403, 4), (404, 5), (409, 6), (422, 1), (500, 1)] {
        assert_eq!(refused(status).exit_code(), code, "{status}");
        // Context added on the way up keeps the code.
        let err = anyhow::Error::from(refused(status)).context("while asking");
        assert_eq!(exit_code(&err), code, "{status} under context");
    }
    assert_eq!(exit_code(&CliError::NotFound("x".into()).into()), 5);
    assert_eq!(exit_code(&CliError::Conflict("x".into()).into()), 6);
    assert_eq!(exit_code(&anyhow::anyhow!("anything else")), EXIT_ERROR);
}

#[test]
fn api_urls_need_a_scheme_and_a_host() {
    assert_eq!(
        parse_api("http://127.0.0.1:9477/"),
        Ok("http://127.0.0.1:9477".into())
    );
    assert!(parse_api("https://warden.example:9477").is_ok());
    for (text, says) in [
        ("127.0.0.1:9477", "give e.g. http://127.0.0.1:9477"),
        ("localhost:9477", "give e.g. http://localhost:9477"),
        ("ftp://h:1", "scheme `ftp` is not supported"),
        ("http://", "not a daemon URL"),
    ] {
        let e = parse_api(text).expect_err(text);
        assert!(e.contains(says), "{text}: {e}");
    }
}

#[test]
fn token_create_appends_a_hash_once_per_name_and_never_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tokens");
    let alice = ops::token_create(&file, "alice", Role::Admin).expect("first token");
    let bob = ops::token_create(&file, "bob: \"x\"", Role::Viewer).expect("second token");
    assert_eq!(alice.len(), 64);
    assert_ne!(alice, bob);
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(
        !text.contains(&alice) && text.contains(&hash_token(&alice)),
        "{text}"
    );
    let tokens = Tokens::parse(&text, "tokens").expect("the file stays valid");
    assert_eq!(tokens.check(&alice).map(|i| i.role), Some(Role::Admin));
    assert_eq!(
        tokens.check(&bob).map(|i| i.name),
        Some("bob: \"x\"".to_owned())
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let err = ops::token_create(&file, "alice", Role::Viewer).expect_err("name taken");
    assert_eq!(exit_code(&err), EXIT_CONFLICT, "{err:#}");
    assert_eq!(std::fs::read_to_string(&file).expect("read"), text);

    let broken = dir.path().join("broken");
    std::fs::write(&broken, "- name: x\n  role: root\n").expect("write");
    let err = ops::token_create(&broken, "y", Role::Viewer).expect_err("invalid file");
    assert!(format!("{err:#}").contains("broken:2:"), "{err:#}");
}

#[test]
fn uninstall_of_a_missing_or_empty_directory_is_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = ops::uninstall(&dir.path().join("typo")).expect_err("missing");
    assert_eq!(exit_code(&err), EXIT_NOT_FOUND, "{err:#}");
    assert!(format!("{err:#}").contains("no such directory"), "{err:#}");
    let err = ops::uninstall(dir.path()).expect_err("nothing pinned");
    assert_eq!(exit_code(&err), EXIT_NOT_FOUND, "{err:#}");
    assert!(format!("{err:#}").contains("nothing removed"), "{err:#}");
}

#[test]
fn completion_and_man_pages_come_from_the_grammar() {
    let dir = tempfile::tempdir().expect("tempdir");
    ops::man(dir.path()).expect("man pages");
    let page = std::fs::read_to_string(dir.path().join("warden.1")).expect("warden.1");
    assert!(
        page.contains("policy") && page.contains("Exit codes"),
        "{page}"
    );
    assert!(dir.path().join("warden-token-create.1").exists());
}

//! The token file and the authorization of requests.

use super::*;

const VIEWER: &str = "example-viewer-token";
const OPERATOR: &str = "example-operator-token";
const ADMIN: &str = "example-admin-token";

fn sample() -> String {
    format!(
        "- name: vera\n  role: viewer\n  sha256: {}\n\
         - name: otto\n  role: operator\n  sha256: {}\n\
         - name: ada\n  role: admin\n  sha256: {}\n",
        hash_token(VIEWER),
        hash_token(OPERATOR),
        hash_token(ADMIN)
    )
}

fn tokens() -> Tokens {
    Tokens::parse(&sample(), "tokens.yaml").expect("sample parses")
}

/// The diagnostics of a file that must not parse, one string each.
fn errors(text: &str) -> Vec<String> {
    match Tokens::parse(text, "t.yaml") {
        Err(AuthError::Invalid(diagnostics)) => {
            diagnostics.iter().map(ToString::to_string).collect()
        }
        other => panic!("expected diagnostics, got {other:?}"),
    }
}

fn headers(authorization: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(authorization).expect("valid header value"),
    );
    headers
}

#[test]
fn hash_token_is_sha256_hex() {
    assert_eq!(
        hash_token(""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hash_token("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn generated_tokens_are_256_bit_hex_and_differ() {
    let a = generate_token();
    let b = generate_token();
    assert_eq!(a.len(), 64);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
}

#[test]
fn roles_are_ordered_and_parse_lowercase() {
    assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
    assert!("Admin".parse::<Role>().is_err());
    assert_eq!(serde_json::to_value(Role::Admin).expect("ser"), "admin");
    let role: Role = serde_json::from_str("\"viewer\"").expect("de");
    assert_eq!(role, Role::Viewer);
    for role in Role::ALL {
        assert_eq!(role.to_string().parse::<Role>(), Ok(role));
    }
}

#[test]
fn check_finds_each_token_and_rejects_others() {
    let tokens = tokens();
    assert_eq!(tokens.len(), 3);
    let id = tokens.check(OPERATOR).expect("operator token");
    assert_eq!(
        id,
        Identity {
            name: "otto".into(),
            role: Role::Operator
        }
    );
    assert_eq!(tokens.check(ADMIN).map(|i| i.role), Some(Role::Admin));
    assert_eq!(tokens.check("example-admin-tokeN"), None);
    assert_eq!(tokens.check(""), None);
    // The digest itself is not a token.
    assert_eq!(tokens.check(&hash_token(ADMIN)), None);
    assert_eq!(Tokens::empty().check(ADMIN), None);
}

#[test]
fn uppercase_hex_digests_are_accepted() {
    let text = format!(
        "- name: a\n  role: admin\n  sha256: {}\n",
        hash_token(ADMIN).to_uppercase()
    );
    let tokens = Tokens::parse(&text, "t.yaml").expect("parses");
    assert!(tokens.check(ADMIN).is_some());
}

#[test]
fn empty_file_and_empty_list_accept_no_token() {
    for text in ["", "# nobody yet\n", "[]\n"] {
        let tokens = Tokens::parse(text, "t.yaml").expect("parses");
        assert!(tokens.is_empty(), "{text:?}");
    }
}

#[test]
fn debug_does_not_show_digests() {
    let shown = format!("{:?}", tokens());
    assert!(shown.contains("otto"));
    assert!(!shown.contains(&hash_token(ADMIN)[..16]));
}

#[test]
fn unknown_key_is_an_error_at_its_position() {
    let text = format!(
        "- name: a\n  role: admin\n  sha256: {}\n  expires: tomorrow\n",
        hash_token(ADMIN)
    );
    assert_eq!(
        errors(&text),
        ["t.yaml:4:3: unknown key `expires` in token entry; expected one of: name, role, sha256"]
    );
}

#[test]
fn duplicate_names_are_an_error() {
    let text = format!(
        "- name: a\n  role: admin\n  sha256: {}\n- name: a\n  role: viewer\n  sha256: {}\n",
        hash_token(ADMIN),
        hash_token(VIEWER)
    );
    assert_eq!(
        errors(&text),
        ["t.yaml:4:3: duplicate token name `a` (first at line 1)"]
    );
}

#[test]
fn duplicate_hashes_are_an_error() {
    let text = format!(
        "- name: a\n  role: admin\n  sha256: {}\n- name: b\n  role: viewer\n  sha256: {}\n",
        hash_token(ADMIN),
        hash_token(ADMIN).to_uppercase()
    );
    assert_eq!(
        errors(&text),
        ["t.yaml:4:3: token `b` has the same sha256 as token `a`; each token must be distinct"]
    );
}

#[test]
fn bad_values_and_missing_keys_are_each_reported() {
    let text = "- name: a\n  role: root\n  sha256: abc\n- name: b\n  role: admin\n- just text\n";
    assert_eq!(
        errors(text),
        [
            "t.yaml:2:9: unknown role `root`; expected one of: viewer, operator, admin",
            "t.yaml:3:11: `sha256` must be 64 hex digits (the SHA-256 of the token), found 3 characters",
            "t.yaml:4:3: token entry is missing required key `sha256`",
            "t.yaml:6:3: expected a token entry with `name`, `role` and `sha256`",
        ]
    );
}

#[test]
fn a_mapping_at_the_top_is_an_error() {
    assert_eq!(
        errors("name: a\nrole: admin\n"),
        ["t.yaml:1:1: expected a list of tokens (`- name: ...`, `role: ...`, `sha256: ...`)"]
    );
}

#[test]
fn yaml_syntax_errors_and_duplicate_keys_have_positions() {
    let syntax = errors("- name: [a\n");
    assert_eq!(syntax.len(), 1);
    assert!(syntax[0].starts_with("t.yaml:"), "{syntax:?}");
    assert!(syntax[0].contains("YAML syntax error"), "{syntax:?}");
    let dup = errors("- name: a\n  name: b\n");
    assert!(dup[0].starts_with("t.yaml:2:"), "{dup:?}");
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tokens.yaml");
    std::fs::write(&path, sample()).expect("write");
    assert_eq!(Tokens::load(&path).expect("load").len(), 3);
    std::fs::write(&path, "- nope\n").expect("write");
    let err = Tokens::load(&path).expect_err("invalid");
    assert!(
        err.to_string()
            .starts_with(&format!("{}:1:3: ", path.display())),
        "{err}"
    );
    let missing = dir.path().join("absent.yaml");
    let err = Tokens::load(&missing).expect_err("absent");
    assert!(matches!(err, AuthError::Read { .. }), "{err:?}");
}

#[test]
fn the_shipped_sample_token_file_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tokens.yaml");
    let tokens = Tokens::load(&path).expect("configs/tokens.yaml is valid");
    assert_eq!(tokens.check(VIEWER).map(|i| i.role), Some(Role::Viewer));
    assert_eq!(tokens.check(OPERATOR).map(|i| i.role), Some(Role::Operator));
    assert_eq!(tokens.check(ADMIN).map(|i| i.role), Some(Role::Admin));
}

#[test]
fn no_authorization_header_is_401() {
    let err = authorize(&tokens(), &HeaderMap::new(), Role::Viewer).expect_err("refused");
    assert_eq!(err, AuthRejection::Missing);
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn wrong_scheme_or_shape_is_401_malformed() {
    let tokens = tokens();
    for value in [
        format!("Basic {ADMIN}"),
        ADMIN.to_owned(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        format!("Bearer {ADMIN} extra"),
    ] {
        let err = authorize(&tokens, &headers(&value), Role::Viewer).expect_err(&value);
        assert_eq!(err, AuthRejection::Malformed, "{value:?}");
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    }
    let mut two = headers(&format!("Bearer {ADMIN}"));
    two.append(AUTHORIZATION, HeaderValue::from_static("Bearer other"));
    assert_eq!(
        authorize(&tokens, &two, Role::Viewer),
        Err(AuthRejection::Malformed)
    );
}

#[test]
fn unknown_token_is_401() {
    let err =
        authorize(&tokens(), &headers("Bearer not-a-token"), Role::Viewer).expect_err("refused");
    assert_eq!(err, AuthRejection::UnknownToken);
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn viewer_on_an_operator_route_is_403_naming_both_roles() {
    let err = authorize(
        &tokens(),
        &headers(&format!("Bearer {VIEWER}")),
        Role::Operator,
    )
    .expect_err("refused");
    assert_eq!(err.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        err.to_string(),
        "this needs role `operator` or higher; token `vera` has role `viewer`"
    );
}

#[test]
fn admin_passes_every_route_and_scheme_is_case_insensitive() {
    let tokens = tokens();
    for need in Role::ALL {
        let id = authorize(&tokens, &headers(&format!("Bearer {ADMIN}")), need).expect("admin may");
        assert_eq!(
            id,
            Identity {
                name: "ada".into(),
                role: Role::Admin
            }
        );
    }
    let id = authorize(
        &tokens,
        &headers(&format!("bearer {OPERATOR}")),
        Role::Operator,
    )
    .expect("operator on operator route");
    assert_eq!(id.name, "otto");
}

async fn respond(rejection: AuthRejection) -> (StatusCode, Option<String>, serde_json::Value) {
    let response = rejection.into_response();
    let status = response.status();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .expect("body");
    (
        status,
        challenge,
        serde_json::from_slice(&body).expect("json body"),
    )
}

#[tokio::test]
async fn rejections_answer_json_with_bearer_challenge_on_401() {
    let (status, challenge, body) = respond(AuthRejection::Missing).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.expect("challenge").starts_with("Bearer"));
    assert!(body["error"]
        .as_str()
        .expect("error string")
        .contains("missing bearer token"));

    let (status, challenge, _) = respond(AuthRejection::UnknownToken).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge
        .expect("challenge")
        .contains(r#"error="invalid_token""#));

    let forbidden = AuthRejection::Forbidden {
        identity: Identity {
            name: "vera".into(),
            role: Role::Viewer,
        },
        need: Role::Admin,
    };
    let (status, challenge, body) = respond(forbidden).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(challenge, None);
    assert_eq!(
        body,
        serde_json::json!({ "error": "this needs role `admin` or higher; token `vera` has role `viewer`" })
    );
}

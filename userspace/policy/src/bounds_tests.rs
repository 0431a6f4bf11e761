//! The bounds of policy parsing: how many errors are reported, how large a policy may
//! be, what alias expansion may copy, and that error output shows user text escaped on
//! one line and invalid UTF-8 at its place.

use std::path::Path;

use super::*;

fn lines_of(d: &Diagnostics) -> Vec<String> {
    d.to_string().lines().map(str::to_owned).collect()
}

#[test]
fn a_key_with_a_newline_cannot_forge_a_second_error_line() {
    let text = "\"a\\nx.yaml:1:1: forged\": 1\n";
    let err = parse(text, "x.yaml").expect_err("an unknown key");
    let shown = err.to_string();
    assert_eq!(shown.lines().count(), 1, "{shown}");
    assert!(
        shown.starts_with("x.yaml:1:1: unknown key `a\\nx.yaml:1:1: forged` in the policy"),
        "{shown}"
    );
    assert_eq!(err.len(), 1);
    // The API sends the same lines.
    assert_eq!(err.lines().len(), 1);
}

#[test]
fn control_and_invisible_characters_in_values_are_escaped() {
    let text = "daemon:\n  listen: \"\\e[31mred\\r\\u2028\\u202e\\t\"\n";
    let (line, col, message) = {
        let err = parse(text, "p.yaml").expect_err("a bad listen address");
        let d = err.iter().next().expect("one error").clone();
        (d.line, d.col, d.message)
    };
    assert_eq!((line, col), (2, 11));
    assert!(
        message.ends_with("found `\\u{1b}[31mred\\r\\u{2028}\\u{202e}\\t`"),
        "{message}"
    );
    assert!(!message.chars().any(char::is_control), "{message:?}");
}

#[test]
fn printable_escapes_what_could_break_a_line_and_keeps_the_rest() {
    assert_eq!(printable("plain `text` é ü 名前"), "plain `text` é ü 名前");
    assert_eq!(printable("a\nb\r\tc\\d"), "a\\nb\\r\\tc\\\\d");
    assert_eq!(
        printable("\u{1b}[0m\u{7f}\u{85}\u{feff}\u{200b}"),
        "\\u{1b}[0m\\u{7f}\\u{85}\\u{feff}\\u{200b}"
    );
    // The file name is escaped too.
    let err = parse("bogus: 1\n", "evil\n.yaml").expect_err("unknown key");
    assert_eq!(err.to_string().lines().count(), 1);
    assert!(err.to_string().starts_with("evil\\n.yaml:1:1: "));
}

#[test]
fn a_huge_echo_is_shortened_keeping_both_ends() {
    // An explicit key: implicit ones are limited to 1024 characters by YAML.
    let key = "k".repeat(100_000);
    let err = parse(&format!("? {key}\n: 1\n"), "p.yaml").expect_err("unknown key");
    let message = &err.iter().next().expect("one error").message;
    assert!(message.chars().count() < 1_100, "{} chars", message.len());
    assert!(message.starts_with("unknown key `kkk"), "{message}");
    assert!(message.contains("characters left out"), "{message}");
    assert!(
        message.ends_with("expected one of: daemon, interfaces, defaults, tenants"),
        "{message}"
    );
}

#[test]
fn past_100_errors_the_first_in_file_order_are_shown_and_the_rest_counted() {
    // `tenants` is read after the other sections, so its errors are found last: they
    // are still among the first shown, being earliest in the file.
    let mut text = String::from("tenants:\n  - id: a\n    colour: 1\n");
    for i in 0..1_000 {
        text.push_str(&format!("unknown_{i}: 1\n"));
    }
    let err = parse(&text, "p.yaml").expect_err("errors");
    assert_eq!(
        err.len(),
        1_001 + 1,
        "unknown keys, colour, missing addresses"
    );
    assert_eq!(err.iter().count(), MAX_ERRORS);
    assert_eq!(err.omitted(), 1_002 - MAX_ERRORS);
    let lines = lines_of(&err);
    assert_eq!(lines.len(), MAX_ERRORS + 1);
    assert!(lines[0].starts_with("p.yaml:2:5: tenant is missing required key `addresses`"));
    assert!(lines[1].starts_with("p.yaml:3:5: unknown key `colour` in tenant"));
    assert!(lines[2].starts_with("p.yaml:4:1: unknown key `unknown_0` "));
    assert!(lines[99].starts_with("p.yaml:101:1: unknown key `unknown_97` "));
    assert_eq!(
        lines[100],
        "p.yaml: 902 more errors not shown (only the first 100 are reported)"
    );
    let positions: Vec<(usize, usize)> = err.iter().map(|d| (d.line, d.col)).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted, "file order");
}

#[test]
fn exactly_100_errors_are_all_shown_without_a_final_line() {
    let text: String = (0..MAX_ERRORS).map(|i| format!("u{i}: 1\n")).collect();
    let err = parse(&text, "p.yaml").expect_err("errors");
    assert_eq!((err.len(), err.omitted()), (MAX_ERRORS, 0));
    assert_eq!(lines_of(&err).len(), MAX_ERRORS);
}

#[test]
fn invalid_utf8_is_reported_at_its_line_and_column() {
    let mut bytes =
        b"daemon:\n  listen: 127.0.0.1:9477\n# one\n# two\n# three\n\ntenants: []\n".to_vec();
    // Line 7 is `tenants: []`; put a bad byte after `tenants: ` (column 10).
    let at = bytes
        .windows(3)
        .position(|w| w == b"[]\n")
        .expect("the list");
    bytes.insert(at, 0xff);
    let err = parse_bytes(&bytes, "p.yaml").expect_err("not UTF-8");
    let d = err.iter().next().expect("one error");
    assert_eq!((err.len(), d.line, d.col), (1, 7, 10), "{d}");
    assert!(d.message.starts_with("invalid UTF-8 (0xff)"), "{d}");

    // Columns count characters, CR LF is one line break, a lone CR one too.
    let err = parse_bytes(b"a: 1\r\nb: 2\rc: \xc3\xa9\xe2\x28", "q.yaml").expect_err("bad");
    let d = err.iter().next().expect("one error");
    assert_eq!((d.line, d.col), (3, 5), "{d}");

    // A file ending inside a character.
    let err = parse_bytes(b"a: \xe2\x82", "r.yaml").expect_err("cut");
    let d = err.iter().next().expect("one error");
    assert_eq!((d.line, d.col), (1, 4), "{d}");
    assert!(d.message.contains("ends inside a character"), "{d}");

    // Through a file, as `warden policy check` and the daemon read it.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, &bytes).expect("write");
    let err = load(&path).expect_err("not UTF-8");
    let d = err.iter().next().expect("one error");
    assert_eq!((d.line, d.col), (7, 10), "{d}");
}

#[test]
fn policies_past_the_size_limit_are_refused_before_parsing() {
    let mut text = "#".repeat(MAX_POLICY_BYTES);
    text.push('\n');
    let err = parse(&text, "big.yaml").expect_err("too large");
    let d = err.iter().next().expect("one error");
    assert_eq!((err.len(), d.line, d.col), (1, 0, 0));
    assert_eq!(
        d.message,
        format!(
            "the policy is {} bytes; at most 67108864 (64 MiB) are accepted",
            MAX_POLICY_BYTES + 1
        )
    );
    text.truncate(MAX_POLICY_BYTES - "\ntenants: []\n".len());
    text.push_str("\ntenants: []\n");
    assert_eq!(text.len(), MAX_POLICY_BYTES);
    assert!(
        parse(&text, "ok.yaml").is_ok(),
        "exactly the limit is accepted"
    );

    // A file is not read past the limit: a sparse 1 GiB file is refused at once.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.yaml");
    let f = std::fs::File::create(&path).expect("create");
    f.set_len(1 << 30).expect("sparse file");
    let err = load(&path).expect_err("too large");
    let d = err.iter().next().expect("one error");
    assert!(
        d.message
            .starts_with("the policy is 1073741824 bytes; at most"),
        "{d}"
    );
}

#[test]
fn alias_expansion_may_not_copy_more_text_than_a_policy_holds() {
    // Within the node budget (40 aliases), but 40 copies of 2 MiB of quoted text.
    let big = "x".repeat(2 << 20);
    let aliases = ["*s"; 40].join(", ");
    let text = format!("a: &s \"{big}\"\nb: [{aliases}]\n");
    let err = parse(&text, "p.yaml").expect_err("too much copied");
    let d = err.iter().next().expect("one error");
    assert!(
        d.message
            .contains("alias expansion exceeded the maximum of copied text"),
        "{d}"
    );
    // A few copies are fine (and then only the unknown keys are errors).
    let aliases = ["*s"; 4].join(", ");
    let err = parse(&format!("a: &s \"{big}\"\nb: [{aliases}]\n"), "p.yaml").expect_err("keys");
    assert!(
        err.iter().all(|d| d.message.starts_with("unknown key")),
        "{err}"
    );
}

#[test]
fn more_tenants_than_a_node_holds_is_one_error_and_the_rest_is_not_read() {
    let max = warden_common::MAX_TENANTS as usize;
    let items = vec!["{}"; max + 5].join(",");
    let err = parse(&format!("tenants: [{items}]\n"), "p.yaml").expect_err("too many");
    let first = err.iter().next().expect("errors");
    assert_eq!((first.line, first.col), (1, 10));
    assert_eq!(
        first.message,
        format!(
            "{} tenants; a node holds at most {max} (the rest were not checked)",
            max + 5
        )
    );
    // Each tenant read lacks `id` and `addresses`; the 5 past the limit were not read.
    assert_eq!(err.len(), 1 + 2 * max);
}

#[test]
fn an_interface_the_host_refuses_is_an_error_at_its_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    std::fs::write(
        &path,
        "interfaces:\n  - name: eth0\n    mode: host\n  - {name: jumbo0, mode: gateway}\n",
    )
    .expect("write");
    let refuse = |name: &str| match name {
        "jumbo0" => Err("interface jumbo0 has MTU 9000, above 3506".to_owned()),
        _ => Ok(Vec::new()),
    };
    let err = load_on_host(&path, &refuse).expect_err("refused");
    let d = err.iter().next().expect("one error");
    assert_eq!((err.len(), d.line, d.col), (1, 4, 12), "{d}");
    assert_eq!(d.message, "interface jumbo0 has MTU 9000, above 3506");
    assert!(load(Path::new(&path)).is_ok(), "plain load asks nobody");
}

#[test]
fn a_host_port_bound_to_a_tenant_must_not_carry_another_tenants_address() {
    let text = "interfaces:\n  - {name: eth0, mode: host, tenant: acme}\n  - {name: eth1, mode: gateway, tenant: acme}\ntenants:\n  - {id: acme, addresses: [198.18.1.0/24]}\n  - {id: globex, addresses: [198.18.2.0/24]}\n";
    let carries = |addr: &'static str| {
        move |_: &str| Ok(vec![addr.parse::<std::net::IpAddr>().expect("an address")])
    };
    let own = carries("198.18.1.1");
    assert!(crate::parse_on_host(text, "p.yaml", &own).is_ok());
    let nobodys = carries("198.18.9.1");
    assert!(crate::parse_on_host(text, "p.yaml", &nobodys).is_ok());
    let globexs = carries("198.18.2.10");
    let err = crate::parse_on_host(text, "p.yaml", &globexs).expect_err("another tenant's");
    // Only the host-mode interface: a gateway's addresses are its own, not a tenant's.
    assert_eq!(err.len(), 1, "{err}");
    assert_eq!(
        err.to_string().trim(),
        "p.yaml:2:38: interface eth0 is bound to tenant `acme` but carries 198.18.2.10, an \
         address of tenant globex: in host mode, bind the tenant whose server this is"
    );
}

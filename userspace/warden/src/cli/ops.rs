//! The commands that work without a daemon or about the CLI itself: `policy check`,
//! `token create`, `version`, `completion`, `man` and `uninstall`.

use std::io::{Read as _, Write as _};
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use clap::CommandFactory as _;
use warden_dataplane as dataplane;
use warden_policy as policy;

use super::{Cli, CliError, Client};
use crate::auth::{self, Role, Tokens};

/// The name diagnostics give standard input.
const STDIN_NAME: &str = "<stdin>";

/// `warden policy check FILE|-`: `Ok(false)` when the policy has errors (printed).
pub fn policy_check(file: &Path) -> Result<bool> {
    match checked(file)? {
        Ok((name, p)) => {
            for i in p.interfaces.iter().filter(|i| !i.is_bound()) {
                eprintln!(
                    "{}: warning: interface {} has no port binding (`tenant`): a frame from it \
                     with a source address and MAC of no tenant is dropped but cannot be \
                     charged to a tenant (reason `spoofed`, no `spoof_ip` detection)",
                    policy::printable(&name),
                    i.name
                );
            }
            println!(
                "{name}: ok ({} tenants, {} interfaces)",
                p.tenants.len(),
                p.interfaces.len()
            );
            Ok(true)
        }
        Err(()) => Ok(false),
    }
}

/// `FILE` (or `-`, standard input) read and validated as `policy check` does, with its
/// name; `Err(())` when it has errors, printed to standard error.
pub fn checked(file: &Path) -> Result<Result<(String, policy::Policy), ()>> {
    let usable = |name: &str| dataplane::iface::check(name, false);
    let (name, result) = if file == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(policy::MAX_POLICY_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .context("reading the policy from standard input")?;
        let r = policy::parse_bytes_on_host(&bytes, STDIN_NAME, &usable);
        (STDIN_NAME.to_owned(), r)
    } else {
        let name = file.display().to_string();
        (name, policy::load_on_host(file, &usable))
    };
    match result {
        Ok(p) => Ok(Ok((name, p))),
        Err(diags) => {
            let text = diags.to_string();
            eprint!("{text}");
            if !text.ends_with('\n') {
                eprintln!();
            }
            eprintln!("{}: {} error(s)", policy::printable(&name), diags.len());
            Ok(Err(()))
        }
    }
}

/// `warden token create`: appends the new token's hash to `file` and returns the token.
/// A name already in the file is a conflict; a file that does not parse is left alone.
pub fn token_create(file: &Path, name: &str, role: Role) -> Result<String> {
    let existing = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let label = file.display().to_string();
    let tokens = Tokens::parse(&existing, &label).map_err(|e| anyhow::anyhow!("{e}"))?;
    if tokens.names().any(|n| n == name) {
        return Err(CliError::Conflict(format!(
            "{label}: a token named `{name}` already exists; pick another name or remove that entry"
        ))
        .into());
    }
    let token = auth::generate_token();
    // A JSON string is a valid YAML double-quoted scalar: any name is written safely.
    let quoted = serde_json::to_string(name).context("quoting the name")?;
    // A blank line between entries, as in the shipped example.
    let sep = match existing.as_str() {
        "" => "",
        t if t.ends_with('\n') => "\n",
        _ => "\n\n",
    };
    let entry = format!(
        "{sep}- name: {quoted}\n  role: {role}\n  sha256: {}\n",
        auth::hash_token(&token)
    );
    // The whole file as it will be must parse (e.g. not a flow list `[]` followed by a
    // block entry), or nothing is written.
    let combined = format!("{existing}{entry}");
    if existing.trim() == "[]" {
        bail!("{label}: holds `[]`; replace it with an empty file to add tokens");
    }
    Tokens::parse(&combined, &label).map_err(|e| anyhow::anyhow!("{e}"))?;
    append(file, &entry)?;
    Ok(token)
}

fn append(file: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("opening {} to append", file.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", file.display()))
}

/// `warden version`: this client, then the daemon (unreachable: exit 3 after the client line).
pub fn version(client: Result<Client>) -> Result<()> {
    println!("client: warden {}", crate::VERSION);
    let v = client?.get("/api/v1/status")?;
    println!(
        "daemon: warden {}",
        v["version"]
            .as_str()
            .unwrap_or("(no version in the status document)")
    );
    Ok(())
}

/// `warden completion SHELL`.
pub fn completion(shell: clap_complete::Shell) {
    clap_complete::generate(shell, &mut Cli::command(), "warden", &mut std::io::stdout());
}

/// `warden man DIR`: `warden.1` and one page per subcommand.
pub fn man(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))
}

/// `warden uninstall`: a directory that does not exist, or holds no Warden pins, is "not
/// found" (exit 5), never "enforcement stopped".
pub fn uninstall(dir: &Path) -> Result<usize> {
    if !dir.is_dir() {
        return Err(CliError::NotFound(format!(
            "{}: no such directory; nothing of Warden's is pinned there (check --bpffs or \
             the policy's daemon.bpffs)",
            dir.display()
        ))
        .into());
    }
    let n = crate::daemon::uninstall(dir)
        .with_context(|| format!("removing pins under {}", dir.display()))?;
    if n == 0 {
        return Err(CliError::NotFound(format!(
            "{}: no Warden program, link or map pinned here; nothing removed",
            dir.display()
        ))
        .into());
    }
    Ok(n)
}

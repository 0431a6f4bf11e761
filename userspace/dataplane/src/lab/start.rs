//! A start that fails undoes what it did to the pinned state and nothing else (see
//! [`crate::dataplane::start`]); attaching to interfaces is covered by Tier 2.

use std::collections::BTreeSet;

use aya::maps::lpm_trie::Key;

use super::*;

/// Every entry under `dir`, recursively, as paths relative to it.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).expect("reading a directory") {
            let p = entry.expect("an entry").path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.insert(p.strip_prefix(dir).expect("under dir").to_path_buf());
        }
    }
    out
}

fn active(dp: &Dataplane) -> u32 {
    dp.array::<u32>(map::ACTIVE)
        .expect("ACTIVE")
        .get(&0, 0)
        .expect("reading ACTIVE")
}

fn management_v4(dp: &mut Dataplane) -> BTreeSet<(u32, [u8; 4])> {
    let t = dp
        .lpm_mut::<[u8; 4], u8>(map::MANAGEMENT_V4)
        .expect("MANAGEMENT_V4");
    t.keys()
        .map(|k: Result<Key<[u8; 4]>, _>| {
            let k = k.expect("a key");
            (k.prefix_len(), k.data())
        })
        .collect()
}

const WITH_CONSOLE: &str = "
daemon:
  management: [198.18.3.253/32]
tenants:
  - id: a
    addresses: [198.18.1.0/24]
";

#[test]
fn a_failed_start_on_a_fresh_bpffs_removes_every_pin_and_directory_it_made() {
    let fs = Bpffs::new();
    let before = tree(fs.path());
    // Two levels the start has to create.
    let bpffs = fs.path().join("warden").join("node");
    let mut dp = Dataplane::open(&bpffs).expect("opening");
    apply(&mut dp, WITH_CONSOLE);
    assert!(dp.starting());
    assert!(bpffs.join("maps").join(map::ACTIVE).exists());
    let done = dp.roll_back_start();
    assert!(done.failures.is_empty(), "{:?}", done.failures);
    // The object's maps, the suspension record, 5 directories, the flip and the
    // management prefixes.
    assert_eq!(done.undone, map::ALL.len() + 1 + 5 + 2);
    assert!(!dp.starting());
    drop(dp);
    assert_eq!(tree(fs.path()), before, "something was left behind");
    // Undoing twice does nothing.
    let mut dp = Dataplane::open(&bpffs).expect("opening again");
    dp.roll_back_start();
    assert_eq!(dp.roll_back_start().undone, 0);
}

#[test]
fn a_failed_start_after_adopting_leaves_the_adopted_pins_and_policy_as_they_were() {
    let fs = Bpffs::new();
    // The earlier daemon: a policy in force, its start finished.
    let mut dp = Dataplane::open(fs.path()).expect("opening");
    apply(&mut dp, WITH_CONSOLE);
    dp.finish_start().expect("finishing the start");
    let generation = active(&dp);
    let console = management_v4(&mut dp);
    assert_eq!(console, BTreeSet::from([(32, [198, 18, 3, 253])]));
    drop(dp);
    let pinned = tree(fs.path());

    // The next start adopts it, applies another policy (another management prefix), and
    // fails later on.
    let mut dp = Dataplane::open(fs.path()).expect("adopting");
    assert_eq!(dp.adopted_maps(), map::ALL.len());
    apply(
        &mut dp,
        "daemon:\n  management: [198.18.3.0/24]\ntenants:\n  - id: b\n    addresses: [198.18.2.0/24]\n",
    );
    assert_ne!(active(&dp), generation, "the apply switched generations");
    let done = dp.roll_back_start();
    assert!(done.failures.is_empty(), "{:?}", done.failures);
    assert_eq!(done.undone, 2, "the flip and the management prefixes");
    assert_eq!(active(&dp), generation, "switched back");
    assert_eq!(management_v4(&mut dp), console, "prefixes put back");
    drop(dp);
    assert_eq!(tree(fs.path()), pinned, "an adopted pin was removed");
}

#[test]
fn an_open_that_fails_removes_the_directories_it_made() {
    // Not a bpf filesystem: refused after the directory was made.
    let top = std::env::temp_dir().join(format!("warden-not-bpffs-{}", std::process::id()));
    let bpffs = top.join("a").join("b");
    let Err(err) = Dataplane::open(&bpffs) else {
        panic!("{} is not on a bpf filesystem", bpffs.display());
    };
    assert!(matches!(err, DataplaneError::NotBpffs(_)), "{err}");
    assert!(!top.exists(), "{} was left behind", top.display());
}

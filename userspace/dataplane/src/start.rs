//! Starts are all or nothing.
//!
//! From [`Dataplane::open`] until [`Dataplane::finish_start`] the dataplane records, step
//! by step, what it does to the pinned state under `bpffs`; a start that fails anywhere
//! (here or later in the daemon's start) calls [`Dataplane::roll_back_start`], which
//! undoes those steps in reverse order.
//!
//! Enforcement never depends on the daemon being alive, and a starting daemon adopts
//! what an earlier one left pinned (maps, programs, links: the earlier daemon's
//! enforcement). So a failed start undoes only what *it* did and leaves what it adopted
//! as it found it, still enforcing:
//! - pins it created (maps, programs, links) are removed; removing a link's pin detaches
//!   the program from that interface;
//! - directories it created are removed once empty;
//! - the generation it switched the kernel to is switched back (the earlier generation's
//!   half is never written by a start's single apply, so it is intact), and the
//!   management prefixes it changed are put back;
//! - a program it swapped under an adopted link is swapped back, atomically.
//!
//! Pinned links of interfaces the policy no longer names are removed only by
//! [`Dataplane::finish_start`], the start's last step, so a start that fails before it
//! leaves them enforcing too.

use std::{
    collections::{HashMap, HashSet},
    fs, io,
    os::fd::{AsFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use aya::maps::{lpm_trie::Key, LpmTrie, MapData};
use warden_common::map;

use super::{escape_name, io as io_err, map_err, relink, sync_trie, Dataplane, Hook, Result};

/// One step of a start, as it is undone.
pub(super) enum Undo {
    /// A directory the start created: removed (when empty).
    Dir(PathBuf),
    /// A pin the start created: removed (for a link, that detaches it).
    Pin(PathBuf),
    /// The generation packets used before the start first switched it.
    Active(u32),
    /// The management prefixes before the start first changed them.
    Management {
        v4: HashSet<(u32, [u8; 4])>,
        v6: HashSet<(u32, [u8; 16])>,
    },
    /// A link pinned at `link` whose program the start replaced: `program` is the one
    /// it ran before.
    Program { link: PathBuf, program: OwnedFd },
    /// Warden's shaping qdisc, which the start put at the root of this interface
    /// (replacing the kernel's default): removed.
    Qdisc(String),
}

/// The steps of the start under way, in the order they were taken.
#[derive(Default)]
pub(super) struct Journal {
    steps: Vec<Undo>,
}

impl Journal {
    pub fn push(&mut self, step: Undo) {
        self.steps.push(step);
    }

    fn has(&self, f: impl Fn(&Undo) -> bool) -> bool {
        self.steps.iter().any(f)
    }

    /// Creates `path` and its missing parents, recording each directory created (a
    /// partial failure records what was made before it).
    pub fn create_dir_all(&mut self, path: &Path) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut at = Some(path);
        while let Some(dir) = at {
            if dir.as_os_str().is_empty() || dir.exists() {
                break;
            }
            missing.push(dir.to_path_buf());
            at = dir.parent();
        }
        for dir in missing.into_iter().rev() {
            match fs::create_dir(&dir) {
                Ok(()) => self.push(Undo::Dir(dir)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Undoes the steps that need only the file system (directories and pins), in
    /// reverse order: what [`Dataplane::open`] does when it fails before the dataplane
    /// exists. Other steps cannot have been taken by then.
    pub fn undo_files(self) -> RolledBack {
        let mut done = RolledBack::default();
        for step in self.steps.into_iter().rev() {
            match step {
                Undo::Dir(path) => done.note(remove_dir(&path), &path),
                Undo::Pin(path) => done.note(remove_pin(&path), &path),
                Undo::Active(_)
                | Undo::Management { .. }
                | Undo::Program { .. }
                | Undo::Qdisc(_) => {}
            }
        }
        done
    }
}

/// What undoing a start did.
#[derive(Debug, Default)]
pub struct RolledBack {
    /// Steps undone.
    pub undone: usize,
    /// Steps that could not be undone, with why.
    pub failures: Vec<String>,
}

impl RolledBack {
    fn note(&mut self, r: std::result::Result<(), String>, what: &Path) {
        match r {
            Ok(()) => self.undone += 1,
            Err(e) => self.failures.push(format!("{}: {e}", what.display())),
        }
    }
}

fn remove_pin(path: &Path) -> std::result::Result<(), String> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing the pin: {e}")),
    }
}

fn remove_dir(path: &Path) -> std::result::Result<(), String> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing the directory: {e}")),
    }
}

impl Dataplane {
    /// Records a step of the start under way (nothing after [`Dataplane::finish_start`]).
    pub(super) fn record(&mut self, step: Undo) {
        if let Some(journal) = &mut self.start {
            journal.push(step);
        }
    }

    /// [`Journal::create_dir_all`] while a start is under way, else plainly.
    pub(super) fn create_dirs(&mut self, path: &Path) -> Result<()> {
        match &mut self.start {
            Some(journal) => journal.create_dir_all(path),
            None => fs::create_dir_all(path),
        }
        .map_err(io_err(path))
    }

    /// Before the start's first flip: the generation in use, to switch back to.
    pub(super) fn record_active(&mut self) {
        let active = self.active;
        if let Some(journal) = &mut self.start {
            if !journal.has(|s| matches!(s, Undo::Active(_))) {
                journal.push(Undo::Active(active));
            }
        }
    }

    /// Before the start first changes the management prefixes: what they are.
    pub(super) fn record_management(&mut self) -> Result<()> {
        let first = self
            .start
            .as_ref()
            .is_some_and(|j| !j.has(|s| matches!(s, Undo::Management { .. })));
        if !first {
            return Ok(());
        }
        let v4 = trie_entries::<4>(&self.lpm_mut(map::MANAGEMENT_V4)?, map::MANAGEMENT_V4)?;
        let v6 = trie_entries::<16>(&self.lpm_mut(map::MANAGEMENT_V6)?, map::MANAGEMENT_V6)?;
        self.record(Undo::Management { v4, v6 });
        Ok(())
    }

    /// Whether a start is under way (between [`Dataplane::open`] and
    /// [`Dataplane::finish_start`]).
    pub fn starting(&self) -> bool {
        self.start.is_some()
    }

    /// The start's last step, once everything else succeeded: removes the pinned links
    /// (and markers) of interfaces and programs the policy no longer names (unpinning
    /// drops the last reference, which detaches), pins the programs that were loaded,
    /// and ends the record of the start. Links removed here are not put back should
    /// this step fail part way.
    pub fn finish_start(&mut self) -> Result<()> {
        // (hook, escaped interface) -> program wanted there.
        let wanted: HashMap<(&str, String), &str> = self
            .attachments
            .iter()
            .map(|a| {
                (
                    (a.hook.as_str(), escape_name(&a.interface)),
                    a.program.as_str(),
                )
            })
            .collect();
        let mut stale = Vec::new();
        for hook in [Hook::Xdp, Hook::TcxEgress] {
            let dir = self.bpffs.join("links").join(hook.name());
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let p = entry.map_err(io_err(&dir))?.path();
                let n = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_string();
                let keep = match n.split_once('@') {
                    None => wanted.contains_key(&(hook.name(), n.clone())),
                    Some((iface, prog)) => {
                        wanted.get(&(hook.name(), iface.to_string())) == Some(&prog)
                    }
                };
                if !keep {
                    stale.push(p);
                }
            }
        }
        if self.programs_loaded {
            self.pin_programs()?;
        }
        for p in stale {
            if p.is_dir() {
                fs::remove_dir(&p).map_err(io_err(&p))?;
            } else {
                fs::remove_file(&p).map_err(io_err(&p))?;
                tracing::info!(link = %p.display(), "detached interface no longer in policy");
            }
        }
        self.start = None;
        Ok(())
    }

    /// Undoes everything the start under way did, in reverse order (see the module
    /// documentation), and ends its record. Every step is tried; those that fail are
    /// reported, not retried. Does nothing when no start is under way.
    pub fn roll_back_start(&mut self) -> RolledBack {
        let Some(journal) = self.start.take() else {
            return RolledBack::default();
        };
        let mut done = RolledBack::default();
        for step in journal.steps.into_iter().rev() {
            match step {
                Undo::Dir(path) => done.note(remove_dir(&path), &path),
                Undo::Pin(path) => done.note(remove_pin(&path), &path),
                Undo::Active(generation) => {
                    let r = self
                        .array_mut::<u32>(map::ACTIVE)
                        .and_then(|mut a| a.set(0, generation, 0).map_err(map_err(map::ACTIVE)))
                        .map_err(|e| format!("switching back to generation {generation}: {e}"));
                    if r.is_ok() {
                        self.active = generation;
                    }
                    done.note(r, Path::new(map::ACTIVE));
                }
                Undo::Management { v4, v6 } => {
                    let r = self
                        .lpm_mut(map::MANAGEMENT_V4)
                        .and_then(|mut t| sync_trie(&mut t, map::MANAGEMENT_V4, &v4))
                        .and_then(|()| {
                            let mut t = self.lpm_mut(map::MANAGEMENT_V6)?;
                            sync_trie(&mut t, map::MANAGEMENT_V6, &v6)
                        })
                        .map_err(|e| format!("putting the management prefixes back: {e}"));
                    done.note(r, Path::new("management prefixes"));
                }
                Undo::Program { link, program } => {
                    let r = relink::open_pinned(&link)
                        .and_then(|fd| relink::update(fd.as_fd(), program.as_fd()))
                        .map_err(|e| format!("putting the earlier program back: {e}"));
                    done.note(r, &link);
                }
                Undo::Qdisc(iface) => {
                    self.shaper = None;
                    let r = super::shape::remove_root(&iface).map_err(|e| e.to_string());
                    done.note(r, Path::new(&format!("shaping qdisc of {iface}")));
                }
            }
        }
        done
    }
}

/// Every (prefix length, network) of an LPM trie.
fn trie_entries<const N: usize>(
    t: &LpmTrie<&mut MapData, [u8; N], u8>,
    name: &'static str,
) -> Result<HashSet<(u32, [u8; N])>>
where
    [u8; N]: aya::Pod,
{
    let keys: Vec<Key<[u8; N]>> = t
        .keys()
        .collect::<std::result::Result<_, _>>()
        .map_err(map_err(name))?;
    Ok(keys.iter().map(|k| (k.prefix_len(), k.data())).collect())
}

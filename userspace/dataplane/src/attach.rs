//! Programs onto interfaces: loaded once, pinned, attached through pinned links (XDP on
//! ingress, tcx on egress), adopted or replaced atomically under links an earlier daemon
//! left, and all removed by `warden uninstall`.

use super::*;

/// Which programs go where, per mode: (XDP ingress program, tcx egress program).
pub(crate) fn programs_for(mode: Mode) -> [(&'static str, Hook); 2] {
    match mode {
        Mode::Host => [
            (program::XDP_TO_TENANT, Hook::Xdp),
            (program::TC_FROM_TENANT, Hook::TcxEgress),
        ],
        Mode::Gateway => [
            (program::XDP_FROM_TENANT, Hook::Xdp),
            (program::TC_TO_TENANT, Hook::TcxEgress),
        ],
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Hook {
    Xdp,
    TcxEgress,
}

impl Hook {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::TcxEgress => "tcx-egress",
        }
    }
}

impl Dataplane {
    pub(crate) fn load_programs(&mut self) -> Result<()> {
        if self.programs_loaded {
            return Ok(());
        }
        for name in [program::XDP_FROM_TENANT, program::XDP_TO_TENANT] {
            let prog: &mut Xdp = program_mut(&mut self.ebpf, name)?;
            prog.load()
                .map_err(|source| DataplaneError::Program { name, source })?;
        }
        for name in [program::TC_FROM_TENANT, program::TC_TO_TENANT] {
            let prog: &mut SchedClassifier = program_mut(&mut self.ebpf, name)?;
            prog.load()
                .map_err(|source| DataplaneError::Program { name, source })?;
        }
        self.programs_loaded = true;
        Ok(())
    }

    /// Makes the pinned links match `interfaces`: links of the same object version
    /// are adopted as they are (no gap, no reload); links of another version or of the
    /// wrong program are replaced atomically; missing ones are attached and pinned.
    /// Pinned links of interfaces no longer configured are removed by
    /// [`Dataplane::finish_start`], once the whole start has succeeded.
    ///
    /// `object_id` identifies this build's eBPF object; `previous` is the id recorded
    /// when the pinned links were made (None when unknown).
    pub fn attach(
        &mut self,
        interfaces: &[(String, Mode)],
        object_id: &str,
        previous: Option<&str>,
    ) -> Result<()> {
        let same_version = previous == Some(object_id);
        self.attachments.clear();
        for (iface, mode) in interfaces {
            for (prog, hook) in programs_for(*mode) {
                let dir = self.bpffs.join("links").join(hook.name());
                self.create_dirs(&dir)?;
                let name = escape_name(iface);
                let pin = dir.join(&name);
                let marker = dir.join(format!("{name}@{prog}"));
                let existing = match PinnedLink::from_pin(&pin) {
                    Ok(l) => Some(l),
                    Err(_) if !pin.exists() => None,
                    Err(e) => {
                        return Err(DataplaneError::Link {
                            path: pin,
                            detail: error_chain(&e),
                        })
                    }
                };
                let how = match existing {
                    Some(_) if same_version && marker.exists() => "adopted",
                    Some(link) => {
                        self.load_programs()?;
                        self.replace(link, prog, hook, &pin, iface)?;
                        "replaced"
                    }
                    None => {
                        self.load_programs()?;
                        self.attach_new(prog, hook, &pin, iface)?;
                        "attached"
                    }
                };
                if !marker.exists() {
                    fs::create_dir(&marker).map_err(io(&marker))?;
                    self.record(start::Undo::Dir(marker));
                }
                self.attachments.push(Attachment {
                    interface: iface.clone(),
                    mode: mode.to_string(),
                    hook: hook.name().to_string(),
                    program: prog.to_string(),
                    how: how.to_string(),
                });
            }
        }
        Ok(())
    }

    pub(crate) fn attach_new(
        &mut self,
        prog: &'static str,
        hook: Hook,
        pin: &Path,
        iface: &str,
    ) -> Result<()> {
        let attach_err = |source| DataplaneError::Attach {
            iface: iface.to_string(),
            program: prog,
            source,
        };
        let fd_link: FdLink = match hook {
            Hook::Xdp => {
                let p: &mut Xdp = program_mut(&mut self.ebpf, prog)?;
                let id = p.attach(iface, XdpMode::default()).map_err(|e| match e {
                    aya::programs::ProgramError::SyscallError(ref s)
                        if s.io_error.raw_os_error() == Some(libc::ERANGE) =>
                    {
                        DataplaneError::FrameTooLarge {
                            iface: iface.to_string(),
                            program: prog,
                            max: iface::xdp_max_mtu(),
                        }
                    }
                    other => attach_err(other),
                })?;
                let link = p.take_link(id).map_err(attach_err)?;
                link.try_into()
                    .map_err(|e: aya::programs::links::LinkError| DataplaneError::Link {
                        path: pin.to_path_buf(),
                        detail: format!("XDP attached without a BPF link: {e}"),
                    })?
            }
            Hook::TcxEgress => {
                let p: &mut SchedClassifier = program_mut(&mut self.ebpf, prog)?;
                let id = p
                    .attach_with_options(
                        iface,
                        TcAttachType::Egress,
                        TcAttachOptions::TcxOrder(LinkOrder::default()),
                    )
                    .map_err(attach_err)?;
                let link = p.take_link(id).map_err(attach_err)?;
                link.try_into()
                    .map_err(|e: aya::programs::links::LinkError| DataplaneError::Link {
                        path: pin.to_path_buf(),
                        detail: format!("tcx attached without a BPF link: {e}"),
                    })?
            }
        };
        fd_link.pin(pin).map_err(|e| DataplaneError::Link {
            path: pin.to_path_buf(),
            detail: error_chain(&e),
        })?;
        self.record(start::Undo::Pin(pin.to_path_buf()));
        Ok(())
    }

    pub(crate) fn replace(
        &mut self,
        link: PinnedLink,
        prog: &'static str,
        hook: Hook,
        pin: &Path,
        iface: &str,
    ) -> Result<()> {
        let attach_err = |source| DataplaneError::Attach {
            iface: iface.to_string(),
            program: prog,
            source,
        };
        let link_err = |e: aya::programs::links::LinkError| DataplaneError::Link {
            path: pin.to_path_buf(),
            detail: e.to_string(),
        };
        // The pin stays in place throughout: the kernel swaps the program under the
        // link in one step, so the interface is never without enforcement.
        let fd_link = FdLink::from(link);
        // The program it runs now, to swap back should the start fail.
        let before = fd_link.info().map_err(link_err).and_then(|info| {
            relink::open_program(info.program_id()).map_err(|e| DataplaneError::Link {
                path: pin.to_path_buf(),
                detail: format!("opening the program it runs: {e}"),
            })
        })?;
        match hook {
            Hook::Xdp => {
                let p: &mut Xdp = program_mut(&mut self.ebpf, prog)?;
                let id = p
                    .attach_to_link(XdpLink::try_from(fd_link).map_err(link_err)?)
                    .map_err(attach_err)?;
                // Hand the link back to the pin alone.
                let _ = p.take_link(id).map_err(attach_err)?;
            }
            Hook::TcxEgress => {
                let p: &mut SchedClassifier = program_mut(&mut self.ebpf, prog)?;
                let id = p
                    .attach_to_link(SchedClassifierLink::try_from(fd_link).map_err(link_err)?)
                    .map_err(attach_err)?;
                let _ = p.take_link(id).map_err(attach_err)?;
            }
        }
        self.record(start::Undo::Program {
            link: pin.to_path_buf(),
            program: before,
        });
        Ok(())
    }

    pub(crate) fn pin_programs(&mut self) -> Result<()> {
        let dir = self.bpffs.join("progs");
        for name in program::ENFORCING {
            let path = dir.join(name);
            if path.exists() {
                fs::remove_file(&path).map_err(io(&path))?;
            }
            let prog = self
                .ebpf
                .program_mut(name)
                .ok_or(DataplaneError::MissingProgram(name))?;
            prog.pin(&path).map_err(|e| DataplaneError::Link {
                path: path.clone(),
                detail: error_chain(&e),
            })?;
        }
        Ok(())
    }

    /// What is attached where (after [`Dataplane::attach`]).
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Removes every pin under `bpffs`: links first (which detaches the programs),
    /// then programs and maps. Enforcement stops.
    pub fn uninstall(bpffs: &Path) -> Result<usize> {
        let mut removed = super::shape::remove_all(bpffs, &[])?;
        for sub in ["links/xdp", "links/tcx-egress", "links", "progs", "maps"] {
            let dir = bpffs.join(sub);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let p = entry.map_err(io(&dir))?.path();
                if p.is_dir() {
                    fs::remove_dir(&p).map_err(io(&p))?;
                } else {
                    fs::remove_file(&p).map_err(io(&p))?;
                    removed += 1;
                }
            }
        }
        for sub in ["links", "progs", "maps"] {
            let dir = bpffs.join(sub);
            if dir.exists() {
                fs::remove_dir(&dir).map_err(io(&dir))?;
            }
        }
        Ok(removed)
    }
}

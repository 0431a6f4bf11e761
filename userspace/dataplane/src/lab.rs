//! Tests of the kernel-facing API against the real object, each on a bpf filesystem of
//! its own (mounted under the temporary directory, unmounted on drop). They need root
//! (CAP_BPF, CAP_SYS_ADMIN for the mount); `cargo xtask test --skip-privileged` skips
//! them by the `lab::` in their path, like the lab tests of warden-tests.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use aya::{
    maps::{MapData, PerCpuArray},
    programs::Xdp,
    TestRun as _, TestRunOptions,
};
use warden_common::{
    direction,
    facts::{runtime_flags, TenantRuntime, MAX_BLOCKS},
    map, program, reason, tenant_counter_index, DropCounters, Rate,
};

use super::*;
use warden_policy as policy;
use warden_policy::tenant::TenantSlot;
use warden_policy::traffic::{BlockTarget, Contact};

mod start;

/// A bpffs mounted for one test; unmounted and removed on drop.
struct Bpffs {
    dir: PathBuf,
    mount: PathBuf,
}

impl Bpffs {
    fn new() -> Bpffs {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "warden-dp-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mount = dir.join("bpf");
        fs::create_dir_all(&mount).expect("creating the mount point");
        let c = |p: &Path| {
            use std::os::unix::ffi::OsStrExt as _;
            std::ffi::CString::new(p.as_os_str().as_bytes()).expect("a path without NUL")
        };
        let (src, target, fstype) = (c(Path::new("bpf")), c(&mount), c(Path::new("bpf")));
        // SAFETY: NUL-terminated strings that outlive the call; no mount data.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mounting a bpffs at {} (needs root): {}",
            mount.display(),
            std::io::Error::last_os_error()
        );
        Bpffs { dir, mount }
    }

    fn path(&self) -> &Path {
        &self.mount
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        use std::os::unix::ffi::OsStrExt as _;
        if let Ok(target) = std::ffi::CString::new(self.mount.as_os_str().as_bytes()) {
            // SAFETY: a NUL-terminated path; MNT_DETACH so a map still open goes later.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

const POLICY: &str = "
tenants:
  - id: a
    addresses: [198.18.1.0/24]
    bandwidth: { egress: 100Mbit, ingress: 5Mbit, burst: 1MiB }
  - id: b
    addresses: [198.18.2.0/24]
";

/// Opens a dataplane on `fs` and applies `text`; returns it with the tenant index.
fn with_policy(fs: &Bpffs, text: &str) -> (Dataplane, TenantIndex) {
    let mut dp = Dataplane::open(fs.path()).expect("opening the dataplane");
    let index = apply(&mut dp, text);
    (dp, index)
}

fn apply(dp: &mut Dataplane, text: &str) -> TenantIndex {
    let (ix, c) = compiled(text);
    dp.apply(&c).expect("applying");
    ix
}

/// `text` parsed, indexed from empty and compiled.
fn compiled(text: &str) -> (TenantIndex, Compiled) {
    let p = policy::parse(text, "lab.yaml").expect("a valid policy");
    let mut ix = TenantIndex::default();
    ix.sync(p.tenants.iter().map(|t| t.id.as_str()))
        .expect("indexing");
    let c = compile(&p, &ix, &HashSet::new()).expect("compiling");
    (ix, c)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

fn far() -> Duration {
    monotonic_now() + Duration::from_secs(600)
}

/// The kernel id of each map the loaded object uses.
fn map_ids(dp: &Dataplane) -> Vec<(&'static str, u32)> {
    use aya::maps::Map;
    map::ALL
        .iter()
        .map(|name| {
            let data = match dp.raw(name).expect("map in the object") {
                Map::Array(m)
                | Map::PerCpuArray(m)
                | Map::LpmTrie(m)
                | Map::HashMap(m)
                | Map::RingBuf(m) => m,
                other => panic!("map {name} has an unexpected type: {other:?}"),
            };
            (*name, data.info().expect("map info").id())
        })
        .collect()
}

#[test]
fn fresh_maps_match_the_expected_layout_and_a_restart_adopts_the_same_maps() {
    let fs = Bpffs::new();
    let dp = Dataplane::open(fs.path()).expect("opening fresh");
    assert_eq!(dp.adopted_maps(), 0);
    let first = map_ids(&dp);
    drop(dp);
    for name in map::ALL {
        assert!(
            fs.path().join("maps").join(name).exists(),
            "map {name} was not pinned"
        );
    }
    // Every pin is checked against expected_layout() on the second open, and the
    // object uses the pinned maps themselves (the same ring included), not copies.
    let dp = Dataplane::open(fs.path()).expect("adopting");
    assert_eq!(dp.adopted_maps(), map::ALL.len());
    assert_eq!(map_ids(&dp), first);
}

#[test]
fn blocks_set_the_tenant_flag_until_the_last_is_removed_and_survive_a_restart() {
    let fs = Bpffs::new();
    let (mut dp, ix) = with_policy(&fs, POLICY);
    let a = ix.get("a").expect("a");
    let until = far();
    let targets = [
        BlockTarget::Victim(ip("198.19.0.9")),
        BlockTarget::Port(25),
        BlockTarget::Blackhole(ip("198.18.1.7")),
        BlockTarget::ListenPort(3128),
        BlockTarget::Victim(ip("2001:db8:9::1")),
    ];
    for t in targets {
        dp.block(a, t, until).expect("blocking");
    }
    // Every write counts the tenant's blocks version up (the programs' kept answers
    // give way); refreshing a block neither adds an entry nor counts it twice.
    let version =
        |dp: &Dataplane| dp.runtime(a).expect("runtime").flags & runtime_flags::BLOCKS_VERSION;
    assert_eq!(version(&dp), 5 * runtime_flags::BLOCKS_VERSION_ONE);
    dp.block(a, targets[0], until + Duration::from_secs(1))
        .expect("refreshing");
    assert_eq!(version(&dp), 6 * runtime_flags::BLOCKS_VERSION_ONE);
    assert_eq!(dp.block_count(a), 5);
    assert_eq!(
        dp.runtime(a).expect("runtime").flags & runtime_flags::BLOCKS,
        runtime_flags::BLOCKS
    );
    let mut got = dp.blocks().expect("listing");
    got.sort_by_key(|(_, t, _)| format!("{t:?}"));
    assert_eq!(got.len(), 5);
    assert!(got.contains(&(a, targets[0], until + Duration::from_secs(1))));
    assert!(got.contains(&(a, targets[2], until)));
    let usage = dp.map_usage(&super::runtime::PolicyFill::default(), 0);
    let blocks = usage
        .iter()
        .find(|u| u.map == map::BLOCKS)
        .expect("BLOCKS usage");
    assert_eq!(
        (blocks.entries, blocks.capacity),
        (5, u64::from(MAX_BLOCKS))
    );

    // A restarted daemon rebuilds the count from the map.
    drop(dp);
    let mut dp = Dataplane::open(fs.path()).expect("adopting");
    assert_eq!(dp.block_count(a), 5);
    for t in &targets[..4] {
        dp.unblock(a, *t).expect("unblocking");
        assert_eq!(
            dp.runtime(a).expect("runtime").flags & runtime_flags::BLOCKS,
            runtime_flags::BLOCKS,
            "flag cleared while blocks are left"
        );
    }
    // Unblocking what is not blocked changes nothing.
    dp.unblock(a, targets[0]).expect("unblocking again");
    assert_eq!(dp.block_count(a), 1);
    dp.unblock(a, targets[4]).expect("unblocking the last");
    assert_eq!(dp.block_count(a), 0);
    assert_eq!(
        dp.runtime(a).expect("runtime").flags & !runtime_flags::BLOCKS_VERSION,
        0
    );
    assert!(dp.blocks().expect("listing").is_empty());
}

#[test]
fn sweeping_deletes_only_expired_blocks_and_clears_flags_of_tenants_left_without() {
    let fs = Bpffs::new();
    let (mut dp, ix) = with_policy(&fs, POLICY);
    let (a, b) = (ix.get("a").expect("a"), ix.get("b").expect("b"));
    let now = monotonic_now();
    dp.block(a, BlockTarget::Port(23), now - Duration::from_secs(1))
        .expect("block");
    dp.block(a, BlockTarget::Port(24), now + Duration::from_secs(60))
        .expect("block");
    dp.block(b, BlockTarget::Victim(ip("198.19.1.1")), now)
        .expect("block");
    assert_eq!(dp.sweep_blocks(now).expect("sweep"), 2);
    assert_eq!(dp.block_count(a), 1);
    assert_eq!(dp.block_count(b), 0);
    assert_eq!(
        dp.runtime(a).expect("runtime").flags & runtime_flags::BLOCKS,
        runtime_flags::BLOCKS
    );
    assert_eq!(
        dp.runtime(b).expect("runtime").flags & runtime_flags::BLOCKS,
        0
    );
    assert_eq!(dp.sweep_blocks(now).expect("sweep again"), 0);
    assert_eq!(
        dp.blocks().expect("listing"),
        vec![(a, BlockTarget::Port(24), now + Duration::from_secs(60))]
    );
}

#[test]
fn a_full_block_map_is_an_error_of_its_own_and_changes_nothing() {
    let fs = Bpffs::new();
    let mut dp = Dataplane::open(fs.path()).expect("opening");
    let until = far();
    // 198.18.0.0/15 holds 2^17 addresses: the first 2^16 fill the map.
    for i in 0..MAX_BLOCKS {
        let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i);
        dp.block(TenantSlot(1), BlockTarget::Victim(IpAddr::V4(addr)), until)
            .unwrap_or_else(|e| panic!("block {i}: {e}"));
    }
    let err = dp
        .block(
            TenantSlot(1),
            BlockTarget::Victim(ip("198.19.255.1")),
            until,
        )
        .expect_err("the map is full");
    assert!(
        matches!(err, DataplaneError::BlocksFull { capacity } if capacity == MAX_BLOCKS),
        "{err}"
    );
    assert_eq!(dp.block_count(TenantSlot(1)), MAX_BLOCKS);
    // Refreshing an existing block still works on a full map.
    dp.block(TenantSlot(1), BlockTarget::Victim(ip("198.18.0.0")), until)
        .expect("refreshing on a full map");
    assert_eq!(dp.sweep_blocks(until).expect("sweep"), MAX_BLOCKS as usize);
    assert_eq!(
        dp.runtime(TenantSlot(1)).expect("runtime").flags & !runtime_flags::BLOCKS_VERSION,
        0
    );
}

/// A containment sets its flag, rate and expiry and keeps the programs' bucket (the
/// entry is read, changed and written back); lifting it clears all three, and 0 a
/// second is refused.
#[test]
fn containment_is_set_keeps_the_programs_bucket_and_lifts() {
    let fs = Bpffs::new();
    let (mut dp, ix) = with_policy(&fs, POLICY);
    let a = ix.get("a").expect("a");
    let until = far();
    dp.contain(a, Some((2.0, until))).expect("containing");
    let r = dp.runtime(a).expect("runtime");
    assert_eq!(r.flags, runtime_flags::CONTAIN);
    assert_eq!(r.contain, Rate::from_events_per_second(2.0, 1));
    assert_eq!(r.contain_until_ns, until.as_nanos() as u64);
    // What the programs wrote survives the daemon's next write of the entry.
    let mut programs = r;
    programs.contain_tat = 12_345;
    dp.array_mut::<TenantRuntime>(map::TENANT_RUNTIME)
        .expect("runtime map")
        .set(a.0, programs, 0)
        .expect("writing as the programs do");
    dp.capture(a, 3).expect("capturing");
    assert_eq!(dp.runtime(a).expect("runtime").contain_tat, 12_345);
    assert!(matches!(
        dp.contain(a, Some((0.0, until))),
        Err(DataplaneError::InvalidThrottle(_))
    ));
    dp.contain(a, None).expect("lifting");
    let r = dp.runtime(a).expect("runtime");
    assert_eq!(r.flags, 0);
    assert_eq!((r.contain, r.contain_until_ns), (Rate::UNLIMITED, 0));
}

#[test]
fn throttles_take_the_lower_rate_per_direction_and_follow_a_new_plan() {
    let fs = Bpffs::new();
    let (mut dp, ix) = with_policy(&fs, POLICY);
    let a = ix.get("a").expect("a");
    let until = far();
    dp.throttle(a, Some(10_000_000), until).expect("throttling");
    let r = dp.runtime(a).expect("runtime");
    assert_eq!(r.flags, runtime_flags::THROTTLE);
    assert_eq!(r.throttle_until_ns, until.as_nanos() as u64);
    let ten = Rate::from_bits_per_second(10_000_000, compile::MIN_BURST_BYTES);
    // Out: 10 Mbit/s under the 100 Mbit/s plan; in: the 5 Mbit/s plan (1 MiB burst) stays.
    assert_eq!(
        r.throttle,
        [ten, Rate::from_bits_per_second(5_000_000, 1 << 20)]
    );

    // A new plan below the throttle takes over at the apply, without a new call.
    apply(&mut dp, &POLICY.replace("egress: 100Mbit", "egress: 2Mbit"));
    let r = dp.runtime(a).expect("runtime");
    assert_eq!(
        r.throttle[0],
        Rate::from_bits_per_second(2_000_000, 1 << 20)
    );
    assert_eq!(r.throttle_until_ns, until.as_nanos() as u64);

    assert!(matches!(
        dp.throttle(a, Some(0), until),
        Err(DataplaneError::InvalidThrottle(_))
    ));
    dp.throttle(a, None, until).expect("lifting");
    let r = dp.runtime(a).expect("runtime");
    assert_eq!(r.flags, 0);
    assert_eq!(r.throttle_until_ns, 0);
    assert_eq!(dp.throttles().count(), 0);
}

#[test]
fn capture_and_flags_share_the_entry_and_reset_slot_forgets_all_runtime_state() {
    let fs = Bpffs::new();
    let (mut dp, ix) = with_policy(&fs, POLICY);
    let (a, b) = (ix.get("a").expect("a"), ix.get("b").expect("b"));
    dp.block(a, BlockTarget::Port(25), far()).expect("block");
    dp.block(b, BlockTarget::Port(25), far()).expect("block");
    dp.throttle(a, Some(1_000_000), far()).expect("throttle");
    dp.capture(a, 64).expect("capture");
    let r = dp.runtime(a).expect("runtime");
    assert_eq!(
        (r.flags & !runtime_flags::BLOCKS_VERSION, r.capture),
        (runtime_flags::BLOCKS | runtime_flags::THROTTLE, 64)
    );
    dp.capture(a, -5).expect("stop");
    assert_eq!(dp.runtime(a).expect("runtime").capture, 0);

    dp.reset_slot(a).expect("reset");
    assert_eq!(
        dp.runtime(a).expect("runtime"),
        warden_common::facts::TenantRuntime::default()
    );
    assert_eq!(dp.block_count(a), 0);
    assert_eq!(dp.throttles().count(), 0);
    let left: Vec<(TenantSlot, BlockTarget)> = dp
        .blocks()
        .expect("listing")
        .into_iter()
        .map(|(t, target, _)| (t, target))
        .collect();
    assert_eq!(
        left,
        vec![(b, BlockTarget::Port(25))],
        "only the other tenant's block is left"
    );
    assert!(matches!(
        dp.capture(TenantSlot(MAX_TENANTS), 1),
        Err(DataplaneError::TenantOutOfRange(_))
    ));
}

/// Ethernet + IPv4 + TCP SYN from `src:40000` to `dst:port` (header checksum set).
fn syn(src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let sum = ip
        .chunks(2)
        .fold(0u32, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40_000u16.to_be_bytes());
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

/// Runs `frame` through the from-tenant XDP program once; returns the XDP action.
fn run_from_tenant(dp: &mut Dataplane, frame: &[u8]) -> u32 {
    run_xdp(dp, program::XDP_FROM_TENANT, frame)
}

/// Runs `frame` through the to-tenant XDP program once; returns the XDP action.
fn run_to_tenant(dp: &mut Dataplane, frame: &[u8]) -> u32 {
    run_xdp(dp, program::XDP_TO_TENANT, frame)
}

fn run_xdp(dp: &mut Dataplane, name: &'static str, frame: &[u8]) -> u32 {
    run_xdp_repeat(dp, name, frame, 1)
}

/// Runs `frame` `repeat` times back to back; returns the last XDP action.
fn run_xdp_repeat(dp: &mut Dataplane, name: &'static str, frame: &[u8], repeat: u32) -> u32 {
    dp.load_programs().expect("loading programs");
    let p: &mut Xdp = program_mut(&mut dp.ebpf, name).expect("program");
    p.test_run(TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..Default::default()
    })
    .expect("test run")
    .return_value
}

/// The tenant's drops in `dir` for `why`, summed over CPUs.
fn drops(dp: &Dataplane, slot: TenantSlot, dir: u32, why: usize) -> u64 {
    let arr: PerCpuArray<&MapData, DropCounters> =
        dp.per_cpu(map::DROP_COUNTERS).expect("drop counters");
    arr.get(&tenant_counter_index(slot.0, dir), 0)
        .expect("drops")
        .iter()
        .map(|d| d.packets[why])
        .sum()
}

fn blocked_drops(dp: &Dataplane, slot: TenantSlot) -> u64 {
    drops(dp, slot, direction::OUT, reason::BLOCKED)
}

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

#[test]
fn the_programs_drop_a_blocked_victim_and_port_by_the_keys_the_daemon_writes() {
    let fs = Bpffs::new();
    let (mut dp, ix) = with_policy(&fs, POLICY);
    let a = ix.get("a").expect("a");
    let (me, victim, other) = (
        Ipv4Addr::new(198, 18, 1, 5),
        Ipv4Addr::new(198, 19, 0, 9),
        Ipv4Addr::new(198, 19, 0, 10),
    );
    assert_eq!(run_from_tenant(&mut dp, &syn(me, victim, 80)), XDP_PASS);
    dp.block(a, BlockTarget::Victim(IpAddr::V4(victim)), far())
        .expect("block");
    dp.block(a, BlockTarget::Port(25), far()).expect("block");
    let before = blocked_drops(&dp, a);
    assert_eq!(run_from_tenant(&mut dp, &syn(me, victim, 80)), XDP_DROP);
    assert_eq!(run_from_tenant(&mut dp, &syn(me, other, 25)), XDP_DROP);
    assert_eq!(run_from_tenant(&mut dp, &syn(me, other, 80)), XDP_PASS);
    assert_eq!(blocked_drops(&dp, a), before + 2);
    assert!(dp.fact_counters().expect("counters").blocked >= 2);

    // An expired block is ignored by the programs before the daemon sweeps it.
    dp.block(
        a,
        BlockTarget::Victim(IpAddr::V4(victim)),
        monotonic_now() - Duration::from_secs(1),
    )
    .expect("expire");
    assert_eq!(run_from_tenant(&mut dp, &syn(me, victim, 80)), XDP_PASS);
}

#[test]
fn the_event_ring_is_taken_once_and_delivers_a_first_contact_decoded() {
    let fs = Bpffs::new();
    let (mut dp, ix) = with_policy(&fs, POLICY);
    let a = ix.get("a").expect("a");
    let mut reader = dp.event_reader().expect("the ring");
    assert!(matches!(
        dp.event_reader(),
        Err(DataplaneError::EventsTaken)
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut out = Vec::new();
    // Nothing yet: the wait ends at max_wait with nothing read.
    let t = std::time::Instant::now();
    rt.block_on(reader.read(&mut out, 16, Duration::from_millis(50)))
        .expect("reading");
    assert!(out.is_empty());
    assert!(t.elapsed() >= Duration::from_millis(50));

    let (me, dst) = (Ipv4Addr::new(198, 18, 1, 5), Ipv4Addr::new(198, 19, 7, 7));
    let start = monotonic_now();
    assert_eq!(run_from_tenant(&mut dp, &syn(me, dst, 443)), XDP_PASS);
    rt.block_on(reader.read(&mut out, 16, Duration::from_secs(2)))
        .expect("reading");
    let attempts: Vec<&Contact> = out
        .iter()
        .filter_map(|e| match e {
            KernelEvent::Attempt(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(attempts.len(), 1, "{out:?}");
    let c = attempts[0];
    assert_eq!(
        (
            c.slot,
            c.proto,
            c.local,
            c.local_port,
            c.remote,
            c.remote_port
        ),
        (
            a,
            warden_policy::traffic::Proto::Tcp,
            IpAddr::V4(me),
            40_000,
            IpAddr::V4(dst),
            443
        )
    );
    // The coarse clock lags by up to a tick.
    assert!(
        c.at + Duration::from_millis(50) >= start,
        "{:?} vs {start:?}",
        c.at
    );
    assert!(c.at <= monotonic_now());
    assert_eq!(reader.decode_errors(), 0);
    let counters = dp.fact_counters().expect("counters");
    assert_eq!((counters.logged, counters.lost_log), (1, 0), "{counters:?}");
    assert_eq!(reader.log_lost(), 0);
}

/// The attempt log's reader protocol, with this test as the writing CPU: entries are
/// read in order once, a slot being written (seq 0) stops the reader until it is
/// whole, and a CPU that came round before the reader loses what it wrote over, counted.
#[test]
fn the_attempt_log_reader_takes_each_entry_once_and_counts_what_was_written_over() {
    use warden_common::facts::{event, LogEntry, LOG_SLOTS};
    let fs = Bpffs::new();
    let (mut dp, _ix) = with_policy(&fs, POLICY);
    let mut log = {
        let m = dp.ebpf.take_map(map::ATTEMPT_LOG).expect("the log");
        let aya::maps::Map::Array(data) = m else {
            panic!("the attempt log is an array")
        };
        log::AttemptLog::new(data).expect("mapping the log")
    };
    assert_eq!(log.cpus(), possible_cpus().expect("cpus") as usize);
    let pinned = MapData::from_pin(fs.path().join("maps").join(map::ATTEMPT_LOG)).expect("pin");
    let mut writer: aya::maps::Array<MapData, LogEntry> =
        aya::maps::Array::try_from(aya::maps::Map::Array(pinned)).expect("array");
    // CPU 1's region when there is one: the reader walks every region.
    let region = (log.cpus() as u32 - 1) * LOG_SLOTS;
    let entry = |n: u64, seq: u64| LogEntry {
        seq,
        at: 1_000 + n,
        tenant: 0,
        kind: event::ATTEMPT as u8,
        family: 4,
        proto: 6,
        local_port: 40_000,
        remote_port: (n % 60_000) as u16 + 1,
        local: [198, 18, 1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        remote: [198, 19, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ..LogEntry::default()
    };
    let mut put = |n: u64, seq: u64| {
        writer
            .set(region + (n % u64::from(LOG_SLOTS)) as u32, entry(n, seq), 0)
            .expect("writing an entry");
    };
    let ports = |out: &[KernelEvent]| -> Vec<u16> {
        out.iter()
            .map(|e| match e {
                KernelEvent::Attempt(c) => c.remote_port,
                other => panic!("not an attempt: {other:?}"),
            })
            .collect()
    };
    for n in 0..3 {
        put(n, n + 1);
    }
    put(3, 0); // entry 3 half written
    let mut out = Vec::new();
    assert_eq!(log.drain(&mut out, 100), (3, 0));
    assert_eq!(ports(&out), [1, 2, 3]);
    out.clear();
    assert_eq!(
        log.drain(&mut out, 100),
        (0, 0),
        "nothing twice, nothing half written"
    );
    put(3, 4);
    assert_eq!(log.drain(&mut out, 100), (1, 0));
    assert_eq!(ports(&out), [4]);
    // The CPU writes 4 .. 4 + LOG_SLOTS + 10 before the reader looks again: the first
    // ten are written over.
    let last = 4 + u64::from(LOG_SLOTS) + 10;
    for n in 4..last {
        put(n, n + 1);
    }
    out.clear();
    let (taken, errors) = log.drain(&mut out, usize::MAX);
    assert_eq!((taken, errors, log.lost()), (u64::from(LOG_SLOTS), 0, 10));
    assert_eq!(ports(&out)[0], 15, "entry 14 is the oldest left");
    assert_eq!(
        *ports(&out).last().expect("some"),
        ((last - 1) % 60_000) as u16 + 1
    );
}

#[test]
fn the_programs_drop_a_blackholed_address_and_a_blocked_listener_port_inbound() {
    let fs = Bpffs::new();
    let (mut dp, ix) = with_policy(&fs, POLICY);
    let a = ix.get("a").expect("a");
    let (outside, hole, other) = (
        Ipv4Addr::new(198, 19, 0, 9),
        Ipv4Addr::new(198, 18, 1, 7),
        Ipv4Addr::new(198, 18, 1, 8),
    );
    dp.block(a, BlockTarget::Blackhole(IpAddr::V4(hole)), far())
        .expect("blackhole");
    dp.block(a, BlockTarget::ListenPort(3128), far())
        .expect("block");
    let (holes, blocked) = (
        drops(&dp, a, direction::IN, reason::BLACKHOLE),
        drops(&dp, a, direction::IN, reason::BLOCKED),
    );
    assert_eq!(run_to_tenant(&mut dp, &syn(outside, hole, 80)), XDP_DROP);
    assert_eq!(run_to_tenant(&mut dp, &syn(outside, other, 3128)), XDP_DROP);
    assert_eq!(run_to_tenant(&mut dp, &syn(outside, other, 80)), XDP_PASS);
    assert_eq!(
        drops(&dp, a, direction::IN, reason::BLACKHOLE),
        holes + 1,
        "the blackholed address"
    );
    assert_eq!(
        drops(&dp, a, direction::IN, reason::BLOCKED),
        blocked + 1,
        "the listener port"
    );
    // Lifted: the flag goes with the last block and traffic passes again.
    dp.unblock(a, BlockTarget::Blackhole(IpAddr::V4(hole)))
        .expect("unblock");
    dp.unblock(a, BlockTarget::ListenPort(3128))
        .expect("unblock");
    assert_eq!(
        dp.runtime(a).expect("runtime").flags & !runtime_flags::BLOCKS_VERSION,
        0
    );
    assert_eq!(run_to_tenant(&mut dp, &syn(outside, hole, 80)), XDP_PASS);
}

#[test]
fn the_programs_police_with_a_live_throttle_and_ignore_an_expired_one() {
    let fs = Bpffs::new();
    let (mut dp, ix) = with_policy(&fs, POLICY);
    let a = ix.get("a").expect("a");
    let frame = syn(
        Ipv4Addr::new(198, 18, 1, 5),
        Ipv4Addr::new(198, 19, 3, 3),
        80,
    );
    let bandwidth = |dp: &Dataplane| drops(dp, a, direction::OUT, reason::BANDWIDTH);
    // 2,000 frames of 54 bytes are 108 KB: within the 100 Mbit/s plan's 1 MiB burst.
    dp.throttle(a, Some(1_000_000), monotonic_now() - Duration::from_secs(1))
        .expect("an expired throttle");
    run_xdp_repeat(&mut dp, program::XDP_FROM_TENANT, &frame, 2_000);
    assert_eq!(bandwidth(&dp), 0, "an expired throttle still policed");

    // At 1 Mbit/s the 64 KiB burst lets at most about 1,200 frames through (fewer with
    // early drop past half of it), then drops.
    dp.throttle(a, Some(1_000_000), far()).expect("throttle");
    run_xdp_repeat(&mut dp, program::XDP_FROM_TENANT, &frame, 2_000);
    let dropped = bandwidth(&dp);
    assert!(
        (700..1_500).contains(&dropped),
        "{dropped} of 2000 frames dropped under a 1 Mbit/s throttle"
    );
}

#[test]
fn reset_slots_zero_the_slots_counters_drops_buckets_and_runtime_and_nothing_else() {
    let fs = Bpffs::new();
    let (mut dp, ix) = with_policy(&fs, POLICY);
    let (a, b) = (ix.get("a").expect("a"), ix.get("b").expect("b"));
    let cpus = dp.cpus;
    let fill = |dp: &mut Dataplane, slot: TenantSlot, n: u64| {
        let slot = slot.0;
        let mut c: PerCpuArray<&mut MapData, Counters> =
            PerCpuArray::try_from(dp.raw_mut(map::TENANT_COUNTERS).expect("map")).expect("c");
        for dir in 0..direction::COUNT {
            let v = vec![
                Counters {
                    packets: n,
                    bytes: n * 64
                };
                cpus
            ];
            c.set(
                tenant_counter_index(slot, dir),
                aya::maps::PerCpuValues::try_from(v).expect("v"),
                0,
            )
            .expect("set counters");
        }
        let mut d: PerCpuArray<&mut MapData, DropCounters> =
            PerCpuArray::try_from(dp.raw_mut(map::DROP_COUNTERS).expect("map")).expect("d");
        for dir in 0..direction::COUNT {
            let mut one = DropCounters::default();
            one.packets[reason::BANDWIDTH] = n;
            let v = vec![one; cpus];
            d.set(
                tenant_counter_index(slot, dir),
                aya::maps::PerCpuValues::try_from(v).expect("v"),
                0,
            )
            .expect("set drops");
        }
        let mut k = dp.array_mut::<Bucket>(map::BUCKETS).expect("buckets");
        for which in 0..bucket::PER_TENANT {
            k.set(bucket::index(slot, which), Bucket { tat: n }, 0)
                .expect("set bucket");
        }
    };
    // A slot no tenant holds (as one freed earlier), reset together with `a`.
    let spare = TenantSlot(a.max(b).0 + 3);
    fill(&mut dp, a, 7);
    fill(&mut dp, b, 9);
    fill(&mut dp, spare, 5);
    dp.throttle(a, Some(1_000_000), far()).expect("throttle");
    assert_ne!(dp.runtime(a).expect("runtime"), TenantRuntime::default());
    dp.reset_slots(&[a, spare]).expect("reset");
    assert_eq!(dp.runtime(a).expect("runtime"), TenantRuntime::default());
    assert_eq!(
        dp.throttles().count(),
        0,
        "the throttle of a's holder is gone"
    );
    assert_eq!(
        dp.tenant_counters(spare).expect("spare"),
        [Counters::default(); 2]
    );
    assert_eq!(
        dp.drop_counters(spare).expect("spare"),
        [DropCounters::default(); 2]
    );
    let buckets = |dp: &Dataplane, slot: TenantSlot| -> Vec<u64> {
        let slot = slot.0;
        let k = dp.array::<Bucket>(map::BUCKETS).expect("buckets");
        (0..bucket::PER_TENANT)
            .map(|w| k.get(&bucket::index(slot, w), 0).expect("bucket").tat)
            .collect()
    };
    assert_eq!(dp.tenant_counters(a).expect("a"), [Counters::default(); 2]);
    assert_eq!(
        dp.drop_counters(a).expect("a"),
        [DropCounters::default(); 2]
    );
    assert_eq!(buckets(&dp, a), vec![0; bucket::PER_TENANT as usize]);
    assert_eq!(buckets(&dp, spare), vec![0; bucket::PER_TENANT as usize]);
    // The neighbouring slot keeps every figure.
    let n = cpus as u64;
    let c = dp.tenant_counters(b).expect("b");
    assert_eq!((c[0].packets, c[1].bytes), (9 * n, 9 * 64 * n));
    let d = dp.drop_counters(b).expect("b");
    assert_eq!(
        (
            d[0].packets[reason::BANDWIDTH],
            d[1].packets[reason::BANDWIDTH]
        ),
        (9 * n, 9 * n)
    );
    assert_eq!(buckets(&dp, b), vec![9; bucket::PER_TENANT as usize]);
    // The sample's folded read (both directions, every CPU) agrees with the per-slot
    // and the full reads.
    let slots = spare.0 + 1;
    let totals = dp.all_drop_totals(slots).expect("totals");
    let full = dp.all_drop_counters(slots).expect("full");
    let sums = dp
        .all_drop_totals_as(slots, |t| t.iter().sum::<u64>())
        .expect("sums");
    assert_eq!(
        sums,
        totals
            .iter()
            .map(|t| t.iter().sum::<u64>())
            .collect::<Vec<_>>()
    );
    assert_eq!(totals.len(), slots as usize);
    assert_eq!(totals[b.index()][reason::BANDWIDTH], 18 * n);
    assert_eq!(totals[a.index()], [0; reason::COUNT]);
    for (s, (t, f)) in totals.iter().zip(&full).enumerate() {
        let sum: Vec<u64> = (0..reason::COUNT)
            .map(|r| f[0].packets[r] + f[1].packets[r])
            .collect();
        assert_eq!(t.to_vec(), sum, "slot {s}");
    }
}

/// The half `generation` of the table `name`, read back bucket by bucket.
fn half<B: aya::Pod>(dp: &Dataplane, name: &'static str, generation: u32, buckets: u32) -> Vec<B> {
    let a = dp.array::<B>(name).expect("table");
    (generation * buckets..(generation + 1) * buckets)
        .map(|i| a.get(&i, 0).expect("bucket"))
        .collect()
}

#[test]
fn applies_write_only_the_buckets_that_change_and_every_half_holds_exactly_its_policy() {
    use warden_common::{table, Bucket128, Bucket64};
    // Tenants come and go, addresses and MACs move, and the last policy is empty:
    // after every apply the half just written must equal a whole write of its policy.
    let policies: Vec<String> = [
        (0..40).collect::<Vec<u32>>(),
        (10..60).collect(),
        (10..60).collect(),
        (55..58).collect(),
        (0..3).collect(),
        Vec::new(),
        (0..2).collect(),
    ]
    .iter()
    .map(|ids| {
        let mut text = String::from("tenants:\n");
        for i in ids {
            text.push_str(&format!(
                "  - id: t{i}\n    addresses: [198.18.{}.{}/32, 198.19.{i}.0/24, 2001:db8:{i:x}::/64]\n    macs: [\"02:00:00:00:{:02x}:{:02x}\"]\n",
                i / 200,
                i % 200 + 1,
                i / 256,
                i % 256,
            ));
        }
        if ids.is_empty() {
            text = "tenants: []\n".into();
        }
        text
    })
    .collect();
    let fs = Bpffs::new();
    let mut dp = Dataplane::open(fs.path()).expect("opening the dataplane");
    let mut written = Vec::new();
    for text in &policies {
        let (_, c) = compiled(text);
        dp.apply(&c).expect("applying");
        let g = dp
            .array::<u32>(map::ACTIVE)
            .expect("ACTIVE")
            .get(&0, 0)
            .expect("ACTIVE");
        let want = GenTables::build(g, &c).expect("placing");
        assert!(
            half::<Bucket64>(&dp, map::ADDRS_V4, g, table::V4_BUCKETS) == want.v4,
            "IPv4 half {g} differs from a whole write of {text}"
        );
        assert!(
            half::<Bucket128>(&dp, map::ADDRS_V6, g, table::V6_BUCKETS) == want.v6,
            "IPv6 half {g} differs from a whole write of {text}"
        );
        assert!(
            half::<Bucket64>(&dp, map::MACS, g, table::MAC_BUCKETS) == want.macs,
            "MAC half {g} differs from a whole write of {text}"
        );
        written.push(dp.last_apply().buckets_written);
    }
    let whole = (table::V4_BUCKETS + table::V6_BUCKETS + table::MAC_BUCKETS) as usize;
    // Each half is written whole the first time (its content is not known at open),
    // then only where entries are or were: each tenant has 4 entries (two IPv4, one
    // IPv6, one MAC), so at most 4 buckets per tenant of the policy written and of the
    // policy the half held (checked above: the stale ones were emptied).
    let tenants = [40, 50, 50, 3, 3, 0, 2];
    assert_eq!(&written[..2], &[whole, whole], "{written:?}");
    for k in 2..written.len() {
        let bound = 4 * (tenants[k] + tenants[k - 2]);
        assert!(
            written[k] <= bound,
            "apply {k}: {} buckets, at most {bound}",
            written[k]
        );
    }
    // The empty policy still empties the 3 tenants' buckets its half held.
    assert!(written[5] >= 3, "{written:?}");
}

#[test]
fn the_half_a_start_left_unknown_is_emptied_a_part_at_a_time_and_the_next_apply_writes_only_its_buckets(
) {
    use warden_common::{table, Bucket128, Bucket64};
    let fs = Bpffs::new();
    let (mut dp, _) = with_policy(&fs, POLICY);
    let whole = (table::V4_BUCKETS + table::V6_BUCKETS + table::MAC_BUCKETS) as usize;
    assert_eq!(dp.last_apply().buckets_written, whole);
    // Not during a start (a failed one switches back to that half).
    assert_eq!(
        dp.settle_inactive_half(Duration::ZERO).expect("settling"),
        0
    );
    dp.finish_start().expect("finishing the start");
    // Not before the generation in force has been so for the time given.
    assert_eq!(
        dp.settle_inactive_half(Duration::from_secs(3600))
            .expect("settling"),
        0
    );
    // A part per call, until the half is known.
    let mut parts = Vec::new();
    loop {
        let n = dp.settle_inactive_half(Duration::ZERO).expect("settling");
        if n == 0 {
            break;
        }
        parts.push(n);
    }
    assert_eq!(parts.iter().sum::<usize>(), whole, "{parts:?}");
    assert!(
        parts.iter().all(|&n| n <= 3 * generation::SETTLE_CHUNK),
        "{parts:?}"
    );
    let g = dp
        .array::<u32>(map::ACTIVE)
        .expect("ACTIVE")
        .get(&0, 0)
        .expect("ACTIVE");
    let other = 1 - g;
    assert!(
        half::<Bucket64>(&dp, map::ADDRS_V4, other, table::V4_BUCKETS)
            .iter()
            .all(|b| *b == Bucket64::EMPTY)
    );
    assert!(
        half::<Bucket128>(&dp, map::ADDRS_V6, other, table::V6_BUCKETS)
            .iter()
            .all(|b| *b == Bucket128::EMPTY)
    );
    assert!(half::<Bucket64>(&dp, map::MACS, other, table::MAC_BUCKETS)
        .iter()
        .all(|b| *b == Bucket64::EMPTY));
    // The next apply writes the two tenants' buckets (a /24 each), and both still
    // resolve through the new generation.
    let ix = apply(&mut dp, POLICY);
    assert!(
        dp.last_apply().buckets_written <= 2,
        "{:?}",
        dp.last_apply()
    );
    let b = ix.get("b").expect("b");
    let packets = |dp: &Dataplane| -> u64 {
        let c: PerCpuArray<&MapData, warden_common::Counters> =
            dp.per_cpu(map::TENANT_COUNTERS).expect("counters");
        c.get(&tenant_counter_index(b.0, direction::IN), 0)
            .expect("counters")
            .iter()
            .map(|c| c.packets)
            .sum()
    };
    let frame = syn(
        Ipv4Addr::new(198, 19, 0, 9),
        Ipv4Addr::new(198, 18, 2, 7),
        80,
    );
    let before = packets(&dp);
    assert_eq!(run_to_tenant(&mut dp, &frame), XDP_PASS);
    assert_eq!(
        packets(&dp),
        before + 1,
        "the packet to tenant b was not counted"
    );
}
